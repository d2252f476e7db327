"""Streaming, mergeable statistics over all S = L+1 hidden states (the `dataset` estimator).

Each accumulator takes chunks of samples ``x`` (n, S, D) float64 through `update`, combines with
another one (`merge`), sums over processes (`all_reduce`, torch.distributed with gloo or nccl;
a no-op in one process) and saves/restores (`state_dict`, `load_state_dict`). One process that
sees all data and P processes that each see a part and then `all_reduce` give the same result
(up to float64 rounding). `all_reduce` is the last step: afterwards the accumulator refuses
`update`, `merge` and a second `all_reduce` (that would count the other processes twice).

- `CosineAccumulator`: sum over samples of cos(x_i, x_j) for every pair, and n. Memory S^2.
- `ChannelMoments`: per state and channel the mean and centred sum of squares (Chan et al.
  parallel update). Memory 2 S D. Feeds the outlier analysis.
- `CovarianceAccumulator`: exact dataset linear CKA in feature space. Keeps the mean and the
  centred cross-products C_ij = Xc_i^T Xc_j (D x D) for i <= j only: S(S+1)/2 D^2 float64,
  e.g. S=13, D=768: 91 * 4.7 MB = 0.43 GB; S=7, D=512: 59 MB. Independent of n, so this is the
  choice for the frames view (every frame a sample). Cost per sample: S(S+1) D^2 flops.
- `SampleStore` (in `store.py`): keeps the samples (n, S, D) float64 in a temporary file
  (n S D * 8 bytes of disk, nothing per sample in memory) and computes exact CKA in Gram space
  and mutual kNN at the end, reading the file back in blocks (`allpairs.gram_pass`, working set
  about CHUNK_BYTES). Cost n^2 S D in total: cheaper than feature space while n < about S D
  (13*768 ~ 10^4 clips), so this is the choice for the pooled and flat views (n = clips).
"""
from __future__ import annotations

from typing import Any

import torch

from .allpairs import F64, check_variance, cka_from_inner, cosine_sum_matrix
from .distributed import all_reduce_max_int, all_reduce_sum_
from .config import SimilarityError


class _Accumulator:
    """Shared bookkeeping: state count, sample count, the once-only all_reduce."""

    def __init__(self, num_states: int):
        if num_states < 1:
            raise SimilarityError(f"num_states must be >= 1, got {num_states}")
        self.num_states = int(num_states)
        self.n = 0
        self.reduced = False

    def _check_open(self, op: str) -> None:
        if self.reduced:
            raise SimilarityError(f"cannot {op}: {type(self).__name__} was already all-reduced "
                                  "(all_reduce() is the last step before reading results)")

    def _check_chunk(self, x: torch.Tensor) -> None:
        self._check_open("update")
        if x.ndim != 3 or x.shape[1] != self.num_states:
            raise SimilarityError(f"expected samples of shape (n, {self.num_states}, D), got {tuple(x.shape)}")

    def _check_other(self, other: "_Accumulator") -> None:
        self._check_open("merge")
        if type(other) is not type(self) or other.num_states != self.num_states:
            raise SimilarityError(f"cannot merge {type(other).__name__}({other.num_states} states) into "
                                  f"{type(self).__name__}({self.num_states} states)")


class CosineAccumulator(_Accumulator):
    """Mean cosine between every pair of states: sum_a cos(x_i[a], x_j[a]) / n."""

    def __init__(self, num_states: int):
        super().__init__(num_states)
        self.sum = torch.zeros(num_states, num_states, dtype=F64)  # (S, S)

    def update(self, x: torch.Tensor) -> None:
        self._check_chunk(x)
        self.sum = self.sum.to(x.device) + cosine_sum_matrix(x.to(F64))
        self.n += x.shape[0]

    def merge(self, other: "CosineAccumulator") -> None:
        self._check_other(other)
        self.sum = self.sum + other.sum.to(self.sum.device)
        self.n += other.n

    def all_reduce(self) -> None:
        self._check_open("all_reduce")
        buf = torch.cat([self.sum.flatten().cpu(), torch.tensor([float(self.n)], dtype=F64)])
        all_reduce_sum_(buf)
        self.sum = buf[:-1].reshape(self.sum.shape).to(self.sum.device)
        self.n, self.reduced = int(round(buf[-1].item())), True

    def matrix(self) -> torch.Tensor:
        """(S, S) mean cosine; diagonal 1 by definition."""
        if self.n == 0:
            raise SimilarityError("no samples seen: call update() first")
        C = self.sum / self.n
        C = 0.5 * (C + C.T)
        C.fill_diagonal_(1.0)
        return C

    def state_dict(self) -> dict[str, Any]:
        return {"num_states": self.num_states, "n": self.n, "reduced": self.reduced, "sum": self.sum.cpu()}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.num_states, self.n, self.reduced = sd["num_states"], sd["n"], sd["reduced"]
        self.sum = sd["sum"].to(F64)


class ChannelMoments(_Accumulator):
    """Per state and channel: n, mean (S, D) and centred sum of squares m2 (S, D)."""

    def __init__(self, num_states: int, dim: int | None = None):
        super().__init__(num_states)
        self.dim = dim
        self.mean = self.m2 = None
        if dim:
            self._alloc(dim, torch.device("cpu"))

    def _alloc(self, dim: int, device: torch.device) -> None:
        self.dim = dim
        self.mean = torch.zeros(self.num_states, dim, dtype=F64, device=device)
        self.m2 = torch.zeros(self.num_states, dim, dtype=F64, device=device)

    def _add(self, nb: int, mean_b: torch.Tensor, m2_b: torch.Tensor) -> None:
        # Chan et al.: m2 = m2_a + m2_b + n_a n_b / n * delta^2 (stable, exact merge).
        if nb == 0:
            return
        na, n = self.n, self.n + nb
        delta = mean_b.to(self.mean.device) - self.mean
        self.m2 += m2_b.to(self.m2.device) + (na * nb / n) * delta.pow(2)
        self.mean += delta * (nb / n)
        self.n = n

    def update(self, x: torch.Tensor) -> None:
        self._check_chunk(x)
        if self.mean is None:
            self._alloc(x.shape[2], x.device)
        x = x.to(F64)
        mb = x.mean(0)  # (S, D)
        self._add(x.shape[0], mb, (x - mb).pow(2).sum(0))

    def merge(self, other: "ChannelMoments") -> None:
        self._check_other(other)
        if other.mean is None:
            return
        if self.mean is None:
            self._alloc(other.dim, other.mean.device)
        self._add(other.n, other.mean, other.m2)

    def all_reduce(self) -> None:
        self._check_open("all_reduce")
        dim = all_reduce_max_int(self.dim or 0)
        if self.mean is None:
            self._alloc(dim, torch.device("cpu"))
        dev = self.mean.device
        n_tot = all_reduce_sum_(torch.tensor([float(self.n)], dtype=F64))
        mu = all_reduce_sum_((self.mean * self.n).cpu()) / n_tot.clamp_min(1)  # (S, D) global mean
        # Global m2 = sum_p [m2_p + n_p (mean_p - mu)^2]: each process adds its own term.
        m2 = all_reduce_sum_((self.m2.cpu() + self.n * (self.mean.cpu() - mu).pow(2)))
        self.mean, self.m2 = mu.to(dev), m2.to(dev)
        self.n, self.reduced = int(round(n_tot.item())), True

    def mean_square(self) -> torch.Tensor:
        """(S, D) E[x_c^2] = var_c + mean_c^2 per state and channel (population variance)."""
        if not self.n:
            raise SimilarityError("no samples seen: call update() first")
        return self.m2 / self.n + self.mean.pow(2)

    def std(self) -> torch.Tensor:
        """(S, D) population standard deviation per state and channel."""
        if not self.n:
            raise SimilarityError("no samples seen: call update() first")
        return (self.m2 / self.n).sqrt()

    def state_dict(self) -> dict[str, Any]:
        return {"num_states": self.num_states, "n": self.n, "reduced": self.reduced, "dim": self.dim,
                "mean": None if self.mean is None else self.mean.cpu(),
                "m2": None if self.m2 is None else self.m2.cpu()}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.num_states, self.n, self.reduced, self.dim = sd["num_states"], sd["n"], sd["reduced"], sd["dim"]
        self.mean, self.m2 = sd["mean"], sd["m2"]


class CovarianceAccumulator(_Accumulator):
    """Exact dataset linear CKA in feature space from centred cross-products C_ij, i <= j.

    State: n, mean mu (S*D,), and one flat float64 buffer holding for every i the row block
    G_i = [C_ii, C_i,i+1, ..., C_i,S-1] of shape (D, (S-i) D), where
        C_ij = sum_a (x_i[a] - mu_i)(x_j[a] - mu_j)^T.
    A chunk adds its own centred products with one in-place GEMM per state (no temporaries)
    and a rank-1 correction n_a n_b / n * delta delta^T (Chan et al.), so it is exact for any
    chunking and any merge order. Then
        CKA_ij = ||C_ij||_F^2 / (||C_ii||_F ||C_jj||_F).
    """

    def __init__(self, num_states: int, dim: int | None = None):
        super().__init__(num_states)
        self.dim = None
        self.mean = self.buf = None
        if dim:
            self._alloc(dim, torch.device("cpu"))

    @staticmethod
    def memory_bytes(num_states: int, dim: int) -> int:
        """Bytes of the cross-product buffer: S(S+1)/2 * D^2 * 8."""
        return num_states * (num_states + 1) // 2 * dim * dim * 8

    def _alloc(self, dim: int, device: torch.device) -> None:
        S, D = self.num_states, dim
        self.dim = D
        self.mean = torch.zeros(S * D, dtype=F64, device=device)
        self.buf = torch.zeros(self.memory_bytes(S, D) // 8, dtype=F64, device=device)
        self._views()

    def _views(self) -> None:
        S, D = self.num_states, self.dim
        self.G, off = [], 0
        for i in range(S):
            size = D * (S - i) * D
            self.G.append(self.buf[off:off + size].view(D, (S - i) * D))  # (D, (S-i) D)
            off += size

    def _add_mean(self, nb: int, mean_b: torch.Tensor) -> None:
        """Fold in nb samples with mean mean_b whose centred products were already added."""
        if nb == 0:
            return
        na, n, D = self.n, self.n + nb, self.dim
        delta = mean_b.to(self.mean.device) - self.mean  # (S D,)
        if na:
            coef = na * nb / n
            for i in range(self.num_states):
                self.G[i].addr_(delta[i * D:(i + 1) * D], delta[i * D:], alpha=coef)
        self.mean += delta * (nb / n)
        self.n = n

    def update(self, x: torch.Tensor) -> None:
        self._check_chunk(x)
        if self.buf is None:
            self._alloc(x.shape[2], x.device)
        if x.shape[2] != self.dim:
            raise SimilarityError(f"feature size changed from {self.dim} to {x.shape[2]}")
        nb, S, D = x.shape
        z = x.to(F64).reshape(nb, S * D)  # (nb, S D)
        mb = z.mean(0)
        zc = z - mb
        for i in range(S):  # G_i += Xc_i^T [Xc_i ... Xc_S-1], in place
            self.G[i].addmm_(zc[:, i * D:(i + 1) * D].T, zc[:, i * D:])
        self._add_mean(nb, mb)

    def merge(self, other: "CovarianceAccumulator") -> None:
        self._check_other(other)
        if other.buf is None:
            return
        if self.buf is None:
            self._alloc(other.dim, other.buf.device)
        if other.dim != self.dim:
            raise SimilarityError(f"cannot merge feature size {other.dim} into {self.dim}")
        self.buf += other.buf.to(self.buf.device)
        self._add_mean(other.n, other.mean)

    def all_reduce(self) -> None:
        self._check_open("all_reduce")
        dim = all_reduce_max_int(self.dim or 0)
        if self.buf is None:
            self._alloc(dim, torch.device("cpu"))
        S, D = self.num_states, self.dim
        n_tot = all_reduce_sum_(torch.tensor([float(self.n)], dtype=F64))
        mu = all_reduce_sum_(self.mean.cpu() * self.n) / n_tot.clamp_min(1)
        delta = self.mean - mu.to(self.mean.device)
        # Global C = sum_p [C_p + n_p delta_p delta_p^T]: each process adds its own term, then sum.
        for i in range(S):
            self.G[i].addr_(delta[i * D:(i + 1) * D], delta[i * D:], alpha=float(self.n))
        dev = self.buf.device
        self.buf = all_reduce_sum_(self.buf.cpu()).to(dev)
        self._views()
        self.mean, self.n, self.reduced = mu.to(dev), int(round(n_tot.item())), True

    def block(self, i: int, j: int) -> torch.Tensor:
        """(D, D) C_ij = Xc_i^T Xc_j (a view; transposed view for i > j)."""
        if i > j:
            return self.block(j, i).T
        D = self.dim
        return self.G[i][:, (j - i) * D:(j - i + 1) * D]

    def inner_products(self, weights: torch.Tensor | None = None) -> torch.Tensor:
        """(S, S) A_ij = ||W_i C_ij W_j||_F^2 with W_i = diag(weights[i]) (identity if None).

        Per-channel weights rescale the features before centring-free CKA: 1/std gives CKA of
        z-scored features, 0 removes a channel. Checks that no weighted state is constant.
        """
        if self.n < 2:
            raise SimilarityError(f"linear CKA needs at least 2 samples, got {self.n}")
        S, D = self.num_states, self.dim
        A = torch.zeros(S, S, dtype=F64, device=self.buf.device)
        diag = torch.stack([self.block(i, i).diagonal() for i in range(S)])  # (S, D)
        mu = self.mean.view(S, D)
        w2 = None if weights is None else weights.to(self.buf.device, F64).pow(2)
        cen = (diag if w2 is None else diag * w2).sum(1)
        raw = ((diag + self.n * mu.pow(2)) if w2 is None else (diag + self.n * mu.pow(2)) * w2).sum(1)
        check_variance(cen, raw)
        scale = cen.sqrt()  # unit Frobenius norm per state: CKA is scale invariant, no overflow
        for i in range(S):
            Gi = self.G[i].view(D, S - i, D)
            if weights is not None:
                w = weights.to(self.buf.device, F64)
                Gi = Gi * w[i][:, None, None] * w[i:][None, :, :]
            Gi = Gi / (scale[i] * scale[i:])[None, :, None]
            A[i, i:] = Gi.pow(2).sum((0, 2))
            A[i + 1:, i] = A[i, i + 1:]
        return A

    def cka_matrix(self, weights: torch.Tensor | None = None) -> torch.Tensor:
        """(S, S) exact biased linear CKA over all samples seen (optionally channel-weighted)."""
        return cka_from_inner(self.inner_products(weights))

    def state_dict(self) -> dict[str, Any]:
        return {"num_states": self.num_states, "n": self.n, "reduced": self.reduced, "dim": self.dim,
                "mean": None if self.mean is None else self.mean.cpu(),
                "buf": None if self.buf is None else self.buf.cpu()}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.num_states, self.n, self.reduced, self.dim = sd["num_states"], sd["n"], sd["reduced"], sd["dim"]
        self.mean, self.buf = sd["mean"], sd["buf"]
        if self.buf is not None:
            self._views()
