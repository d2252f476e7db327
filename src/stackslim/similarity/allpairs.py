"""All-pairs kernels: one pass over a sample tensor gives every pair of hidden states.

Every function here takes the samples of all S = L+1 hidden states at once, as one float64
tensor ``X`` of shape (n, S, D) (n samples, D features: channels, or T*D for the flat view),
and returns an (S, S) matrix. Each state's n×n Gram matrix (or kNN list) is computed once and
every pair is then a cheap inner product, instead of rebuilding two Grams per pair as the
per-pair loop of common CKA packages does (`engine.pairwise_reference`). `gram_pass` builds the
Grams in blocks of rows and columns from any row-sliceable source (a tensor, or `SampleStore`'s
file), so n×n is never held.

Formulas (Kc = centred Gram of one state, Xc = its column-centred samples):

- biased HSIC (Gretton 2005) up to the factor 1/(n-1)^2 that cancels in CKA:
  A_ij = <Kc_i, Kc_j>_F = tr(K_i H K_j H) = ||Xc_i^T Xc_j||_F^2,
  CKA_ij = A_ij / sqrt(A_ii A_jj)  (Kornblith et al. 2019).
- unbiased HSIC (Song et al. 2012), K~ = K with zeroed diagonal:
  HSIC_u = [tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)).
- mutual kNN (Huh et al. 2024, the platonic-representation reference code): rows
  L2-normalised (not centred, unless `knn_center`), the k nearest *other* rows by inner
  product; overlap_ij = sum over samples of |N_k^i ∩ N_k^j|.
- cosine: sum over samples of cos(x_i, x_j); the cosine of a zero vector with anything is 0.
"""
from __future__ import annotations

import math

import torch

from .config import SimilarityError

# A representation is "constant" when its centred energy is below CONST_RTOL^2 times its raw
# energy (relative spread below 1e-10: rounding noise, not signal). Then CKA is 0/0.
CONST_RTOL = 1e-10
# Working-set budget (bytes) for the blocked n×n products and the engine's update chunks.
CHUNK_BYTES = 64 * 2**20
F64 = torch.float64


def check_variance(centred_sq: torch.Tensor, raw_sq: torch.Tensor, what: str = "hidden state") -> None:
    """Raise SimilarityError for every state whose centred energy is (numerically) zero.

    Args:
        centred_sq: (S,) sum of squares of the column-centred samples, ||Xc_i||_F^2.
        raw_sq: (S,) sum of squares of the raw samples, ||X_i||_F^2.
        what: how to name an item in the message.
    """
    bad = ~(centred_sq > (CONST_RTOL ** 2) * raw_sq)
    if bool(bad.any()):
        idx = [int(i) for i in torch.nonzero(bad).flatten()]
        name = what if bad.numel() == 1 else f"{what} {idx[0] if len(idx) == 1 else idx}"
        raise SimilarityError(
            f"{name} is constant over the samples (zero variance): "
            "CKA/kNN are undefined for it (0/0); check the inputs or drop that state")


def centre(X: torch.Tensor, check: bool = True, what: str = "hidden state") -> torch.Tensor:
    """(n, S, D) -> (n, S, D) column-centred copy; raises on a constant state when check."""
    Xc = X - X.mean(0, keepdim=True)  # (n, S, D)
    if check:
        check_variance(Xc.pow(2).sum((0, 2)), X.pow(2).sum((0, 2)), what)
    return Xc


def check_knn_samples(n: int, k: int, what: str = "samples") -> None:
    """Raise SimilarityError unless n >= k + 1: each sample needs k neighbours besides itself."""
    if n < k + 1:
        raise SimilarityError(f"mutual kNN with k={k} needs at least k+1={k + 1} {what}, got {n}")


def _spans(n: int, step: int) -> list[tuple[int, int]]:
    """Row ranges [a0, a1) of at most `step` rows covering 0..n."""
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def gram_pass(X, cka: bool = True, k: int | None = None, what: str = "hidden state",
              weights: torch.Tensor | None = None, budget: int | None = None,
              knn_center: bool = False) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """CKA inner products and/or kNN lists of all states from their centred Grams, in blocks.

    With Xs_i = (X_i - mu_i) / ||X_i - mu_i||_F (centred, unit norm: CKA is scale invariant),
    the Gram rows Kc_i[a, b] = <xs_i[a], xs_i[b]> are built one block of rows a by one block of
    columns b at a time:
        A_ij += <Kc_i[a, b], Kc_j[a, b]>_F   (summed over all blocks: A_ij = ||Xs_i^T Xs_j||_F^2),
        sim_i[a, b] = <x_i[a], x_i[b]> / (|x_i[a]| |x_i[b]|)   (kNN: the k largest b != a per row a).
    The kNN cosine is of the raw rows (the reference definition), from the centred block by a
    rank-one correction: with m_i = mu_i / ||X_i - mu_i||_F, x/||.|| = xs + m and
        <x[a], x[b]> / ||X_i - mu_i||_F^2 = Kc_i[a, b] + <xs[a], m> + <xs[b], m> + |m|^2;
    with `knn_center` it is the cosine of the centred rows, Kc_i[a, b] / (|xs[a]| |xs[b]|).
    X is read in three kinds of sweeps: column sums (mu), centred energies (the norms and the
    constant-state check), then per panel of rows every column block once: 2 + ceil(n / r)
    reads of X in all, or one when it fits a column block (then it is kept).

    Args:
        X: the samples of all states, (n, S, D): a tensor, or an object with `.shape`, `.device`
            and `read_into(a0, out)` filling out (r, S, D) with rows a0.. (`SampleStore`: its file).
        cka: compute A (S, S). k: if given, the k nearest other samples of every sample.
        what: how a state is named in the constant-input error.
        weights: optional (S, D) per-channel factors applied to every block as it is read.
        budget: working-set bytes (default CHUNK_BYTES), shared by the kNN panel (S, r, n), the
            row block (S, r, D), the column block (S, c, D) and its Gram block (S, r, c).
        knn_center: kNN on column-centred rows instead of the raw rows (the reference).

    Returns:
        A: (S, S) or None; idx: (S, n, k) int64 neighbour indices or None.
        Memory: the blocks above, about `budget` in all, plus (S, n, k) indices; never S n^2. A
        kNN panel holds at least one full row (S n), so the budget binds for n < budget / 16 S.
    """
    n, S, D = X.shape
    if k:
        check_knn_samples(n, k)
    B = CHUNK_BYTES if budget is None else budget
    tiny = torch.finfo(F64).tiny
    # Block sizes: the kNN panel (S, r, n) <= B/2, the row block (S, r, D) <= B/8, a column
    # block read and prepared 2 x (S, c, D) <= B/4, its Gram block (S, r, c) <= B/8.
    rows = max(1, B // (16 * S * (max(n, 4 * D) if k else 4 * D)))
    cols = max(1, B // (64 * S * max(D, min(rows, n))))

    dev, panel, small = X.device, min(rows, n), cols >= n  # small: X is read once, kept whole
    w = None if weights is None else weights.to(dev, F64)
    # Buffers reused by every block (allocating per block fragments the heap: peak RSS grows).
    # "raw" holds read rows, "col" prepared ones (all of X and Xs when small, then no "row").
    bufs = {name: torch.empty(size, dtype=F64, device=dev) for name, size in (
        ("raw", S * min(max(cols, rows), n) * D), ("col", S * min(cols, n) * D),
        ("row", 0 if small else S * panel * D), ("gram", S * panel * min(cols, n)),
        ("sim", S * panel * n if k else 0))}

    def view(name: str, *shape: int) -> torch.Tensor:
        return bufs[name][:math.prod(shape)].view(shape)

    def read(a0: int, a1: int) -> torch.Tensor:  # (r, S, D) float64 rows, weighted
        if not isinstance(X, torch.Tensor):
            x = X.read_into(a0, view("raw", a1 - a0, S, D))
            return x if w is None else x.mul_(w)
        if w is None:
            return X[a0:a1].to(F64)  # a view when X is float64
        return torch.mul(X[a0:a1], w, out=view("raw", a1 - a0, S, D))

    whole = read(0, n) if small else None
    load = (lambda a0, a1: whole[a0:a1]) if whole is not None else read
    total = raw = cen2 = None
    for a0, a1 in _spans(n, cols):  # column sums and raw energies ||X_i||_F^2
        x = load(a0, a1)
        total = x.sum(0) if total is None else total + x.sum(0)  # (S, D)
        e = torch.linalg.vector_norm(x, dim=(0, 2)).pow(2)  # (S,)
        raw = e if raw is None else raw + e
    mu = total / n
    for a0, a1 in _spans(n, cols):  # centred energies ||X_i - mu_i||_F^2
        xc = torch.sub(load(a0, a1), mu, out=view("col", a1 - a0, S, D))
        e = torch.linalg.vector_norm(xc, dim=(0, 2)).pow(2)
        cen2 = e if cen2 is None else cen2 + e
    check_variance(cen2, raw, what)
    cen = cen2.sqrt().clamp_min(tiny)[:, None, None]  # (S, 1, 1) ||Xc_i||_F
    raw_knn = bool(k) and not knn_center
    m = mu / cen[:, :, 0]  # (S, D) the mean in the scaled coordinates
    q = m.pow(2).sum(1)[:, None, None]  # (S, 1, 1) |m|^2

    def prep(a0: int, a1: int, buf: str) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(S, r, D) rows of Xs and, for kNN, (S, r) inverse row norms (0 for a zero row) and,
        for the raw-row kNN, (S, r) <xs[a], m>."""
        xs = view(buf, S, a1 - a0, D)
        x = load(a0, a1)  # (r, S, D)
        # raw-row norms, exact (a zero row stays exactly zero), before `x`'s buffer is reused
        nr = torch.linalg.vector_norm(x, dim=2).T / cen[:, :, 0] if raw_knn else None  # (S, r)
        torch.sub(x.transpose(0, 1), mu[:, None, :], out=xs).div_(cen)
        if not k:
            return xs, None, None
        p = torch.einsum("srd,sd->sr", xs, m) if raw_knn else None  # (S, r)
        if not raw_knn:
            nr = torch.linalg.vector_norm(xs, dim=2)  # (S, r)
        return xs, torch.where(nr > 0, 1.0 / nr.clamp_min(tiny), torch.zeros_like(nr)), p

    if whole is not None:
        whole_xs, whole_inv, whole_p = prep(0, n, "col")
        rblock = cblock = lambda a0, a1: (whole_xs[:, a0:a1], None if not k else whole_inv[:, a0:a1],
                                          None if whole_p is None else whole_p[:, a0:a1])
    else:
        rblock, cblock = (lambda a0, a1: prep(a0, a1, "row")), (lambda a0, a1: prep(a0, a1, "col"))
    A = torch.zeros(S, S, dtype=F64, device=dev) if cka else None
    idx = torch.empty(S, n, k, dtype=torch.long, device=dev) if k else None
    for r0, r1 in _spans(n, rows):
        xr, inv_r, p_r = rblock(r0, r1)
        sim = view("sim", S, r1 - r0, n) if k else None
        for c0, c1 in _spans(n, cols):
            xc, inv_c, p_c = cblock(c0, c1)
            Kb = torch.bmm(xr, xc.transpose(1, 2), out=view("gram", S, r1 - r0, c1 - c0))  # Gram block
            if cka:
                Kf = Kb.view(S, -1)
                A += Kf @ Kf.T
            if k:  # in place: cosine of the raw (or, knn_center, the centred) rows
                if raw_knn:
                    Kb.add_(p_r[:, :, None]).add_(p_c[:, None, :]).add_(q)
                sim[:, :, c0:c1] = Kb.mul_(inv_r[:, :, None]).mul_(inv_c[:, None, :])
        if k:
            diag = torch.arange(r0, r1, device=dev)
            sim[:, diag - r0, diag] = float("-inf")  # a sample is not its own neighbour
            idx[:, r0:r1] = sim.topk(k, dim=2).indices
    return A, idx


def cka_from_inner(A: torch.Tensor) -> torch.Tensor:
    """(S, S) inner products -> CKA_ij = A_ij / sqrt(A_ii A_jj), unit diagonal, symmetric."""
    d = A.diagonal().clamp_min(torch.finfo(A.dtype).tiny).sqrt()
    C = A / (d[:, None] * d[None, :])
    C = 0.5 * (C + C.T)
    C.fill_diagonal_(1.0)
    return C


def hsic_unbiased_matrix(X: torch.Tensor) -> torch.Tensor:
    """(n, S, D) -> (S, S) unbiased HSIC (Song et al. 2012) of the linear kernels, all pairs.

    HSIC_u is invariant to shifting the samples, so the columns are centred first (it only
    reduces rounding); states are not rescaled, so the values are comparable across batches.
    """
    n, S, _ = X.shape
    if n < 4:
        raise SimilarityError(f"unbiased HSIC needs at least 4 samples, got {n}")
    Xs = centre(X).permute(1, 0, 2)  # (S, n, D)
    K = torch.bmm(Xs, Xs.transpose(1, 2))  # (S, n, n)
    K.diagonal(dim1=1, dim2=2).zero_()  # K~
    Kf = K.reshape(S, -1)
    tr = Kf @ Kf.T  # tr(K~_i K~_j), Grams are symmetric
    s = K.sum((1, 2))  # (S,) 1'K~1
    R = K.sum(2)  # (S, n) K~1
    H = tr + torch.outer(s, s) / ((n - 1) * (n - 2)) - (2.0 / (n - 2)) * (R @ R.T)
    H = H / (n * (n - 3))
    return 0.5 * (H + H.T)


def cka_from_hsic(H: torch.Tensor) -> torch.Tensor:
    """(S, S) HSIC values -> CKA; raises if a self-HSIC is not positive (n too small)."""
    d = H.diagonal()
    if bool((d <= 0).any()):
        bad = [int(i) for i in torch.nonzero(d <= 0).flatten()]
        raise SimilarityError(f"unbiased self-HSIC of state(s) {bad} is <= 0 (too few samples or a "
                              "constant state): unbiased CKA is undefined; use more samples")
    ds = d.sqrt()
    C = H / (ds[:, None] * ds[None, :])
    C = 0.5 * (C + C.T)
    C.fill_diagonal_(1.0)
    return C


def knn_overlap_matrix(idx: torch.Tensor) -> torch.Tensor:
    """(S, n, k) neighbour lists -> (S, S) float64 sum over samples of |N_i(a) ∩ N_j(a)|."""
    S, n, k = idx.shape
    out = torch.zeros(S, S, dtype=torch.float64, device=idx.device)
    step = max(1, CHUNK_BYTES // max(1, S * k * k))
    for a0 in range(0, n, step):
        blk = idx[:, a0:a0 + step]  # (S, r, k); lists have distinct entries, so == counts matches
        for i in range(S):
            eq = blk[i][None, :, :, None] == blk[:, :, None, :]  # (S, r, k, k)
            out[i] += eq.sum((1, 2, 3)).to(torch.float64)
    return out


def cosine_sum_matrix(X: torch.Tensor) -> torch.Tensor:
    """(n, S, D) -> (S, S) sum over samples of cos(x_i, x_j); zero vectors give cosine 0."""
    norms = X.norm(dim=2, keepdim=True)  # (n, S, 1)
    U = torch.where(norms > 0, X / norms.clamp_min(torch.finfo(X.dtype).tiny), torch.zeros_like(X))
    return torch.bmm(U, U.transpose(1, 2)).sum(0)  # (S, S)
