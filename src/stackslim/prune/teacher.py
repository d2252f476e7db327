"""The teacher: the unpruned encoder with the paper's head, trained on the task.

- frozen (default): the head is trained on the last hidden state of the frozen encoder. The
  head is linear up to the mean over frames, so it is trained on the pooled last state
  (one vector per clip; the same logits, far cheaper than on frames).
- fine-tuned (`finetune=True`, the paper's setting): that head, then the stack and the head
  trained end to end (`stackslim.heads.finetune`; the front end stays frozen).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from ..heads import ClassifierHead, fit_head
from ..heads.finetune import finetune
from ..models.base import Encoder
from ..train import TrainConfig, TrainLog
from ..models.cache import pooled_cache
from .config import PruneConfig, PruneError
from .stack import Split, StackRunner


@dataclass
class Teacher:
    head: ClassifierHead
    val_accuracy: float
    test_accuracy: float
    finetuned: bool
    head_log: TrainLog | None
    finetune_log: TrainLog | None = None
    own_head: bool = False

    def to_json(self) -> dict:
        return {"val_accuracy": round(self.val_accuracy, 6), "test_accuracy": round(self.test_accuracy, 6),
                "finetuned": self.finetuned, "head": "the model's own" if self.own_head else "trained",
                "head_training": self.head_log.to_json() if self.head_log else None,
                "finetuning": self.finetune_log.to_json() if self.finetune_log else None}


def train_teacher(enc: Encoder, splits: dict[str, Split], num_classes: int, cfg: PruneConfig,
                  head: ClassifierHead | None = None, progress: bool = True) -> tuple[Teacher, StackRunner]:
    """Train the teacher's head (and fine-tune `enc` in place when `cfg.finetune`).

    With `head` (the model's own, already trained), no head is trained: the teacher is
    the model with that head (fine-tuned from there when `cfg.finetune`).

    Returns:
        The teacher and a runner over `splits` for the (possibly fine-tuned) encoder.
    """
    runner = StackRunner(enc, splits, cfg.cache_mb)
    full = list(range(enc.num_layers))
    head_cfg = cfg.train
    own = head is not None
    if head is None:
        head, head_log = fit_head(pooled_cache(runner.pooled("train", full)), splits["train"].y,
                                  pooled_cache(runner.pooled("validation", full)), splits["validation"].y,
                                  num_classes, head_cfg, desc="teacher head", progress=progress)
    else:
        head, head_log = copy.deepcopy(head), None
        for p in head.parameters():
            p.requires_grad_(True)
    ft_log = None
    if cfg.finetune:
        ft_cfg = TrainConfig(epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, batch_size=16,
                             patience=max(cfg.finetune_epochs, 1), max_minutes=cfg.train.max_minutes,
                             weight_decay=0.0, seed=cfg.train.seed)
        ft_log = finetune(enc, head, splits["train"].as_cache(), splits["train"].y,
                          splits["validation"].as_cache(), splits["validation"].y, ft_cfg,
                          layerdrop=cfg.finetune_layerdrop, progress=progress)
        before = runner.layer_runs
        runner = StackRunner(enc, splits, cfg.cache_mb)  # the stack changed: nothing re-usable
        runner.layer_runs = before  # the account covers the whole run
    for p in head.parameters():
        p.requires_grad_(False)
    head.eval()
    teacher = Teacher(head=head, val_accuracy=runner.accuracy(head, "validation", full),
                      test_accuracy=runner.accuracy(head, "test", full), finetuned=cfg.finetune,
                      head_log=head_log, finetune_log=ft_log, own_head=own)
    if teacher.val_accuracy == 0 or teacher.test_accuracy == 0:
        raise PruneError(f"the teacher classifies no clip right (validation {teacher.val_accuracy:.3f}, "
                         f"test {teacher.test_accuracy:.3f}): nothing to keep; give more data")
    return teacher, runner
