"""Recovery of a converted encoder by distillation toward its dense teacher.

The front end is not converted, so the student's stack input is the teacher's hidden state 0:
both are cached once (`StateCache`) and only the stack runs per step. The loss on a batch is

    L = (1 / |S|) Σ_{i ∈ S} Σ_valid ‖h_i^student − h_i^teacher‖² / Σ_valid ‖h_i^teacher‖²
        + λ · CE(head(h_L^student), y)                         (with a head and labels)
        + μ · L_asr                      (Whisper, `--asr-weight`: the decoder loss of `share.asr`)

with S = all hidden states 1..L (``states="all"``) or only L (``"last"``), or both in turn
(``"all-then-last"``: the time budget and the epochs split in two; first every layer is pulled
toward its teacher layer, then only the output, which is what the head and the decoder read); the normalised MSE
gives every layer the same weight whatever the scale of its states (Whisper's grow with depth).
h_L is taken after the family's final norm, as a head and the Whisper decoder see it. Labels
of -1 mark unlabelled clips (no task loss): `recovery_set` appends them to the train split.
The head is the teacher's and stays frozen.

Training is `stackslim.train.train` (AdamW, time budget, best validation epoch kept) over every
parameter of the stack: shared weights, A, B, d, biases, norms.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch
import torch.nn.functional as F

from ..evaluate.accuracy import stack_accuracy
from ..heads.head import ClassifierHead
from ..models.base import Encoder
from ..models.cache import StateCache, append_windows, cache_states, concat_caches  # noqa: F401 (bench/share.py imports concat_caches from here)
from ..train import TrainConfig, TrainLog, train
from .asr import AsrRecovery, AsrTargets, frozen


def distill_cache(teacher: Encoder, batches, total: int | None = None, states: str = "all",
                  desc: str = "teacher states", progress: bool = True) -> StateCache:
    """Teacher states for distillation: state 0 and the targets (1..L, or L; L also as -1).
    Under torchrun every rank encodes its shard of `batches` and gets the whole cache."""
    L = teacher.num_layers
    which = (*range(L + 1), -1) if states == "all" else (0, -1)
    return cache_states(teacher, batches, which=which, total=total, desc=desc,
                        progress=progress)


def recovery_set(train: StateCache, labels: torch.Tensor, unlabelled: StateCache | None = None,
                 whole: bool = False) -> tuple[StateCache, torch.Tensor, dict]:
    """The clips recovery trains on, their labels, and their count.

    The labelled `train` clips, then the `unlabelled` clips (same cached states) with label
    -1, so that they are distilled on and kept out of the task loss: cut into windows of at
    most the longest train clip (`append_windows`), or kept `whole` (rows len(train) + j:
    what the decoder loss of `share.asr` needs; `distill_loss` batches them by length).

    Returns:
        (cache, labels (N,), counts): counts gives the rows N, the clips and frames of each
        kind and the unlabelled windows (what share.json records).
    """
    counts = {"rows": len(train), "labelled_clips": len(train),
              "labelled_frames": int(train.lengths.sum()), "unlabelled_clips": 0,
              "unlabelled_windows": 0, "unlabelled_frames": 0}
    if unlabelled is None or len(unlabelled) == 0:
        return train, labels, counts
    cache = concat_caches(train, unlabelled) if whole else append_windows(train, unlabelled)
    windows = len(cache) - len(train)
    counts.update(rows=len(cache), unlabelled_clips=len(unlabelled), unlabelled_windows=windows,
                  unlabelled_frames=int(unlabelled.lengths.sum()))
    return cache, torch.cat([labels, labels.new_full((windows,), -1)]), counts


def _targets(L: int, states: str) -> list[int]:
    if states not in ("all", "last"):
        raise ValueError(f"states must be 'all' or 'last', got {states!r}")
    return list(range(1, L + 1)) if states == "all" else [L]


def length_groups(lengths: Sequence[int], rows: Sequence[int], ratio: float = 2.0) -> list[list[int]]:
    """`rows` split into groups in which no clip is padded to more than `ratio` × its length.

    Whole sentences (whisper-base: 300-500 frames) beside 1 s task clips (50 frames) in one
    padded batch would cost several times the compute of the clips themselves.
    """
    order = sorted(rows, key=lambda r: -int(lengths[r]))
    groups: list[list[int]] = []
    for r in order:
        if groups and int(lengths[r]) * ratio >= int(lengths[groups[-1][0]]):
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


def distill_loss(student: Encoder, cache: StateCache, rows: Sequence[int], targets: Sequence[int],
                 head: ClassifierHead | None = None, labels: torch.Tensor | None = None,
                 task_weight: float = 1.0, asr: AsrTargets | None = None,
                 asr_weight: float = 0.0) -> torch.Tensor:
    """The loss of the module docstring on cache rows `rows`, plus asr_weight · L_asr
    (`share.asr`) when `asr` is given. The rows run in groups of similar length
    (`length_groups`); every term is summed over the groups before it is normalised, so the
    loss is that of the whole batch."""
    keep = len(targets) > 1  # else targets == [L]
    num = {i: 0.0 for i in targets}
    den = {i: 0.0 for i in targets}
    ce = asr_sum = 0.0
    ce_n = asr_n = 0
    for group in length_groups(cache.lengths, rows):
        x0, n = cache.batch(0, group)  # (B, T, D), (B,)
        hs = student.stack_forward(x0, n, final_norm=True, keep=keep)
        mask = hs.mask().unsqueeze(-1).to(x0.dtype)  # (B, T, 1)
        for i in targets:
            t, _ = cache.batch(i, group)  # (B, T, D)
            h = hs.states[i] if keep else hs.states[-1]  # (B, T, D)
            num[i] = num[i] + (((h - t) ** 2) * mask).sum()
            den[i] = den[i] + ((t ** 2) * mask).sum()
        if head is not None and labels is not None:
            y = labels[list(group)]
            if bool((y >= 0).any()):
                ce = ce + F.cross_entropy(head(hs.states[-1], n), y, ignore_index=-1,
                                          reduction="sum")
                ce_n += int((y >= 0).sum())
        if asr is not None and asr_weight > 0:
            s, c = asr.loss_sum(hs.states[-1], n, group)
            asr_sum, asr_n = asr_sum + s, asr_n + c
    loss = sum(num[i] / torch.as_tensor(den[i]).clamp_min(1e-12) for i in targets) / len(targets)
    if ce_n:
        loss = loss + task_weight * ce / ce_n
    if asr_n:
        loss = loss + asr_weight * asr_sum / asr_n
    return loss


@torch.no_grad()
def last_state_error(student: Encoder, cache: StateCache, batch_size: int = 32) -> float:
    """Normalised MSE of the student's last state against the cached teacher's (cache has 0, L)."""
    num = den = 0.0
    for s in range(0, len(cache), batch_size):
        rows = list(range(s, min(s + batch_size, len(cache))))
        x0, n = cache.batch(0, rows)
        hs = student.stack_forward(x0, n, final_norm=True, keep=False)
        t, _ = cache.batch(-1, rows)
        m = hs.mask().unsqueeze(-1).to(t.dtype)
        num += float((((hs.states[-1] - t) ** 2) * m).sum())
        den += float(((t ** 2) * m).sum())
    return num / max(den, 1e-12)


@dataclass
class RecoveryLog:
    """The training log, the validation score before training, whether the start was kept
    (no epoch beat it: recovery then leaves the student as converted), and the parts of every
    validation score in order (the converted student's first; per phase for all-then-last):
    {"accuracy": KWS accuracy, "asr": token agreement or 1 − min(WER, 1)}, or {"last_error"}."""

    train: TrainLog
    initial_score: float | None = None
    kept_initial: bool = False
    val_parts: list[dict] = field(default_factory=list)

    @property
    def epochs_run(self) -> int:
        return self.train.epochs_run

    @property
    def seconds(self) -> float:
        return self.train.seconds

    @property
    def stopped_by(self) -> str:
        return self.train.stopped_by

    def to_json(self) -> dict:
        return {**self.train.to_json(), "initial_score": self.initial_score,
                "kept_initial": self.kept_initial, "val_parts": self.val_parts}


def recover(student: Encoder, train_cache: StateCache, cfg: TrainConfig, states: str = "all",
            head: ClassifierHead | None = None, labels: torch.Tensor | None = None,
            val_cache: StateCache | None = None, val_labels: torch.Tensor | None = None,
            task_weight: float = 1.0, progress: bool = True,
            asr: AsrRecovery | None = None) -> RecoveryLog:
    """Distil the teacher's cached states into `student`'s stack (in place).

    Args:
        student: the converted encoder (its stack is trained; front end and head are not).
        train_cache: teacher states of the distillation clips: 0 and the targets
            (`distill_cache`).
        cfg: the training loop's settings (epochs, lr, `max_minutes` budget, ...).
        states: "all" (states 1..L), "last" (state L only) or "all-then-last" (two phases,
            each with half the epochs and of the time budget; the whole call stays within it).
        head, labels: the teacher's head and (N,) class ids (-1: unlabelled) for the task loss.
        val_cache, val_labels: validation states 0 and L (+ labels): the best epoch is kept,
            by accuracy when a head and labels are given, else by −(last-state error); when no
            epoch beats the converted student's own score, the converted weights are kept.
        task_weight: λ of the task loss.
        asr: the decoder loss of `share.asr` (Whisper): its targets, weight, and held-out
            clips; validation then scores (accuracy + s) / 2, or s alone without a head, with
            s the token agreement or 1 − WER against the teacher's transcripts (`asr.select`).

    Returns:
        A `RecoveryLog` (of both phases together for "all-then-last").
    """
    if states != "all-then-last":
        return _recover(student, train_cache, cfg, states, head, labels, val_cache, val_labels,
                        task_weight, progress, asr)
    t0 = time.monotonic()
    half = replace(cfg, epochs=max(1, cfg.epochs // 2), max_minutes=cfg.max_minutes / 2)
    first = _recover(student, train_cache, half, "all", head, labels, val_cache, val_labels,
                     task_weight, progress, asr)
    left = cfg.max_minutes - (time.monotonic() - t0) / 60  # what the first phase left over
    if cfg.max_minutes > 0 and left <= 0:  # the first phase ran over its half: no second one
        first.train.seconds = time.monotonic() - t0
        return first
    rest = replace(cfg, epochs=max(1, cfg.epochs - half.epochs), max_minutes=max(left, 0.0))
    second = _recover(student, train_cache, rest, "last", head, labels, val_cache, val_labels,
                      task_weight, progress, asr)
    t1, t2 = first.train, second.train
    merged = TrainLog(epochs_run=t1.epochs_run + t2.epochs_run,
                      best_epoch=(t1.epochs_run + t2.best_epoch) if t2.best_epoch >= 0 else t1.best_epoch,
                      best_score=max(t1.best_score, t2.best_score),
                      train_loss=t1.train_loss + t2.train_loss, val_score=t1.val_score + t2.val_score,
                      seconds=time.monotonic() - t0, stopped_by=t2.stopped_by, lr=t1.lr + t2.lr)
    return RecoveryLog(merged, first.initial_score, first.kept_initial and second.kept_initial,
                       first.val_parts + second.val_parts)


def _recover(student: Encoder, train_cache: StateCache, cfg: TrainConfig, states: str = "all",
             head: ClassifierHead | None = None, labels: torch.Tensor | None = None,
             val_cache: StateCache | None = None, val_labels: torch.Tensor | None = None,
             task_weight: float = 1.0, progress: bool = True,
             asr: AsrRecovery | None = None) -> RecoveryLog:
    """One phase of `recover` (states "all" or "last")."""
    targets = _targets(student.num_layers, states)
    missing = [i for i in [0, *targets] if i not in train_cache.states]
    if missing:
        raise ValueError(f"train_cache lacks hidden state(s) {missing}: cache them with distill_cache")
    if head is not None:
        head.requires_grad_(False)
        head.eval()
    validate = None
    parts: list[dict] = []  # what each validation score is made of (RecoveryLog.val_parts)
    if val_cache is not None:
        if head is not None and val_labels is not None:
            def validate() -> float:
                parts.append({"accuracy": stack_accuracy(student, head, val_cache, val_labels)})
                return parts[-1]["accuracy"]
        else:
            def validate() -> float:
                parts.append({"last_error": last_state_error(student, val_cache)})
                return -parts[-1]["last_error"]
    if asr is not None and asr.val_cache is not None and asr.val is not None:
        task_score = validate if head is not None and val_labels is not None else None

        def validate() -> float:
            acc = task_score() if task_score is not None else None
            agree = asr.score(student)
            if acc is None:
                parts.append({})
            parts[-1]["asr"] = agree
            return agree if acc is None else 0.5 * (acc + agree)
    decoder = asr.train.model if asr is not None else torch.nn.Module()
    params = list({id(p): p for p in student.layers.parameters()}.values())
    initial = start = None
    if validate is not None:
        v0 = time.monotonic()
        student.eval()
        initial = float(validate())
        start = copy.deepcopy(student.layers.state_dict())
        if cfg.max_minutes > 0:  # this check is part of the budget too
            cfg = replace(cfg, max_minutes=max(cfg.max_minutes - (time.monotonic() - v0) / 60,
                                               1e-6))
    try:
        with frozen(decoder):  # the original decoder passes gradients, is never trained
            log = train(student.layers, len(train_cache),
                        lambda rows: distill_loss(student, train_cache, rows, targets, head,
                                                  labels, task_weight,
                                                  asr.train if asr else None,
                                                  asr.weight if asr else 0.0),
                        cfg, validate=validate, params=params, desc="recovery", progress=progress)
        kept = initial is not None and not log.best_score > initial
        if kept:
            student.layers.load_state_dict(start)
        return RecoveryLog(log, initial, kept, parts)
    finally:
        student.eval()
        if head is not None:
            head.requires_grad_(True)
