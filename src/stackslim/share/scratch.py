"""The paper's other baseline: an encoder (dense or shared) trained from scratch on a
classification task, every parameter (front end, stack) and a new head together
(`bench/share.py`)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..evaluate.accuracy import wave_accuracy, wave_logits
from ..heads.head import ClassifierHead
from ..models.base import Encoder
from ..train import TrainConfig, TrainLog, train


def train_from_scratch(enc: Encoder, num_classes: int, train_waves: Sequence[np.ndarray],
                       train_y: torch.Tensor, val_waves: Sequence[np.ndarray], val_y: torch.Tensor,
                       cfg: TrainConfig, proj_size: int = 256, progress: bool = True
                       ) -> tuple[ClassifierHead, TrainLog]:
    """Train every parameter of `enc` (front end, stack) and a new head with cross-entropy.

    The same function trains the dense baseline and the residual models (the paper's
    comparison); the best validation epoch is kept.
    """
    torch.manual_seed(cfg.seed)
    head = ClassifierHead(enc.hidden_size, num_classes, proj_size).to(enc.device)
    module = torch.nn.ModuleDict({"encoder": enc.encoder_module, "head": head})

    def step_loss(rows: Sequence[int]) -> torch.Tensor:
        return F.cross_entropy(wave_logits(enc, head, [train_waves[r] for r in rows]), train_y[list(rows)])

    params = list({id(p): p for p in module.parameters()}.values())
    log = train(module, len(train_waves), step_loss, cfg, params=params, desc="from scratch",
                validate=lambda: wave_accuracy(enc, head, val_waves, val_y), progress=progress)
    enc.eval()
    return head, log
