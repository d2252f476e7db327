"""Build, train and score candidates: successive halving on the teacher's cached states.

Each composition (a float candidate; its int8 variant is scored from the same trained
weights, `int8.int8_copy`) is built from the teacher, then recovered by distillation toward
the teacher's last state (`share.recover.recover`, states "last"). How it is recovered and
ranked is the task's `Scorer`: for the word task (`WordScorer`) the distillation adds the task
loss through the teacher's frozen head and candidates rank by validation accuracy (higher is
better); for `--task asr` (`fit.asr.AsrScorer`) by teacher-agreement WER (lower is better).
The search is successive halving within a budget of recovery epochs counted over all
candidates (`halving`, `round_epochs`): round k trains each survivor for e_k more epochs and
keeps the better half by its score (of its best variant that fits); the last round trains the
one left. An optional `--minutes` cap is checked before each training and bounds it; the
result records when it bites.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch

from ..evaluate import stack_accuracy
from ..heads import ClassifierHead
from ..mimic.model import MimicModel
from ..models.base import Encoder
from ..models.cache import StateCache, cache_states
from ..share.convert import to_residual
from ..share.recover import RecoveryLog, recover
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
    val: dict[str, float] = field(default_factory=dict)  # variant name → ranking score
    stopped_by: str = ""


def accuracy_of(student: Encoder, v: Candidate, head, cache: StateCache, y: torch.Tensor) -> float:
    model = int8_copy(student) if v.int8 else student
    return stack_accuracy(model, head, cache, y)


class Scorer(Protocol):
    """How the search recovers and ranks the candidates of one task.

    Attributes:
        metric: the fit.json key of the ranking score ("validation_accuracy", "agreement_wer").
        lower_is_better: True for an error rate (WER), False for an accuracy.
    """

    metric: str
    lower_is_better: bool

    def recover(self, t: Trial, train: TrainConfig, progress: bool) -> RecoveryLog:
        """Train `t.student` in place for `train.epochs` epochs (within `train.max_minutes`)."""

    def score(self, student: Encoder, v: Candidate) -> float:
        """The ranking score of `student` as variant `v` (int8: its rounded copy)."""

    def final(self, student: Encoder, v: Candidate) -> dict:
        """The reported numbers of a trained variant (test accuracy; eval WER and interval)."""


def rank_value(t: Trial, scorer: Scorer) -> float:
    """The value `t` ranks by, higher is better: its best variant's score, negated for an
    error rate (no score yet: −inf)."""
    if not t.val:
        return float("-inf")
    sign = -1.0 if scorer.lower_is_better else 1.0
    return max(sign * v for v in t.val.values())


@dataclass
class WordScorer:
    """The word task: recovery with the task loss through the teacher's frozen `head`, best
    epoch and ranking by validation accuracy, test accuracy reported."""

    caches: Caches
    head: ClassifierHead
    metric: str = "validation_accuracy"
    lower_is_better: bool = False

    def recover(self, t: Trial, train: TrainConfig, progress: bool) -> RecoveryLog:
        mimic = t.comp.method == "mimic"
        c = self.caches
        return recover(t.student, c.for_student(t.student, "train", mimic), train, states="last",
                       head=self.head, labels=c.labels["train"],
                       val_cache=c.for_student(t.student, "validation", mimic),
                       val_labels=c.labels["validation"], progress=progress)

    def _accuracy(self, student: Encoder, v: Candidate, part: str) -> float:
        cache = self.caches.for_student(student, part, v.method == "mimic")
        return accuracy_of(student, v, self.head, cache, self.caches.labels[part])

    def score(self, student: Encoder, v: Candidate) -> float:
        return self._accuracy(student, v, "validation")

    def final(self, student: Encoder, v: Candidate) -> dict:
        return {"accuracy": self._accuracy(student, v, "test")}


def survivors(n: int) -> list[int]:
    """Candidates trained in each round of the halving of `n`: n_0 = n, n_{k+1} = ⌈n_k / 2⌉
    while n_k > 1, then a last round for the one left (n = 12: [12, 6, 3, 2, 1]; n = 1: [1]).
    R = len(survivors(n)) = ⌈log2 n⌉ + 1 rounds."""
    out = [n]
    while out[-1] > 1:
        out.append(math.ceil(out[-1] / 2))
    return out if n > 1 else [1]


def round_epochs(budget: int, spent: int, k: int, rounds: list[int]) -> int:
    """Epochs each survivor of round k trains: what the budget has left, spread evenly over the
    rounds left, shared by the round's survivors,

        e_k = ⌊(B − S_k) / ((R − k) · n_k)⌋,

    with B the budget, S_k the epochs spent before round k (epochs that a round's rounding or
    an early stop left unspent go to the later rounds), R rounds and n_k survivors. Round k
    spends at most n_k · e_k ≤ (B − S_k) / (R − k), so the search never spends more than B."""
    return (budget - spent) // ((len(rounds) - k) * rounds[k])


def affordable(n: int, budget: int) -> int:
    """The most of `n` candidates that an epoch budget gives one epoch each in the first round:
    the largest m ≤ n with ⌊B / (R(m) · m)⌋ ≥ 1 (0 when B < 1)."""
    for m in range(n, 0, -1):
        if round_epochs(budget, 0, 0, survivors(m)) >= 1:
            return m
    return 0


def halving(trials: list[Trial], scorer: Scorer, train: TrainConfig, budget: int,
            minutes: float = 0.0, progress: bool = True, log=print) -> dict:
    """Successive halving of `trials` (students built) within an epoch budget; what it spent.

    Round k trains each of its n_k survivors for e_k more epochs (`round_epochs`: the budget
    B is the total of the recovery epochs of all candidates, over all R rounds), scores every
    variant (`scorer.score`), and keeps the better ⌈n_k / 2⌉ by their best fitting variant
    (`rank_value`; ties: the earlier candidate); the last round trains the one left. The same command and seed
    train the same epochs on a quiet or a busy machine. `minutes` > 0 is an optional wall-clock
    cap on the whole search, checked before each training and passed to it as its time limit;
    when it bites, the search stops there and the result says so (`cap_bit`).

    Returns:
        {"epochs_budget", "epochs_spent", "rounds": [{"round", "candidates", "epochs_each"}],
         "minutes_cap" (None: none), "cap_bit", "minutes"} (minutes: wall clock, informative).
    """
    t0 = time.monotonic()
    plan = survivors(len(trials))
    alive, spent, capped, done = list(trials), 0, False, []
    for k, n_k in enumerate(plan):
        alive = alive[:n_k]
        epochs = round_epochs(budget, spent, k, plan)
        done.append({"round": k, "candidates": [t.comp.name for t in alive], "epochs_each": epochs})
        for t in alive:
            left = minutes - (time.monotonic() - t0) / 60 if minutes > 0 else 0.0
            if minutes > 0 and left <= 0:
                capped, t.stopped_by = True, "minutes cap"
                continue
            if epochs < 1:
                continue
            s = time.monotonic()
            rec = scorer.recover(t, replace(train, epochs=epochs, max_minutes=left), progress)
            t.seconds += time.monotonic() - s
            t.epochs += rec.train.epochs_run
            spent += rec.train.epochs_run
            t.val = {v.name: scorer.score(t.student, v) for v in t.variants}
            t.rounds.append({"round": k, "epochs": rec.train.epochs_run, "stopped_by": rec.stopped_by,
                             "train_loss": rec.train.train_loss[-1] if rec.train.train_loss else None,
                             "seconds": round(time.monotonic() - s, 2), "validation": dict(t.val)})
            if rec.stopped_by == "time":
                capped, t.stopped_by = True, "minutes cap"
            log(f"round {k}: {t.comp.name}: {rec.train.epochs_run} epoch(s), {scorer.metric} "
                + ", ".join(f"{n} {a:.3f}" for n, a in t.val.items()))
        if capped:
            break
        alive.sort(key=lambda t: -rank_value(t, scorer))  # stable: ties keep the earlier candidate
        if k + 1 < len(plan):
            for t in alive[plan[k + 1]:]:
                t.stopped_by = f"halved after round {k}"
    for t in alive:
        t.stopped_by = t.stopped_by or "last left"
    return {"epochs_budget": budget, "epochs_spent": spent, "rounds": done,
            "minutes_cap": minutes or None, "cap_bit": capped,
            "minutes": round((time.monotonic() - t0) / 60, 3)}
