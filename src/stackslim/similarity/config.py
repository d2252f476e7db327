"""The configuration of `stackslim analyze`, the names of the metrics, estimators and views,
and the error of stackslim.similarity.

    stackslim analyze whisper-base synth-commands --out runs/analyze \\
        --metrics cosine,cka,mknn --view pooled --estimator dataset
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import StackslimError
from ..runtime import DEVICE_HELP


class SimilarityError(StackslimError):
    """Inputs a similarity metric cannot use: bad shapes, too few samples, a constant
    representation, an unsupported metric/estimator/view combination (one-line message)."""


METRICS = ("cosine", "cka", "mknn")
ESTIMATORS = ("dataset", "minibatch", "unbiased")
VIEWS = ("pooled", "frames", "flat")
CKA_SPACES = ("auto", "gram", "feature")
SPLITS = ("all", "train", "validation", "test")
SUPPORTED: dict[str, dict[str, tuple[str, ...]]] = {
    "cosine": {e: VIEWS for e in ESTIMATORS},
    "cka": {e: VIEWS for e in ESTIMATORS},
    "mknn": {"dataset": ("pooled", "flat"), "minibatch": VIEWS},
}
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_supported(metric: str, estimator: str, view: str) -> None:
    """Raise SimilarityError naming the supported combinations when this one is not."""
    if metric not in SUPPORTED:
        raise SimilarityError(f"unknown metric {metric!r}: choose from {', '.join(METRICS)}")
    if estimator not in ESTIMATORS:
        raise SimilarityError(f"unknown estimator {estimator!r}: choose from {', '.join(ESTIMATORS)}")
    if view not in VIEWS:
        raise SimilarityError(f"unknown view {view!r}: choose from {', '.join(VIEWS)}")
    if view not in SUPPORTED[metric].get(estimator, ()):
        combos = "; ".join(f"estimator={e!r} with view in {list(v)}" for e, v in SUPPORTED[metric].items())
        raise SimilarityError(f"{metric} does not support estimator={estimator!r} with view={view!r}; "
                              f"supported: {combos}")


def min_minibatch(metrics: tuple[str, ...], estimator: str, k: int) -> int:
    """Fewest samples per minibatch the metrics need (`minibatch.MinibatchAccumulator`)."""
    cka, knn = "cka" in metrics, "mknn" in metrics
    return max(4 if (cka and estimator == "unbiased") else 2, (k + 1) if knn else 2)


@dataclass(frozen=True)
class AnalyzeConfig:
    """Options of `stackslim analyze MODEL DATA --out DIR` (defaults: the paper's metrics on
    pooled states, exact over the whole data set).

    Exact command with the defaults (one flag per field)::

        stackslim analyze MODEL DATA --out DIR --metrics cosine,cka,mknn --view pooled \\
            --estimator dataset --k 8 --encode-batch 16
    """

    metrics: tuple[str, ...] = field(default=METRICS, metadata={"help": "metrics: cosine, cka, mknn"})
    view: str = field(default="pooled", metadata={"help": "samples: pooled (one per clip), frames, flat",
                                                   "choices": VIEWS})
    estimator: str = field(default="dataset", metadata={"help": "dataset (exact, streaming), minibatch "
                                                        "(paper), unbiased (Nguyen 2021)", "choices": ESTIMATORS})
    k: int = field(default=8, metadata={"help": "neighbours of mutual kNN"})
    knn_center: bool = field(default=False, metadata={
        "help": "mutual kNN of column-centred samples (default: not centred, the reference "
                "definition of Huh et al. 2024)"})
    minibatch: int = field(default=128, metadata={"help": "samples per minibatch (minibatch/unbiased)"})
    cka_space: str = field(default="auto", metadata={
        "help": "exact CKA in gram space (stores every sample: memory grows with the clips) or "
                "feature space (D×D sums: memory independent of the clips); auto: feature for "
                "frames, gram otherwise", "choices": CKA_SPACES})
    encode_batch: int = field(default=16, metadata={"help": "clips per forward pass"})
    max_clips: int = field(default=0, metadata={"help": "use at most this many clips (0: all), seeded"})
    split: str = field(default="all", metadata={"help": "which clips: all, train, validation, test",
                                                "choices": SPLITS})
    seed: int = field(default=0, metadata={"help": "seed of the clip subset and split"})
    final_norm: bool = field(default=True, metadata={"help": "state L after the family's final norm"})
    robustness: bool = field(default=True, metadata={"help": "check blocks against outlier channels"})
    checkpoint_every: int = field(default=20, metadata={"help": "batches between resume checkpoints "
                                                         "(0: none)"})
    device: str = field(default="auto", metadata={"help": DEVICE_HELP})

    def __post_init__(self) -> None:
        metrics = (self.metrics,) if isinstance(self.metrics, str) else tuple(self.metrics)
        metrics = tuple(dict.fromkeys(metrics))
        if not metrics:
            raise SimilarityError(f"give at least one metric, of: {', '.join(METRICS)}")
        object.__setattr__(self, "metrics", metrics)
        for m in metrics:
            check_supported(m, self.estimator, self.view)
        if self.cka_space not in CKA_SPACES:
            raise SimilarityError(f"cka_space must be 'auto', 'feature' or 'gram', got {self.cka_space!r}")
        if self.cka_space == "feature" and self.view == "flat":
            raise SimilarityError("cka_space='feature' is not supported with view='flat' (T*D features): "
                                  "use cka_space='gram' or 'auto'")
        if int(self.k) != self.k or self.k < 1:
            raise SimilarityError(f"k must be a positive integer, got {self.k}")
        for name in ("minibatch", "encode_batch"):
            if getattr(self, name) < 1:
                raise SimilarityError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        need = min_minibatch(metrics, self.estimator, self.k)
        if self.estimator != "dataset" and ({"cka", "mknn"} & set(metrics)) and self.minibatch < need:
            raise SimilarityError(f"--minibatch {self.minibatch} is too small: these metrics need at "
                                  f"least {need} samples per batch")
        for name in ("max_clips", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise SimilarityError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.split not in SPLITS:
            raise SimilarityError(f"unknown split {self.split!r}: choose from {', '.join(SPLITS)}")
        if not _DEVICE.match((self.device or "auto").strip().lower()):
            raise SimilarityError(f"--device {self.device!r} is not a device ({DEVICE_HELP})")
