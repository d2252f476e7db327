"""All-pairs similarity engine over hidden states 0..L, streaming, mergeable, distributed.

Example::

    eng = SimilarityEngine(num_states=L + 1, view="pooled", estimator="dataset")
    for waves in loader:
        eng.update(encoder.hidden_states(waves))
    eng.all_reduce()            # under torchrun; a no-op in one process
    res = eng.result()          # res.matrices["cka"] is (L+1, L+1)

What is computed where (S = L+1 states, D' features per sample, n samples):

| metric | estimator | views | how |
|---|---|---|---|
| cosine | any | pooled, frames, flat | streaming mean over samples (`CosineAccumulator`); a sample mean, so `minibatch` (batch-size weighted) and `unbiased` give the same number as `dataset` |
| cka | dataset | pooled, flat | exact, Gram space over stored samples (`SampleStore`: a temporary file of n S D' float64, read back in blocks) |
| cka | dataset | frames (and pooled with cka_space="feature") | exact, feature space (`CovarianceAccumulator`, memory S(S+1)/2 D^2 float64) |
| cka | minibatch | all | biased CKA per batch of `batch_size`, averaged (the paper's setting) |
| cka | unbiased | all | Nguyen et al. 2021: mean unbiased HSIC over batches, then normalised |
| mknn | dataset | pooled, flat | exact over all clips (stored samples; memory n k indices per state) |
| mknn | minibatch | all | kNN within each batch |

Not supported (clear error): mknn with `unbiased` (no unbiased kNN estimator), mknn with
`dataset` on frames (O(N^2) over every frame: use minibatch), cka_space="feature" with flat.
Every matrix is symmetric with a unit diagonal (1 by definition on the diagonal).
Minibatches follow arrival order: in the frames view a batch holds consecutive frames of a
few clips (shuffle upstream if that matters).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from .accumulators import ChannelMoments, CosineAccumulator, CovarianceAccumulator
from .allpairs import CHUNK_BYTES, check_knn_samples
from .config import METRICS, SimilarityError, check_supported
from .metrics import as_float64, cosine, linear_cka, mutual_knn
from .minibatch import MinibatchAccumulator
from .result import SimilarityResult
from .store import SampleStore
from .views import samples

if TYPE_CHECKING:  # importing stackslim.models pulls in transformers (seconds); only types are needed
    from ..models.base import HiddenStates


class SimilarityEngine:
    """Every pair of hidden states under each metric, in one streaming pass.

    Args:
        num_states: S = L + 1 (hidden states 0..L).
        metrics: any of "cosine", "cka", "mknn".
        view: "pooled", "frames" or "flat" (see `views`).
        estimator: "dataset" (exact over all samples), "minibatch" (per batch, averaged) or
            "unbiased" (unbiased HSIC over batches).
        k: neighbours for mutual kNN.
        batch_size: samples per batch for minibatch/unbiased.
        cka_space: for dataset CKA, "feature" (D x D cross-products, memory independent of n),
            "gram" (stored samples, n x n Grams) or "auto" (feature for frames, gram otherwise).
        knn_center: mutual kNN of column-centred samples; default False, the reference
            definition (Huh et al. 2024: rows only L2-normalised).
    """

    def __init__(self, num_states: int, metrics: Sequence[str] = METRICS, view: str = "pooled",
                 estimator: str = "dataset", k: int = 8, batch_size: int = 128, cka_space: str = "auto",
                 knn_center: bool = False):
        if isinstance(metrics, str):
            metrics = (metrics,)
        metrics = tuple(dict.fromkeys(metrics))
        if not metrics:
            raise SimilarityError("give at least one metric")
        for m in metrics:
            check_supported(m, estimator, view)
        if cka_space not in ("auto", "feature", "gram"):
            raise SimilarityError(f"cka_space must be 'auto', 'feature' or 'gram', got {cka_space!r}")
        if cka_space == "feature" and view == "flat":
            raise SimilarityError("cka_space='feature' is not supported with view='flat' (T*D features): "
                                  "use cka_space='gram' or 'auto'")
        if int(k) != k or k < 1:
            raise SimilarityError(f"k must be a positive integer, got {k}")
        if num_states < 1:
            raise SimilarityError(f"num_states must be >= 1, got {num_states}")
        self.num_states, self.metrics, self.view, self.estimator = int(num_states), metrics, view, estimator
        self.k, self.batch_size, self.knn_center = int(k), int(batch_size), bool(knn_center)
        self.cka_space = (("feature" if view == "frames" else "gram") if cka_space == "auto" else cka_space)
        self.n, self.dim, self.flat_len = 0, None, None
        S, want = self.num_states, set(metrics)
        self.acc: dict[str, Any] = {}
        if "cosine" in want:
            self.acc["cosine"] = CosineAccumulator(S)
        if view != "flat":
            self.acc["moments"] = ChannelMoments(S)  # cheap; feeds outliers and z-scoring
        if estimator == "dataset":
            if "cka" in want and self.cka_space == "feature":
                self.acc["cov"] = CovarianceAccumulator(S)
            if ("cka" in want and self.cka_space == "gram") or "mknn" in want:
                self.acc["store"] = SampleStore(S)
        elif "cka" in want or "mknn" in want:
            self.acc["minibatch"] = MinibatchAccumulator(
                S, self.batch_size, cka="cka" in want, unbiased=estimator == "unbiased",
                k=self.k if "mknn" in want else None, knn_center=self.knn_center)

    def config(self) -> dict[str, Any]:
        return {"num_states": self.num_states, "metrics": list(self.metrics), "view": self.view,
                "estimator": self.estimator, "k": self.k, "batch_size": self.batch_size,
                "cka_space": self.cka_space, "knn_center": self.knn_center}

    @torch.no_grad()
    def update(self, hidden_states: HiddenStates) -> None:
        """Add one batch of states (all S = L+1 of them, shape (B, T, D) each)."""
        if len(hidden_states.states) != self.num_states:
            raise SimilarityError(f"expected {self.num_states} hidden states (L+1), got "
                                  f"{len(hidden_states.states)}")
        z = samples(hidden_states, self.view, self.flat_len)  # (n, S, D')
        if self.view == "flat":
            self.flat_len = z.shape[2] // hidden_states.states[0].shape[2]
        self.add_samples(z)

    @torch.no_grad()
    def add_samples(self, z: torch.Tensor) -> None:
        """Add samples (n, S, D') directly (already in this engine's view)."""
        if z.ndim != 3 or z.shape[1] != self.num_states:
            raise SimilarityError(f"expected samples (n, {self.num_states}, D), got {tuple(z.shape)}")
        if self.dim is not None and z.shape[2] != self.dim:
            raise SimilarityError(f"feature size changed from {self.dim} to {z.shape[2]}")
        self.dim = z.shape[2]
        rows = max(1, CHUNK_BYTES // (8 * self.num_states * max(1, self.dim)))
        for chunk in z.detach().split(rows):
            x = chunk.to(torch.float64)  # (r, S, D')
            if not bool(torch.isfinite(x).all()):
                raise SimilarityError("hidden states contain NaN or inf")
            for acc in self.acc.values():
                acc.update(x)
        self.n += z.shape[0]

    def merge(self, other: "SimilarityEngine") -> None:
        """Fold in another engine's statistics (same configuration), as if its data came here."""
        if other.config() != self.config():
            raise SimilarityError(f"cannot merge engines with different settings: {other.config()} vs {self.config()}")
        for name, acc in self.acc.items():
            acc.merge(other.acc[name])
        self.n += other.n
        self.dim = self.dim or other.dim
        self.flat_len = self.flat_len or other.flat_len

    def all_reduce(self) -> None:
        """Sum the statistics over all processes (torch.distributed); no-op in one process.

        Call once, after the last update, on every process; all then hold the global result.
        """
        for acc in self.acc.values():
            acc.all_reduce()
        self.n = next(iter(self.acc.values())).n

    def channel_moments(self) -> ChannelMoments:
        if "moments" not in self.acc:
            raise SimilarityError("channel statistics are not kept for the flat view")
        return self.acc["moments"]

    def result(self, channel_weights: torch.Tensor | None = None, transform: str = "none",
               metrics: Sequence[str] | None = None) -> SimilarityResult:
        """The (S, S) matrix of every metric.

        Args:
            channel_weights: optional (S, D) per-channel factors applied to the features before
                CKA (and dataset mknn): 1/std for z-scores, 0 to remove a channel. Needs the
                dataset estimator and the pooled or frames view; the result then holds only the
                metrics that can be recomputed from what was kept (cka, and mknn when stored);
                cosine is a streamed sum of per-sample values and is left out.
            transform: a label stored in the result (e.g. "standardize").
            metrics: compute only these of the engine's metrics (default: all of them); e.g.
                CKA alone skips the kNN lists of a dataset pass.
        """
        want = self.metrics if metrics is None else tuple(metrics)
        if not set(want) <= set(self.metrics):
            raise SimilarityError(f"metrics {list(want)} are not all among this engine's {list(self.metrics)}")
        if self.n == 0:
            raise SimilarityError("no samples seen: call update() first")
        if "store" in self.acc and "mknn" in want:
            check_knn_samples(self.n, self.k)  # before any of the costly work
        if channel_weights is not None and (self.estimator != "dataset" or self.view == "flat"):
            raise SimilarityError("channel weights need estimator='dataset' and view 'pooled' or 'frames' "
                                  f"(got estimator={self.estimator!r}, view={self.view!r})")
        out: dict[str, np.ndarray] = {}
        dropped = 0
        if "cosine" in want and channel_weights is None:
            out["cosine"] = self.acc["cosine"].matrix()
        if "cov" in self.acc and "cka" in want:
            out["cka"] = self.acc["cov"].cka_matrix(channel_weights)
        want_cka = "cka" in want and self.cka_space == "gram"
        if "store" in self.acc and (want_cka or "mknn" in want):
            C, O = self.acc["store"].compute(cka=want_cka, k=self.k if "mknn" in want else None,
                                             weights=channel_weights, knn_center=self.knn_center)
            if C is not None:
                out["cka"] = C
            if O is not None:
                O = O / (self.acc["store"].n * self.k)
                O.fill_diagonal_(1.0)
                out["mknn"] = O
        if "minibatch" in self.acc:
            mats, dropped = self.acc["minibatch"].matrices()
            out.update(mats)
        order = [m for m in self.metrics if m in out and m in want]
        return SimilarityResult(
            matrices={m: out[m].cpu().numpy() for m in order}, view=self.view, estimator=self.estimator,
            n_samples=self.n, num_states=self.num_states, k=self.k if "mknn" in order else None,
            knn_center=self.knn_center if "mknn" in order else None,
            batch_size=self.batch_size if self.estimator != "dataset" else None,
            cka_space=self.cka_space if (self.estimator == "dataset" and "cka" in order) else None,
            transform=transform, dropped_samples=dropped)

    def state_dict(self, samples_file: str | os.PathLike | None = None) -> dict[str, Any]:
        """Everything needed to resume (torch.save-able).

        Args:
            samples_file: where the stored samples (dataset CKA in Gram space, dataset mknn) go
                instead of into the dict (see `SampleStore.state_dict`): a checkpoint then costs
                no memory per sample, and a repeated one appends only the new rows.
        """
        accs = {name: acc.state_dict(samples_file) if name == "store" else acc.state_dict()
                for name, acc in self.acc.items()}
        return {"config": self.config(), "n": self.n, "dim": self.dim, "flat_len": self.flat_len, "acc": accs}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        if sd["config"] != self.config():
            raise SimilarityError(f"state was saved with {sd['config']}, this engine has {self.config()}")
        self.n, self.dim, self.flat_len = sd["n"], sd["dim"], sd["flat_len"]
        for name, acc in self.acc.items():
            acc.load_state_dict(sd["acc"][name])

    def close(self) -> None:
        """Remove the temporary sample file, if any (also done when the engine is garbage-collected)."""
        if "store" in self.acc:
            self.acc["store"].close()

    @classmethod
    def from_state_dict(cls, sd: dict[str, Any]) -> "SimilarityEngine":
        eng = cls(**sd["config"])
        eng.load_state_dict(sd)
        return eng


def _reference_cka(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Biased linear CKA the way common CKA packages do it: build both n x n Grams, centre them."""
    K, L = X @ X.T, Y @ Y.T  # (n, n)
    K = K - K.mean(0, keepdim=True) - K.mean(1, keepdim=True) + K.mean()
    L = L - L.mean(0, keepdim=True) - L.mean(1, keepdim=True) + L.mean()
    if not (K.norm() > 0 and L.norm() > 0):
        raise SimilarityError("a state is constant over the samples: CKA is undefined (0/0)")
    return float((K * L).sum() / (K.norm() * L.norm()))


def pairwise_reference(states_list: Sequence[torch.Tensor | np.ndarray], metric: str, k: int = 8,
                       unbiased: bool = False, knn_center: bool = False) -> np.ndarray:
    """The obvious per-pair loop: for i <= j, compute metric(X_i, X_j) from scratch.

    For CKA each pair builds its two n x n Grams again (what common CKA packages do), so the
    cost is about S^2 n^2 D versus S n^2 D for the engine. Used by the tests and the bench.

    Args:
        states_list: S arrays (n, D): the samples of each hidden state (one view).
        metric: "cosine", "cka" or "mknn". k: neighbours for mknn. unbiased: unbiased CKA.
        knn_center: mknn of column-centred samples (default: the reference, not centred).

    Returns:
        (S, S) float64 numpy matrix, symmetric, unit diagonal.
    """
    X = [as_float64(s, f"state {i}") for i, s in enumerate(states_list)]
    for x in X:
        if x.shape[0] != X[0].shape[0]:
            raise SimilarityError("all states must have the same number of samples")
    fns = {"cosine": cosine, "mknn": lambda a, b: mutual_knn(a, b, k=k, center=knn_center),
           "cka": (lambda a, b: linear_cka(a, b, unbiased=True)) if unbiased else _reference_cka}
    if metric not in fns:
        raise SimilarityError(f"unknown metric {metric!r}: choose from {', '.join(METRICS)}")
    S = len(X)
    M = np.eye(S)
    for i in range(S):
        for j in range(i + 1, S):
            M[i, j] = M[j, i] = fns[metric](X[i], X[j])
    return M
