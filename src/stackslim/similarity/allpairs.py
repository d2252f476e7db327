"""All-pairs kernels: one pass over a sample tensor gives every pair of hidden states.

Every function here takes the samples of all S = L+1 hidden states at once, as one float64
tensor ``X`` of shape (n, S, D) (n samples, D features: channels, or T*D for the flat view),
and returns an (S, S) matrix. Each state's n×n Gram matrix (or kNN list) is computed once and
every pair is then a cheap inner product, instead of rebuilding two Grams per pair as the
per-pair loop of common CKA packages does (`engine.pairwise_reference`).

Formulas (Kc = centred Gram of one state, Xc = its column-centred samples):

- biased HSIC (Gretton 2005) up to the factor 1/(n-1)^2 that cancels in CKA:
  A_ij = <Kc_i, Kc_j>_F = tr(K_i H K_j H) = ||Xc_i^T Xc_j||_F^2,
  CKA_ij = A_ij / sqrt(A_ii A_jj)  (Kornblith et al. 2019).
- unbiased HSIC (Song et al. 2012), K~ = K with zeroed diagonal:
  HSIC_u = [tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)).
- mutual kNN (Huh et al. 2024): rows centred and L2-normalised, the k nearest *other* rows by
  inner product; overlap_ij = sum over samples of |N_k^i ∩ N_k^j|.
- cosine: sum over samples of cos(x_i, x_j); the cosine of a zero vector with anything is 0.
"""
from __future__ import annotations

import torch

from .errors import SimilarityError

# A representation is "constant" when its centred energy is below CONST_RTOL^2 times its raw
# energy (relative spread below 1e-10: rounding noise, not signal). Then CKA is 0/0.
CONST_RTOL = 1e-10
# Working-set budget (bytes) for the chunked n×n products.
CHUNK_BYTES = 64 * 2**20


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


def _rows_per_chunk(S: int, n: int) -> int:
    return max(1, CHUNK_BYTES // (8 * S * max(n, 1)))


def gram_pass(X: torch.Tensor, cka: bool = True, k: int | None = None, what: str = "hidden state"
              ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """One chunked pass over the centred Grams of all states: CKA inner products and/or kNN.

    Args:
        X: (n, S, D) float64 samples of all states.
        cka: compute A_ij = <Kc_i, Kc_j>_F (states scaled to unit norm first).
        k: if given, also the k nearest other samples of every sample in every state.
        what: how a state is named in the constant-input error.

    Returns:
        A: (S, S) or None; idx: (S, n, k) int64 neighbour indices or None.
        Memory: one copy of X plus one chunk of Gram rows (about CHUNK_BYTES), never S*n*n.
    """
    n, S, _ = X.shape
    # One working copy, centred and scaled in place (the samples can be hundreds of MB).
    Xs = X.permute(1, 0, 2).clone(memory_format=torch.contiguous_format)  # (S, n, D), never X itself
    Xs -= Xs.mean(1, keepdim=True)
    cen = torch.linalg.vector_norm(Xs, dim=(1, 2))  # (S,) ||Xc_i||_F
    check_variance(cen.pow(2), torch.linalg.vector_norm(X, dim=(0, 2)).pow(2), what)
    Xs /= cen.clamp_min(torch.finfo(X.dtype).tiny)[:, None, None]  # unit norm: CKA is scale invariant
    A = torch.zeros(S, S, dtype=X.dtype, device=X.device) if cka else None
    idx = torch.empty(S, n, k, dtype=torch.long, device=X.device) if k else None
    if k:
        if n < k + 1:
            raise SimilarityError(f"mutual kNN with k={k} needs at least k+1={k + 1} samples, got {n}")
        # Row norms of the centred samples: the kNN similarity is Kc_ab / (|xc_a| |xc_b|).
        inv = Xs.pow(2).sum(2).sqrt()  # (S, n)
        inv = torch.where(inv > 0, 1.0 / inv.clamp_min(torch.finfo(X.dtype).tiny), torch.zeros_like(inv))
    step = _rows_per_chunk(S, n)
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        K = torch.bmm(Xs[:, r0:r1], Xs.transpose(1, 2))  # (S, r, n) rows of the centred Grams
        if cka:
            Kf = K.reshape(S, -1)  # (S, r*n)
            A += Kf @ Kf.T
        if k:  # in place: K becomes the cosine of centred rows (no second chunk-sized buffer)
            sim = K.mul_(inv[:, r0:r1, None]).mul_(inv[:, None, :])  # (S, r, n)
            rows = torch.arange(r0, r1, device=X.device)
            sim[:, rows - r0, rows] = float("-inf")  # a sample is not its own neighbour
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
