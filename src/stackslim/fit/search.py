"""Build, train and score candidates: successive halving on the teacher's cached states.

Each composition (a float candidate; its int8 variant is scored from the same trained
weights, `int8.int8_copy`) is built from the teacher, then recovered by distillation toward
the teacher's last state plus the task loss through the teacher's frozen head
(`share.recover.recover`, states "last"). Round k trains every survivor for e·2^k more epochs
and keeps the better half by validation accuracy (of its best variant that fits); the last one
left trains on (doubling its epochs) while a round still raises its validation accuracy. The
`--minutes` cap is checked before each training and bounds it.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace

import torch

from ..evaluate import stack_accuracy
from ..heads import ClassifierHead
from ..mimic.model import MimicModel
from ..models.base import Encoder
from ..models.cache import StateCache, cache_states
from ..share.convert import to_residual
from ..share.recover import recover
from ..train import TrainConfig
from .int8 import int8_copy
from .predict import Candidate


def rekey(cache: StateCache, last: int, x0: list[torch.Tensor] | None = None) -> StateCache:
    """The teacher's cache as a student of `last` layers reads it: state 0 (or `x0`), and the
    teacher's last state as the student's state `last` (and -1)."""
    t = cache.states[-1]
    return StateCache(states={0: x0 if x0 is not None else cache.states[0], last: t, -1: t},
                      lengths=cache.lengths, indices=cache.indices)


@dataclass
class Caches:
    """Teacher caches of the splits (states 0 and L) and the mimic's state 0 (before
    positions) of the same clips."""

    teacher: dict[str, StateCache]
    labels: dict[str, torch.Tensor]
    mimic_x0: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    def ensure_mimic(self, front: Encoder, task, progress: bool) -> None:
        """Front-end features before positions of every split (one front-end pass)."""
        for part, c in self.teacher.items():
            if part not in self.mimic_x0:
                got = cache_states(front, task.dataset.batches(task.splits[part], 16), which=(0,),
                                   total=len(c), desc=f"front end {part}", progress=progress)
                assert got.indices == c.indices
                self.mimic_x0[part] = got.states[0]

    def for_student(self, student: Encoder, part: str, mimic: bool) -> StateCache:
        return rekey(self.teacher[part], student.num_layers, self.mimic_x0[part] if mimic else None)


def build(c: Candidate, enc: Encoder, head: ClassifierHead, group: int, calib, seed: int) -> Encoder:
    """The untrained student of composition `c` (a new module; `enc` is untouched)."""
    if c.method == "mimic":
        return MimicModel.from_teacher(enc, head, "linear", hidden=c.width, positions=False,
                                       seed=seed).as_encoder()
    small = enc.without_layers(list(c.deleted)) if c.deleted else copy.deepcopy(enc)
    if c.method == "prune":
        return small
    return to_residual(small, groups=min(group, small.num_layers), size=c.size,
                       init="aware" if calib else "svd", calib=calib or None, seed=seed)


@dataclass
class Trial:
    """One composition under training."""

    comp: Candidate
    variants: list[Candidate]  # the fitting precisions of `comp`
    student: Encoder | None = None
    epochs: int = 0
    seconds: float = 0.0
    rounds: list[dict] = field(default_factory=list)
    val: dict[str, float] = field(default_factory=dict)  # variant name → validation accuracy
    stopped_by: str = ""

    @property
    def score(self) -> float:
        return max(self.val.values()) if self.val else -1.0


def accuracy_of(student: Encoder, v: Candidate, head, cache: StateCache, y: torch.Tensor) -> float:
    model = int8_copy(student) if v.int8 else student
    return stack_accuracy(model, head, cache, y)


def halving(trials: list[Trial], caches: Caches, head: ClassifierHead, train: TrainConfig,
            minutes: float, progress: bool = True, log=print) -> dict:
    """Successive halving over `trials` (students built); returns what the search spent."""
    t0 = time.monotonic()
    alive, epochs, rnd = list(trials), train.epochs, 0
    capped = False
    while alive:
        before = alive[0].score
        for t in alive:
            left = minutes - (time.monotonic() - t0) / 60
            if left <= 0:
                capped, t.stopped_by = True, "minutes"
                continue
            mimic = t.comp.method == "mimic"
            tc, vc = caches.for_student(t.student, "train", mimic), caches.for_student(t.student, "validation", mimic)
            s = time.monotonic()
            rec = recover(t.student, tc, replace(train, epochs=epochs, max_minutes=left), states="last",
                          head=head, labels=caches.labels["train"], val_cache=vc,
                          val_labels=caches.labels["validation"], progress=progress)
            t.seconds += time.monotonic() - s
            t.epochs += rec.train.epochs_run
            t.val = {v.name: accuracy_of(t.student, v, head, vc, caches.labels["validation"])
                     for v in t.variants}
            t.rounds.append({"round": rnd, "epochs": rec.train.epochs_run, "stopped_by": rec.stopped_by,
                             "seconds": round(time.monotonic() - s, 2), "validation": dict(t.val)})
            log(f"round {rnd}: {t.comp.name}: {rec.train.epochs_run} epoch(s), validation "
                + ", ".join(f"{k} {a:.3f}" for k, a in t.val.items()))
        if capped:
            break
        if len(alive) == 1:  # the last one trains on while a round still improves it
            if alive[0].score <= before:
                break
            epochs, rnd = epochs * 2, rnd + 1
            continue
        alive.sort(key=lambda t: -t.score)
        keep = math.ceil(len(alive) / 2)
        for t in alive[keep:]:
            t.stopped_by = f"halved after round {rnd}"
        alive, epochs, rnd = alive[:keep], epochs * 2, rnd + 1
    for t in alive:
        t.stopped_by = t.stopped_by or "last left"
    return {"rounds": rnd + 1, "minutes_cap": minutes, "cap_bit": capped,
            "minutes": round((time.monotonic() - t0) / 60, 3)}
