"""Fit and evaluate the task head on cached states; the teacher = encoder + trained head.

Accuracy on a split = mean over its clips of [argmax logits = class]. Capacity of a compressed
model = its accuracy / the teacher's accuracy (on the same test split).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..models.cache import StateCache
from ..train import TrainConfig, TrainLog, train
from .head import ClassifierHead


@torch.no_grad()
def predict(head: ClassifierHead, cache: StateCache, which: int = -1,
            batch_size: int = 128) -> torch.Tensor:
    """(N,) predicted class ids for every clip of `cache` (on pooled frames: see `pooled_cache`)."""
    head.eval()
    cache = cache.as_pooled(which)
    out = []
    for s in range(0, len(cache), batch_size):
        h, n = cache.batch(which, range(s, min(s + batch_size, len(cache))))
        out.append(head(h, n).argmax(-1))
    return torch.cat(out)


def accuracy(head: ClassifierHead, cache: StateCache, y: torch.Tensor, which: int = -1) -> float:
    """Fraction of clips of `cache` whose predicted class is `y`."""
    return float((predict(head, cache, which) == y).float().mean())


def fit_head(train_cache: StateCache, train_y: torch.Tensor, val_cache: StateCache,
             val_y: torch.Tensor, num_classes: int, cfg: TrainConfig = TrainConfig(),
             which: int = -1, proj_size: int = 256, head: ClassifierHead | None = None,
             desc: str = "head", progress: bool = True) -> tuple[ClassifierHead, TrainLog]:
    """Train the paper's head (cross-entropy) on frozen states; best validation epoch kept.

    The head is affine up to its mean over frames, so it trains on each clip's mean frame
    (`StateCache.as_pooled`): the same function, T times fewer multiply-adds per step.
    """
    torch.manual_seed(cfg.seed)
    train_cache, val_cache = train_cache.as_pooled(which), val_cache.as_pooled(which)
    D = train_cache.states[which][0].shape[1]
    head = head or ClassifierHead(D, num_classes, proj_size)

    def step_loss(rows: Sequence[int]) -> torch.Tensor:
        h, n = train_cache.batch(which, rows)
        return F.cross_entropy(head(h, n), train_y[list(rows)])

    log = train(head, len(train_cache), step_loss, cfg,
                validate=lambda: accuracy(head, val_cache, val_y, which), desc=desc,
                progress=progress)
    return head, log
