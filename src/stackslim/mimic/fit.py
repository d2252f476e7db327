"""Two-stage training of the mimic layers on cached teacher states (`stackslim.train.train`).

Stage 1 (distillation, no labels), over every valid frame of the train split + unlabelled clips:

    L_1 = Σ_k MSE(m_k, h_{t_k}) / v_k   one term per mimic layer: with 1 layer t_1 = L; with 2,
                                        t_1 = b (end of the first block), t_2 = L; the second
                                        layer reads the first one's output (as at inference)

v_k = the variance of target t_k over the stage-1 frames (mean over channels), so that both
terms weigh alike even when a raw mid-stack state is far larger than the normed last state
(with one layer it is a constant factor, which AdamW ignores).

Validation score: −L_1 on the validation split (best epoch kept, early stopping).

Stage 2 (task), logits s = head(m_last) (B, C), the teacher's t = head_T(h_L) (its frozen head on
its own cached last state), α = `cfg.distill`, τ = `cfg.temperature`:

    L_2 = (1 − α) CE(y, s) + α τ² KL(softmax(t / τ) ‖ softmax(s / τ))     labelled rows
    L_2 = α τ² KL(softmax(t / τ) ‖ softmax(s / τ))                          unlabelled windows (α > 0)

The mimic layers and the head (initialised from the teacher's head) are trained, the front end
stays frozen. Validation score: accuracy on the validation split, ties broken by the lower
cross-entropy (accuracy − CE / 1000: a 1 s keyword validation set saturates near 100%).

Both stages can mask the cached input features (`augment.FeatureMask`, cfg.mask_time /
cfg.mask_channels); the targets stay the teacher's on the clean input.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F

from ..heads import ClassifierHead, fit_head
from ..models.cache import StateCache
from ..train import TrainLog, train
from .augment import FeatureMask
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


def autocast(enabled: bool):
    """bfloat16 autocast on the CPU for the mimic layers' training forwards (matmuls in bf16, AMX
    where the CPU has it: about 2x faster here); weights, head, loss and evaluation stay float32."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def mse_loss(model: MimicModel, cache: StateCache, rows: Sequence[int],
             scales: dict[str, float] | None = None, mask: FeatureMask | None = None,
             gen: torch.Generator | None = None, bf16: bool = False) -> torch.Tensor:
    """Stage-1 loss of a batch of cache rows; each target's MSE divided by scales[key] (if given).
    `mask` damages the input features only (the targets are the clean-input teacher states)."""
    x, n = cache.batch(FEATURES, rows)  # (B, T, D)
    if mask is not None:
        x = mask(x, n, gen)
    with autocast(bf16):
        outs = [o.float() for o in model.mimic_states(x, n)]
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


@torch.no_grad()
def head_logits(head: ClassifierHead, cache: StateCache, batch_size: int = 128) -> torch.Tensor:
    """(N, C) logits of the (teacher's) head on the cached last states of `cache`."""
    head.eval()
    return torch.cat([head(*cache.batch(LAST, range(s, min(s + batch_size, len(cache)))))
                      for s in range(0, len(cache), batch_size)])


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B,) τ² KL(softmax(t/τ) ‖ softmax(s/τ)) per row; student, teacher (B, C) logits."""
    t = F.log_softmax(teacher / temperature, -1)
    s = F.log_softmax(student / temperature, -1)
    return (t.exp() * (t - s)).sum(-1) * temperature ** 2


def validation_score(model: MimicModel, data: MimicData) -> float:
    """Validation accuracy − cross-entropy / 1000 (ties between equal accuracies → lower CE)."""
    logits, y = logits_on(model, data.validation), data.y["validation"]
    acc = float((logits.argmax(-1) == y).float().mean())
    return acc - float(F.cross_entropy(logits, y)) / 1000


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
    mask, gen = cfg.feature_mask(), torch.Generator().manual_seed(cfg.train.seed + 1)
    return train(model, len(rows), lambda r: mse_loss(model, rows, r, scales, mask, gen, cfg.bf16),
                 cfg.stage1(),
                 validate=lambda: -mse_on(model, data.validation, scales),
                 params=list(model.layers.parameters()), desc="stage 1 (MSE)", progress=progress)


def stage2(model: MimicModel, data: MimicData, cfg: MimicConfig, progress: bool = True,
           teacher_head: ClassifierHead | None = None) -> TrainLog:
    """Task loss (+ distillation to the teacher's logits when cfg.distill > 0) through the head;
    mimic layers and head trained.

    Args:
        teacher_head: the teacher's head (read on the cached last states); default: a frozen
            copy of `model.head` as it is on entry (the teacher's head for a model built with
            `MimicModel.from_teacher`).
    """
    alpha, tau = cfg.distill, cfg.temperature
    n_lab = len(data.train)
    cache, y = data.train, data.y["train"]
    t_logits = None
    if alpha > 0:
        cache = data.stage1_rows()  # the train split, then the unlabelled windows
        teacher_head = teacher_head or copy.deepcopy(model.head)
        t_logits = head_logits(teacher_head, cache)  # (N, C), once
    mask, gen = cfg.feature_mask(), torch.Generator().manual_seed(cfg.train.seed + 2)

    def step(rows: Sequence[int]) -> torch.Tensor:
        rows = list(rows)
        x, n = cache.batch(FEATURES, rows)
        with autocast(cfg.bf16):
            m = model.mimic_states(mask(x, n, gen), n)[-1]  # (B, T, d)
        s = model.head(m.float(), n)  # (B, C), the head in float32
        lab = torch.tensor([r < n_lab for r in rows])
        loss = torch.zeros(len(rows))
        if bool(lab.any()):
            ce = F.cross_entropy(s[lab], y[[r for r in rows if r < n_lab]], reduction="none")
            loss[lab] = (1 - alpha) * ce
        if t_logits is not None:
            loss = loss + alpha * distill_loss(s, t_logits[rows], tau)
        return loss.mean()

    return train(model, len(cache), step, cfg.stage2(),
                 validate=lambda: validation_score(model, data),
                 params=list(model.layers.parameters()) + list(model.head.parameters()),
                 desc="stage 2 (task)", progress=progress)


def fit_mimic(model: MimicModel, data: MimicData, cfg: MimicConfig,
              progress: bool = True) -> dict[str, TrainLog | None]:
    """Stage 1 (unless `cfg.baseline`, or `cfg.train.epochs` = 0), then stage 2 (unless
    `cfg.task_epochs` = 0)."""
    torch.manual_seed(cfg.train.seed)
    logs: dict[str, TrainLog | None] = {"stage1": None, "stage2": None}
    if not cfg.baseline and cfg.train.epochs > 0:
        logs["stage1"] = stage1(model, data, cfg, progress)
    if cfg.task_epochs > 0:
        logs["stage2"] = stage2(model, data, cfg, progress)
    model.eval()
    return logs
