"""Are the measured blocks real, or made by a few outlier channels?

Transformer residual streams often carry a handful of channels with huge activations; CKA
is dominated by them (it weights channels by their variance). This module measures that and
recomputes the similarity without their influence, still from the one streaming pass:

- `ChannelStats`: per hidden state and channel c, the mean square E[x_c^2] and the standard
  deviation over the samples of the engine's view (from `ChannelMoments`).
- `top_k_share(k)`: share of the squared norm carried by the top-k channels,
  sum_{c in top k} E[x_c^2] / sum_c E[x_c^2]   (per state; k = 1 and 4 in reports).
- Outlier rule: channel c of state i is an outlier when E[x_c^2] > ratio * median_c E[x_c^2]
  (ratio = 10 by default), the median taken over the channels of that state.
- Transforms as per-channel weights w (S, D) applied to the features: z-scores w = 1/std
  (a channel with std 0 gets w = 0), outliers removed w = 0 on flagged channels. For
  feature-space CKA this is exact from the accumulated covariances, C'_ij = W_i C_ij W_j;
  for stored samples the samples are reweighted. No second pass over the data.
- `robustness_check`: block structure of raw, standardised and outliers-removed matrices; the
  blocks survive a transform when it gives the same number of blocks and every boundary moves
  by at most `tolerance` states (default 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from .accumulators import ChannelMoments
from .blocks import Blocks, find_blocks
from .config import SimilarityError
from .result import SimilarityResult
from .views import is_hidden_states, samples

if TYPE_CHECKING:  # importing stackslim.models pulls in transformers (seconds); only types are needed
    from ..models.base import HiddenStates

TRANSFORMS = ("none", "standardize", "drop_outliers")


@dataclass
class ChannelStats:
    """Per state and channel statistics. mean_square, std: (S, D) float64; n: samples."""

    mean_square: np.ndarray
    std: np.ndarray
    n: int

    @classmethod
    def from_moments(cls, m: ChannelMoments) -> "ChannelStats":
        return cls(m.mean_square().cpu().numpy(), m.std().cpu().numpy(), m.n)

    @classmethod
    def from_hidden_states(cls, hidden_states: HiddenStates | Sequence[HiddenStates],
                           view: str = "frames") -> "ChannelStats":
        """Directly from hidden states (view "pooled" or "frames")."""
        batches = [hidden_states] if is_hidden_states(hidden_states) else list(hidden_states)
        if view not in ("pooled", "frames"):
            raise SimilarityError(f"channel statistics need view 'pooled' or 'frames', got {view!r}")
        m = None
        for hs in batches:
            z = samples(hs, view).to(torch.float64)  # (n, S, D)
            if m is None:
                m = ChannelMoments(z.shape[1])
            m.update(z)
        if m is None:
            raise SimilarityError("no hidden states given")
        return cls.from_moments(m)

    def top_k_share(self, k: int) -> np.ndarray:
        """(S,) share of sum_c E[x_c^2] carried by the k channels with the largest E[x_c^2]."""
        ms = self.mean_square
        top = -np.sort(-ms, axis=1)[:, :k].sum(1)
        return top / np.maximum(ms.sum(1), np.finfo(np.float64).tiny)

    def outlier_mask(self, ratio: float = 10.0) -> np.ndarray:
        """(S, D) bool: E[x_c^2] > ratio * median over the state's channels."""
        med = np.median(self.mean_square, axis=1, keepdims=True)
        return self.mean_square > ratio * med

    def outlier_channels(self, ratio: float = 10.0) -> list[list[int]]:
        """Per state, the flagged channel indices (largest mean square first)."""
        mask = self.outlier_mask(ratio)
        return [sorted(np.flatnonzero(row).tolist(), key=lambda c, i=i: -self.mean_square[i, c])
                for i, row in enumerate(mask)]

    def weights(self, transform: str, ratio: float = 10.0) -> torch.Tensor | None:
        """(S, D) float64 per-channel factors for `SimilarityEngine.result(channel_weights=...)`."""
        if transform == "none":
            return None
        if transform == "standardize":
            w = np.where(self.std > 0, 1.0 / np.maximum(self.std, np.finfo(np.float64).tiny), 0.0)
        elif transform == "drop_outliers":
            w = (~self.outlier_mask(ratio)).astype(np.float64)
        else:
            raise SimilarityError(f"unknown transform {transform!r}: choose from {', '.join(TRANSFORMS)}")
        return torch.from_numpy(w)

    def to_json(self, ratio: float = 10.0) -> dict[str, Any]:
        return {"n": int(self.n), "top1_share": self.top_k_share(1).tolist(),
                "top4_share": self.top_k_share(4).tolist(), "outlier_ratio": ratio,
                "outlier_channels": self.outlier_channels(ratio)}


def transformed_results(engine, transforms: Sequence[str] = TRANSFORMS, ratio: float = 10.0,
                        metrics: Sequence[str] | None = None) -> dict[str, SimilarityResult]:
    """engine.result() under each transform (dataset estimator, pooled or frames view), of
    `metrics` only when given (default: all the engine's)."""
    stats = ChannelStats.from_moments(engine.channel_moments())
    return {t: engine.result(channel_weights=stats.weights(t, ratio), transform=t, metrics=metrics)
            for t in transforms}


def blocks_survive(raw: Blocks, other: Blocks, tolerance: int = 1) -> bool:
    """Same number of blocks and every boundary within `tolerance` states of the raw one."""
    if raw.num_blocks != other.num_blocks:
        return False
    return all(abs(a - b) <= tolerance for a, b in zip(raw.boundaries, other.boundaries))


@dataclass
class RobustnessReport:
    """Blocks per transform, outlier statistics and the verdict."""

    metric: str
    blocks: dict[str, Blocks]
    matrices: dict[str, np.ndarray]
    stats: ChannelStats
    ratio: float
    survives: dict[str, bool]

    @property
    def verdict(self) -> str:
        lost = [t for t, ok in self.survives.items() if not ok]
        if not lost:
            return (f"the {self.blocks['none'].num_blocks}-block structure survives standardisation and "
                    "removal of outlier channels: it is not an outlier-channel artefact")
        return (f"the block structure changes under {', '.join(lost)}: it is at least partly made by "
                "a few high-magnitude channels")

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "blocks": {t: b.to_json() for t, b in self.blocks.items()},
                "matrices": {t: m.tolist() for t, m in self.matrices.items()},
                "channels": self.stats.to_json(self.ratio), "survives": self.survives, "verdict": self.verdict}


def robustness_check(engine, metric: str = "cka", ratio: float = 10.0, tolerance: int = 1,
                     num_blocks: int | None = None) -> RobustnessReport:
    """Compare the blocks of raw, z-scored and outliers-removed features.

    Args:
        engine: a SimilarityEngine with estimator "dataset", view "pooled" or "frames", that
            has seen the data (and been all-reduced when distributed).
        metric: "cka", or "mknn" (pooled view only: needs the stored samples).
        ratio: outlier rule factor. tolerance: boundary shift (states) still counted as equal.
        num_blocks: fix the number of blocks for all three (None: BIC per matrix).
    """
    results = transformed_results(engine, TRANSFORMS, ratio, metrics=(metric,))  # the others: not read
    mats = {t: r.matrix(metric) for t, r in results.items()}
    blocks = {t: find_blocks(m, num_blocks=num_blocks) for t, m in mats.items()}
    survives = {t: blocks_survive(blocks["none"], blocks[t], tolerance) for t in TRANSFORMS if t != "none"}
    return RobustnessReport(metric=metric, blocks=blocks, matrices=mats,
                            stats=ChannelStats.from_moments(engine.channel_moments()), ratio=ratio,
                            survives=survives)
