"""Minibatch estimators: CKA and mutual kNN within batches of B samples, averaged over batches.

The engine re-chunks whatever it is given into batches of exactly `batch_size` samples in
arrival order, so the result does not depend on how the data was split into `update` calls.

- biased CKA (the paper's setting): per batch b the all-pairs CKA_b (Gram space, B x B),
  then the batch-size-weighted mean  sum_b B_b CKA_b / sum_b B_b.
- unbiased CKA (Nguyen et al. 2021): per batch the unbiased HSIC_u,b of every pair; then
  CKA_ij = Hbar_ij / sqrt(Hbar_ii Hbar_jj) with Hbar the batch-size-weighted mean of HSIC_u,b.
- mutual kNN: per batch the kNN lists within the batch; overlaps summed over all samples,
  divided by k n (= the batch-size-weighted mean of the per-batch scores).

The last, incomplete batch (fewer than `batch_size` samples) is kept in a buffer; `result()`
includes it as one smaller batch when it has at least `min_batch` samples (2 for biased CKA, 4
for unbiased, k+1 for kNN), otherwise it is reported as dropped. Two processes give the same
result as one when each process's share is a multiple of `batch_size` (the batches are then
the same); `all_reduce` also pools the leftover buffers so no sample is lost.
Memory: the buffer, at most batch_size * S * D float64 (for the flat view D = T * D_model).
"""
from __future__ import annotations

from typing import Any

import torch

from .accumulators import F64, _Accumulator
from .allpairs import cka_from_hsic, cka_from_inner, gram_pass, hsic_unbiased_matrix, knn_overlap_matrix
from .distributed import all_gather_objects, all_reduce_sum_
from .config import SimilarityError


class MinibatchAccumulator(_Accumulator):
    """Batch-wise CKA (biased or unbiased) and mutual kNN over all pairs of states.

    Args:
        num_states: S = L + 1.
        batch_size: samples per batch B.
        cka: compute CKA. unbiased: use the unbiased HSIC (Nguyen et al.) instead of biased CKA.
        k: neighbours for mutual kNN, or None to skip it.
        knn_center: kNN of column-centred rows (per batch) instead of the raw rows (reference).
    """

    def __init__(self, num_states: int, batch_size: int = 128, cka: bool = True,
                 unbiased: bool = False, k: int | None = None, knn_center: bool = False):
        super().__init__(num_states)
        self.batch_size, self.cka, self.unbiased, self.k = int(batch_size), cka, unbiased, k
        self.knn_center = bool(knn_center)
        self.min_batch = max(4 if (cka and unbiased) else 2, (k + 1) if k else 2)
        if self.batch_size < self.min_batch:
            raise SimilarityError(f"batch_size={batch_size} is too small: these metrics need at least "
                                  f"{self.min_batch} samples per batch")
        S = self.num_states
        self.cka_sum = torch.zeros(S, S, dtype=F64)  # sum_b B_b * (CKA_b or HSIC_u,b)
        self.knn_sum = torch.zeros(S, S, dtype=F64)  # sum of kNN overlap counts
        self.weight = 0  # samples in completed batches
        self.batches = 0
        self._buf: list[torch.Tensor] = []
        self._nbuf = 0

    def _batch_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted CKA/HSIC contribution and kNN overlaps of one batch x (B, S, D)."""
        B, S = x.shape[0], self.num_states
        c = torch.zeros(S, S, dtype=F64, device=x.device)
        if self.cka and self.unbiased:
            c = B * hsic_unbiased_matrix(x)
        A, idx = gram_pass(x, cka=self.cka and not self.unbiased, k=self.k, knn_center=self.knn_center)
        if A is not None:
            c = B * cka_from_inner(A)
        o = knn_overlap_matrix(idx) if self.k else torch.zeros(S, S, dtype=F64, device=x.device)
        return c, o

    def _flush(self) -> None:
        """Process every complete batch in the buffer."""
        if self._nbuf < self.batch_size:
            return
        x = torch.cat(self._buf) if len(self._buf) > 1 else self._buf[0]
        nfull = (x.shape[0] // self.batch_size) * self.batch_size
        for b0 in range(0, nfull, self.batch_size):
            c, o = self._batch_stats(x[b0:b0 + self.batch_size])
            self.cka_sum = self.cka_sum.to(c.device) + c
            self.knn_sum = self.knn_sum.to(o.device) + o
            self.weight += self.batch_size
            self.batches += 1
        rest = x[nfull:]
        self._buf, self._nbuf = ([rest.clone()] if rest.shape[0] else []), rest.shape[0]

    def update(self, x: torch.Tensor) -> None:
        self._check_chunk(x)
        if self._buf and x.shape[2] != self._buf[0].shape[2]:
            raise SimilarityError(f"feature size changed from {self._buf[0].shape[2]} to {x.shape[2]}")
        self._buf.append(x.detach().to(F64).clone())
        self._nbuf += x.shape[0]
        self.n += x.shape[0]
        self._flush()

    def merge(self, other: "MinibatchAccumulator") -> None:
        self._check_other(other)
        if ((other.batch_size, other.cka, other.unbiased, other.k, other.knn_center)
                != (self.batch_size, self.cka, self.unbiased, self.k, self.knn_center)):
            raise SimilarityError("cannot merge minibatch accumulators with different settings")
        self.cka_sum = self.cka_sum + other.cka_sum.to(self.cka_sum.device)
        self.knn_sum = self.knn_sum + other.knn_sum.to(self.knn_sum.device)
        self.weight += other.weight
        self.batches += other.batches
        self.n += other.n
        self._buf.extend(other._buf)
        self._nbuf += other._nbuf
        self._flush()

    def all_reduce(self) -> None:
        """Sum the batch statistics over processes and pool the leftover buffers (rank order)."""
        self._check_open("all_reduce")
        dev = self.cka_sum.device
        S2 = self.num_states ** 2
        flat = torch.cat([self.cka_sum.flatten().cpu(), self.knn_sum.flatten().cpu(),
                          torch.tensor([self.weight, self.batches, self.n], dtype=F64)])
        all_reduce_sum_(flat)
        self.cka_sum = flat[:S2].view_as(self.cka_sum).to(dev)
        self.knn_sum = flat[S2:2 * S2].view_as(self.knn_sum).to(dev)
        self.weight, self.batches, self.n = (int(round(v)) for v in flat[2 * S2:].tolist())
        rest = torch.cat(self._buf).cpu() if self._buf else None
        parts = [p for p in all_gather_objects(rest) if p is not None]
        self._buf = [torch.cat(parts).to(dev)] if parts else []
        self._nbuf = sum(p.shape[0] for p in parts)
        self._flush()  # every process runs the same pooled leftovers: identical state everywhere
        self.reduced = True

    def totals(self) -> tuple[torch.Tensor, torch.Tensor, int, int, int]:
        """Sums including the leftover batch (when big enough), without changing the state.

        Returns:
            cka_sum (S, S), knn_sum (S, S), weight (samples in counted batches), batches, dropped.
        """
        c, o, w, b, dropped = self.cka_sum, self.knn_sum, self.weight, self.batches, 0
        if self._nbuf >= self.min_batch:
            x = torch.cat(self._buf)
            cb, ob = self._batch_stats(x)
            c, o, w, b = c + cb.to(c.device), o + ob.to(o.device), w + x.shape[0], b + 1
        else:
            dropped = self._nbuf
        if w == 0:
            raise SimilarityError(f"no complete minibatch: saw {self.n} samples, need at least "
                                  f"{self.min_batch} (batch_size={self.batch_size})")
        return c, o, w, b, dropped

    def matrices(self) -> tuple[dict[str, torch.Tensor], int]:
        """({"cka": (S, S), "mknn": (S, S)} for the enabled metrics, dropped samples)."""
        c, o, w, _, dropped = self.totals()
        out = {}
        if self.cka:
            out["cka"] = cka_from_hsic(c / w) if self.unbiased else _unit(c / w)
        if self.k:
            out["mknn"] = _unit(o / (w * self.k))
        return out, dropped

    def state_dict(self) -> dict[str, Any]:
        return {"num_states": self.num_states, "n": self.n, "reduced": self.reduced,
                "batch_size": self.batch_size, "cka": self.cka, "unbiased": self.unbiased, "k": self.k,
                "knn_center": self.knn_center, "cka_sum": self.cka_sum.cpu(), "knn_sum": self.knn_sum.cpu(), "weight": self.weight,
                "batches": self.batches, "buffer": torch.cat(self._buf).cpu() if self._buf else None}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.__init__(sd["num_states"], sd["batch_size"], sd["cka"], sd["unbiased"], sd["k"],
                      sd.get("knn_center", True))  # saved before the option: centred kNN
        self.n, self.reduced, self.weight, self.batches = sd["n"], sd["reduced"], sd["weight"], sd["batches"]
        self.cka_sum, self.knn_sum = sd["cka_sum"], sd["knn_sum"]
        self._buf = [] if sd["buffer"] is None else [sd["buffer"]]
        self._nbuf = 0 if sd["buffer"] is None else sd["buffer"].shape[0]


def _unit(C: torch.Tensor) -> torch.Tensor:
    C = 0.5 * (C + C.T)
    C.fill_diagonal_(1.0)
    return C
