"""Two-stage training of the mimic layers on cached teacher states (`stackslim.train.train`).

Stage 1 (distillation, no labels), over every valid frame of the train split + unlabelled clips:

    L_1 = Σ_k MSE(m_k, h_{t_k}) / v_k   one term per mimic layer: with 1 layer t_1 = L; with 2,
                                        t_1 = b (end of the first block), t_2 = L; the second
                                        layer reads the first one's output (as at inference)

v_k = the variance of target t_k over the stage-1 frames (mean over channels), so that both
terms weigh alike even when a raw mid-stack state is far larger than the normed last state
(with one layer it is a constant factor, which AdamW ignores).

Validation score: −L_1 on the validation split (best epoch kept, early stopping).

Stage 2 (task): cross-entropy of head(m_last) on the train split's labels; the mimic layers and
the head (initialised from the teacher's head) are trained, the front end stays frozen.
Validation score: accuracy on the validation split.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..heads import ClassifierHead, fit_head
from ..models.cache import StateCache
from ..train import TrainLog, train
from .config import MimicConfig
from .data import BOUNDARY, FEATURES, LAST, MimicData
from .layers import valid_mask
from .model import MimicModel


def masked_mse(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames and channels of (pred − target)²; pred, target (B, T, D)."""
    m = valid_mask(lengths.to(pred.device), pred.shape[1]).unsqueeze(-1).to(pred.dtype)  # (B, T, 1)
    return ((pred - target) ** 2 * m).sum() / (m.sum() * pred.shape[-1]).clamp(min=1)


def targets_of(model: MimicModel) -> list[str]:
    """Cache keys each mimic layer is trained to reproduce in stage 1."""
    return [BOUNDARY, LAST] if len(model.layers) == 2 else [LAST]


def target_variance(cache: StateCache, key: str) -> float:
    """Mean over channels of the variance over every frame of state `key` in `cache`."""
    n, s, s2 = 0, 0.0, 0.0
    for h in cache.states[key]:  # (T, D) each
        h = h.double()
        n += h.shape[0]
        s = s + h.sum(0)
        s2 = s2 + (h * h).sum(0)
    mean = s / max(n, 1)
    return float((s2 / max(n, 1) - mean * mean).clamp(min=0).mean().clamp(min=1e-12))


def mse_loss(model: MimicModel, cache: StateCache, rows: Sequence[int],
             scales: dict[str, float] | None = None) -> torch.Tensor:
    """Stage-1 loss of a batch of cache rows; each target's MSE divided by scales[key] (if given)."""
    x, n = cache.batch(FEATURES, rows)  # (B, T, D)
    outs = model.mimic_states(x, n)
    scales = scales or {}
    return sum(masked_mse(o, cache.batch(k, rows)[0], n) / scales.get(k, 1.0)
               for o, k in zip(outs, targets_of(model)))


@torch.no_grad()
def mse_on(model: MimicModel, cache: StateCache, scales: dict[str, float] | None = None,
           batch_size: int = 64) -> float:
    """Stage-1 loss over a whole cache (frame-weighted mean per target, summed over targets)."""
    model.eval()
    total, frames = 0.0, 0
    for s in range(0, len(cache), batch_size):
        rows = range(s, min(s + batch_size, len(cache)))
        f = int(cache.lengths[list(rows)].sum())
        total += float(mse_loss(model, cache, rows, scales)) * f
        frames += f
    return total / max(frames, 1)


@torch.no_grad()
def logits_on(model: MimicModel, cache: StateCache, batch_size: int = 64) -> torch.Tensor:
    """(N, C) logits of every clip of `cache` from its cached features."""
    model.eval()
    out = []
    for s in range(0, len(cache), batch_size):
        x, n = cache.batch(FEATURES, range(s, min(s + batch_size, len(cache))))
        out.append(model.logits_from_features(x, n))
    return torch.cat(out)


def accuracy_on(model: MimicModel, cache: StateCache, y: torch.Tensor) -> float:
    return float((logits_on(model, cache).argmax(-1) == y).float().mean())


def fit_teacher_head(data: MimicData, num_classes: int, cfg: MimicConfig,
                     progress: bool = True) -> tuple[ClassifierHead, TrainLog]:
    """The teacher's head: fitted on the frozen teacher's cached last states."""
    return fit_head(data.train, data.y["train"], data.validation, data.y["validation"],
                    num_classes, cfg.head(), which=LAST, desc="teacher head", progress=progress)


def stage1(model: MimicModel, data: MimicData, cfg: MimicConfig, progress: bool = True) -> TrainLog:
    """MSE to the teacher's states; only the mimic layers are trained."""
    rows = data.stage1_rows()
    if len(model.layers) == 2 and BOUNDARY not in rows.states:
        raise ValueError("2 mimic layers need the boundary state in the cache (build_data(boundary=b))")
    scales = {k: target_variance(rows, k) for k in targets_of(model)}
    return train(model, len(rows), lambda r: mse_loss(model, rows, r, scales), cfg.stage1(),
                 validate=lambda: -mse_on(model, data.validation, scales),
                 params=list(model.layers.parameters()), desc="stage 1 (MSE)", progress=progress)


def stage2(model: MimicModel, data: MimicData, cfg: MimicConfig, progress: bool = True) -> TrainLog:
    """Task loss through the head; mimic layers and head trained."""
    cache, y = data.train, data.y["train"]

    def step(rows: Sequence[int]) -> torch.Tensor:
        x, n = cache.batch(FEATURES, rows)
        return F.cross_entropy(model.logits_from_features(x, n), y[list(rows)])

    return train(model, len(cache), step, cfg.stage2(),
                 validate=lambda: accuracy_on(model, data.validation, data.y["validation"]),
                 params=list(model.layers.parameters()) + list(model.head.parameters()),
                 desc="stage 2 (task)", progress=progress)


def fit_mimic(model: MimicModel, data: MimicData, cfg: MimicConfig,
              progress: bool = True) -> dict[str, TrainLog | None]:
    """Stage 1 (unless `cfg.baseline`, or `cfg.epochs` = 0), then stage 2 (unless `cfg.task_epochs` = 0)."""
    torch.manual_seed(cfg.seed)
    logs: dict[str, TrainLog | None] = {"stage1": None, "stage2": None}
    if not cfg.baseline and cfg.epochs > 0:
        logs["stage1"] = stage1(model, data, cfg, progress)
    if cfg.task_epochs > 0:
        logs["stage2"] = stage2(model, data, cfg, progress)
    model.eval()
    return logs
