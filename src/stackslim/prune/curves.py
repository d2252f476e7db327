"""Accuracy against the number of deleted layers, for a deletion order.

For an order (l_1, l_2, ..., l_m) the curve holds, for k = 0..m, the accuracy of the model with
{l_1, ..., l_k} deleted:
- without post-training ("no_refit", the paper's claim): the teacher's own head;
- with only the head re-fitted ("refit", reported apart): the head re-trained on the train
  split's pooled states of the pruned model (warm start from the teacher's head, best
  validation epoch kept). At k = 0 nothing was deleted, so the teacher's head is used.

    capacity_k = accuracy_k / accuracy_0          (accuracy_0 = the teacher's accuracy)
    deletable(threshold) = max { k : capacity_k >= threshold }

Points depend only on the set of deleted layers, so they are computed once per set and shared
between strategies. Validation and test accuracy are both kept: orders and the saved model are
chosen on validation; the reported curves are on test.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ..heads import ClassifierHead, fit_head
from ..train import TrainConfig
from ..models.cache import pooled_cache
from .stack import StackRunner, kept_layers

VARIANTS = ("no_refit", "refit")


@dataclass
class Curve:
    """Accuracies after deleting the first k layers of `order`, k = 0..len(order).

    Attributes:
        order: the deletion order, 0-based layers.
        variant: "no_refit" or "refit".
        val_accuracy, test_accuracy: one value per k (len(order) + 1 values).
    """

    order: list[int]
    variant: str
    val_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)

    def capacity(self, split: str = "test") -> list[float]:
        """accuracy_k / accuracy_0 on `split` ("test" or "validation")."""
        acc = self.test_accuracy if split == "test" else self.val_accuracy
        return [a / acc[0] if acc[0] > 0 else 0.0 for a in acc]

    def max_deletable(self, threshold: float, split: str = "test") -> int:
        """Largest k whose capacity on `split` is >= threshold (0: none can go)."""
        return max(k for k, c in enumerate(self.capacity(split)) if c >= threshold - 1e-12)

    def to_json(self, threshold: float) -> dict:
        return {
            "deleted": list(range(len(self.order) + 1)),
            "test_accuracy": [round(a, 6) for a in self.test_accuracy],
            "val_accuracy": [round(a, 6) for a in self.val_accuracy],
            "capacity": [round(c, 6) for c in self.capacity("test")],
            "max_deletable": self.max_deletable(threshold, "test"),
            "max_deletable_val": self.max_deletable(threshold, "validation"),
        }


class Evaluator:
    """Curve points for the teacher's head and for re-fitted heads, memoised per deleted set."""

    def __init__(self, runner: StackRunner, head: ClassifierHead, num_classes: int,
                 refit_cfg: TrainConfig = TrainConfig(epochs=30, patience=5)):
        self.runner = runner
        self.head = head
        self.num_classes = num_classes
        self.refit_cfg = refit_cfg
        self.L = runner.enc.num_layers
        self._points: dict[tuple[frozenset[int], str], tuple[float, float]] = {}
        self._heads: dict[tuple[int, ...], ClassifierHead] = {}

    def refit_head(self, kept: list[int]) -> ClassifierHead:
        """The head re-fitted on the pruned model (train split pooled states; best validation
        epoch). The unpruned stack keeps the teacher's head."""
        key = tuple(kept)
        if len(key) == self.L:
            return self.head
        if key not in self._heads:
            r = self.runner
            train = pooled_cache(r.pooled("train", key))
            val = pooled_cache(r.pooled("validation", key))
            start = copy.deepcopy(self.head)
            for p in start.parameters():
                p.requires_grad_(True)
            head, _ = fit_head(train, r.splits["train"].y, val, r.splits["validation"].y, self.num_classes,
                               self.refit_cfg, head=start, desc="re-fit head",
                               progress=False)
            head.eval()
            for p in head.parameters():
                p.requires_grad_(False)
            self._heads[key] = head
        return self._heads[key]

    def head_for(self, deleted: list[int], variant: str) -> ClassifierHead:
        """The head a curve point of `variant` uses after deleting `deleted`."""
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        return self.head if variant == "no_refit" else self.refit_head(kept_layers(self.L, deleted))

    def point(self, deleted: list[int], variant: str) -> tuple[float, float]:
        """(validation accuracy, test accuracy) after deleting `deleted` (0-based)."""
        key = (frozenset(int(d) for d in deleted), variant)
        if key not in self._points:
            kept = kept_layers(self.L, deleted)
            head = self.head_for(deleted, variant)
            self._points[key] = (self.runner.accuracy(head, "validation", kept),
                                 self.runner.accuracy(head, "test", kept))
        return self._points[key]

    def curve(self, order: list[int], variant: str = "no_refit") -> Curve:
        c = Curve(order=list(order), variant=variant)
        for k in range(len(order) + 1):
            val, test = self.point(order[:k], variant)
            c.val_accuracy.append(val)
            c.test_accuracy.append(test)
        return c

