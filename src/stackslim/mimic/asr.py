"""Mimic layers that transcribe (`stackslim mimic MODEL DATA --task asr`, Whisper only).

The mimic layers replace the whole encoder stack and the teacher's own Whisper decoder, frozen,
reads their output. They are trained on whole sentences: the data set's ``split=pool`` clips,
each followed by silence (`pad_silence`: up to max(`window`, clip + 3.5 s), `window` 6 s unless
set), a tenth of them (at most 32) held out for validation. The ``split=eval`` clips are never
trained or validated on: they only give the WER.

Stage 1 (no labels), m = the last mimic layer's output (B, T, d), h_L = the teacher's last
state after its final norm, v = the variance of h_L over the training frames:

    L_1 = MSE(m, h_L) / v                                 over every valid frame

Stage 2 adds the decoder loss of `share.asr` (sequence-level distillation): the teacher
transcribes each training sentence u once (greedy, `teacher_tokens`: y_u = prompt, text, eot)
and the frozen decoder, teacher-forced on y_u, must predict it from the mimic's states:

    L_2 = L_1 + μ · (1 / Σ_u |y_u|) Σ_u Σ_t −log p_dec(y_u,t | y_u,<t, m(u))    μ = `asr_weight`

Validation (best epoch kept, early stopping): −L_1 on the held-out sentences in stage 1, minus
their teacher-forced cross-entropy in stage 2. WER: `evaluate.wer.whisper_wer` (the 30 s
window, Whisper's English normaliser) with a percentile bootstrap 95% interval over sentences.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..evaluate.wer import pad_silence, whisper_wer
from ..models.cache import StateCache
from ..models.transcribe import wer_edits, wer_interval
from ..share.asr import AsrTargets, frozen, teacher_tokens
from ..train import TrainLog, train
from .config import MimicConfig, MimicError
from .data import FEATURES, LAST, cache_targets
from .fit import autocast, masked_mse, target_variance
from .model import MimicModel

ASR = "asr"
POOL, EVAL = "pool", "eval"


def sentence_splits(ds, name: str) -> tuple[list[int], list[int]]:
    """Indices of `ds`'s ``split=pool`` (training) and ``split=eval`` (WER) clips; a set
    without either refuses with one line naming it."""
    pool = [i for i, c in enumerate(ds.clips) if c.get("split") == POOL]
    ev = [i for i, c in enumerate(ds.clips) if c.get("split") == EVAL]
    if not pool or not ev:
        raise MimicError(f"{name}: --task asr needs transcribed clips with split=pool (training) and "
                         f"split=eval (WER), found {len(pool)} and {len(ev)}")
    return pool, ev


def spread(idx: Sequence[int], n: int) -> list[int]:
    """`n` evenly spread items of `idx` (all when n is 0 or at least len(idx))."""
    if not n or n >= len(idx):
        return list(idx)
    return [idx[int(j)] for j in np.linspace(0, len(idx) - 1, n).round()]


def padded(batches, window: float):
    """`(waves, indices)` batches with each clip followed by silence (`pad_silence`)."""
    for waves, idx in batches:
        yield pad_silence(waves, min_s=window or 6.0), idx


def last_view(cache: StateCache) -> StateCache:
    """The cache's last states under key -1, where `teacher_tokens` reads them."""
    return StateCache(states={-1: cache.states[LAST]}, lengths=cache.lengths, indices=cache.indices)


@dataclass
class AsrData:
    """Teacher states (features and last state) and transcripts of the training sentences.

    Attributes:
        train, validation: caches with FEATURES and LAST, rows in data set order.
        targets, val_targets: the teacher's greedy transcripts of their rows.
        scale: v, the variance of the teacher's last state over the training frames.
    """

    train: StateCache
    validation: StateCache
    targets: AsrTargets
    val_targets: AsrTargets
    scale: float

    def describe(self) -> dict:
        return {"train": len(self.train), "validation": len(self.validation),
                "train_frames": int(self.train.lengths.sum()),
                "train_tokens": sum(len(t) + 1 for t in self.targets.tokens.values())}


def build_asr_data(enc, whisper, tokenizer, ds, pool: Sequence[int], cfg: MimicConfig,
                   progress: bool = True) -> AsrData:
    """Cache the teacher on the pool sentences (padded with silence) and transcribe them once."""
    rng = np.random.default_rng(cfg.train.seed)
    n_val = min(32, max(1, len(pool) // 10)) if len(pool) > 1 else 0
    val_rows = set(rng.choice(len(pool), n_val, replace=False).tolist())
    parts = {"train": [i for j, i in enumerate(pool) if j not in val_rows],
             "validation": [i for j, i in enumerate(pool) if j in val_rows]}
    caches = {p: cache_targets(enc, padded(ds.batches(idx, cfg.encode_batch), cfg.window),
                               total=len(idx), desc=f"teacher states ({p} sentences)", progress=progress)
              for p, idx in parts.items()}
    tg = {p: teacher_tokens(whisper, tokenizer, last_view(c), desc=f"teacher transcripts ({p})",
                            progress=progress) for p, c in caches.items()}
    return AsrData(caches["train"], caches["validation"], tg["train"], tg["validation"],
                   target_variance(caches["train"], LAST))


def asr_loss(model: MimicModel, cache: StateCache, targets: AsrTargets | None, rows: Sequence[int],
             scale: float = 1.0, weight: float = 0.0, cfg: MimicConfig | None = None,
             gen: torch.Generator | None = None) -> torch.Tensor:
    """L_1 (weight 0 or no targets) or L_2 of the module docstring on cache rows `rows`.

    `cfg` gives the input feature mask and bf16 autocast of training (None: neither)."""
    rows = list(rows)
    x, n = cache.batch(FEATURES, rows)  # (B, T, d)
    if cfg is not None:
        x = cfg.feature_mask()(x, n, gen)
    with autocast(cfg is not None and cfg.bf16):
        m = model.mimic_states(x, n)[-1].float()  # (B, T, d)
    loss = masked_mse(m, cache.batch(LAST, rows)[0], n) / scale
    if targets is not None and weight > 0:
        s, c = targets.loss_sum(m, n, rows)
        loss = loss + weight * s / max(c, 1)
    return loss


@torch.no_grad()
def decoder_loss(model: MimicModel, cache: StateCache, targets: AsrTargets,
                 batch_size: int = 16) -> float:
    """Teacher-forced cross-entropy per target token of the decoder reading the mimic's states,
    over every row of `cache` with targets."""
    model.eval()
    total, count = 0.0, 0
    rows_all = sorted(targets.tokens)
    for s in range(0, len(rows_all), batch_size):
        rows = rows_all[s : s + batch_size]
        x, n = cache.batch(FEATURES, rows)
        t, c = targets.loss_sum(model.mimic_states(x, n)[-1], n, rows)
        total, count = total + float(t), count + c
    return total / max(count, 1)


@torch.no_grad()
def mse_score(model: MimicModel, cache: StateCache, scale: float, batch_size: int = 32) -> float:
    """L_1 over every frame of `cache` (frame-weighted mean of the batches')."""
    model.eval()
    total, frames = 0.0, 0
    for s in range(0, len(cache), batch_size):
        rows = list(range(s, min(s + batch_size, len(cache))))
        f = int(cache.lengths[rows].sum())
        total, frames = total + float(asr_loss(model, cache, None, rows, scale)) * f, frames + f
    return total / max(frames, 1)


def fit_asr(model: MimicModel, data: AsrData, cfg: MimicConfig, stage: int,
            progress: bool = True) -> TrainLog:
    """Stage 1 (`cfg.train`) or 2 (`cfg.stage2()`, the decoder loss weighted `cfg.asr_weight`);
    only the mimic layers are trained, the decoder stays frozen."""
    weight = cfg.asr_weight if stage == 2 else 0.0
    gen = torch.Generator().manual_seed(cfg.train.seed + stage)
    if stage == 1:
        validate = lambda: -mse_score(model, data.validation, data.scale)
    else:
        validate = lambda: -decoder_loss(model, data.validation, data.val_targets)
    with frozen(data.targets.model):
        return train(model, len(data.train),
                     lambda r: asr_loss(model, data.train, data.targets, r, data.scale, weight, cfg, gen),
                     cfg.stage1() if stage == 1 else cfg.stage2(), validate=validate,
                     params=list(model.layers.parameters()),
                     desc=f"stage {stage} ({'MSE' if stage == 1 else 'MSE + decoder'})",
                     progress=progress)


def wer_with_interval(enc, whisper, tokenizer, waves: Sequence[np.ndarray], refs: Sequence[str],
                      resamples: int = 1000, seed: int = 0) -> dict:
    """`whisper_wer` of `enc` and its percentile bootstrap 95% interval over sentences
    (`models.transcribe.wer_interval` with `resamples` and `seed`)."""
    got = whisper_wer(enc, whisper, tokenizer, waves, refs)
    hyps = got["hypotheses"]
    lo, hi = wer_interval(*wer_edits(list(refs), hyps), n=resamples, seed=seed)
    return {"wer": got["wer"], "interval95": [lo, hi], "clips": got["clips"], "hypotheses": hyps}


def wer_table(teacher: dict, stages: dict[str, dict | None]) -> str:
    """WER lines for the CLI: the teacher, then the mimic after each stage that ran."""
    def line(name: str, w: dict) -> str:
        lo, hi = w["interval95"]
        return f"{name:<22} WER {w['wer']:7.2%}  (95% CI {lo:.2%}-{hi:.2%}, {w['clips']} eval clips)"

    return "\n".join([line("teacher", teacher)]
                     + [line(f"mimic, {k}", w) for k, w in stages.items() if w is not None])
