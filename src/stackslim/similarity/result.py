"""The typed result of a similarity run: one (L+1) x (L+1) matrix per metric."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import SimilarityError


@dataclass
class SimilarityResult:
    """Similarity of every pair of hidden states 0..L.

    Attributes:
        matrices: metric name ("cosine", "cka", "mknn") -> (L+1, L+1) float64 array, symmetric,
            unit diagonal; entry [i, j] compares hidden state i with hidden state j.
        view: "pooled", "frames" or "flat". estimator: "dataset", "minibatch" or "unbiased".
        n_samples: samples that entered (clips for pooled/flat, frames for frames).
        num_states: L + 1. k: neighbours of mknn (None without mknn).
        knn_center: whether mknn centred the samples (False: the reference definition, rows only
            L2-normalised; None without mknn).
        batch_size: minibatch size (None for the dataset estimator).
        cka_space: "feature" or "gram" for dataset CKA, else None.
        transform: "none", or the feature transform the matrices were computed on.
        dropped_samples: samples of a last minibatch too small to count (minibatch estimators).
    """

    matrices: dict[str, np.ndarray]
    view: str
    estimator: str
    n_samples: int
    num_states: int
    k: int | None = None
    batch_size: int | None = None
    cka_space: str | None = None
    transform: str = "none"
    dropped_samples: int = 0
    knn_center: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def matrix(self, metric: str) -> np.ndarray:
        if metric not in self.matrices:
            raise SimilarityError(f"no {metric!r} matrix in this result (have {list(self.matrices)})")
        return self.matrices[metric]

    def block_influence(self, metric: str = "cosine") -> np.ndarray:
        """(L,) BI(i) = 1 - sim(h_{i-1}, h_i) for i = 1..L, from the first off-diagonal."""
        from .blocks import block_influence_from_matrix

        return block_influence_from_matrix(self.matrix(metric))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: matrices as nested lists plus the settings that produced them."""
        return {"matrices": {m: np.asarray(a, dtype=float).tolist() for m, a in self.matrices.items()},
                "view": self.view, "estimator": self.estimator, "n_samples": int(self.n_samples),
                "num_states": int(self.num_states), "k": self.k, "batch_size": self.batch_size,
                "cka_space": self.cka_space, "transform": self.transform,
                "dropped_samples": int(self.dropped_samples), "knn_center": self.knn_center,
                "extra": self.extra}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SimilarityResult":
        d = dict(d)
        d["matrices"] = {m: np.asarray(a, dtype=np.float64) for m, a in d["matrices"].items()}
        return cls(**d)

    def save(self, path: str | os.PathLike) -> Path:
        """Write to_json() to path atomically (temporary file, then os.replace)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SimilarityResult":
        return cls.from_json(json.loads(Path(path).read_text()))
