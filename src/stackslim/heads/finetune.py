"""Full fine-tuning: the encoder's stack and the task head trained end to end on the task.

    logits = head(norm(layer_L(... layer_1(h_0))), n)        # h_0 (B, T, D) cached
    loss   = cross_entropy(logits, y)

The front end (CNN or Whisper's convolutions and positions) stays frozen, as is usual when
fine-tuning speech encoders (Hugging Face's ``freeze_feature_encoder``): hidden state 0 is
computed once per clip and every epoch only runs the stack. Start from a trained head (linear
probing, then fine-tuning) so that one small learning rate (e.g. 2e-5 to 5e-5) suits both.
The best validation epoch is kept (`stackslim.train`).

LayerDrop (Fan et al. 2019, "Reducing Transformer Depth on Demand with Structured Dropout"):
with `layerdrop = p > 0`, every training step skips each layer but the first with probability
p (h_j = h_{j-1}), so that the fine-tuned stack keeps working when layers are deleted later.
The wav2vec 2.0 / HuBERT fine-tuning recipes use p = 0.05 to 0.1; Whisper's default is 0.
Validation always runs the whole stack.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..evaluate.accuracy import stack_accuracy
from ..models.base import Encoder
from ..models.cache import StateCache
from ..train import TrainConfig, TrainLog, train
from .head import ClassifierHead


def stack_logits(enc: Encoder, head: ClassifierHead, cache: StateCache,
                 rows: Sequence[int], layerdrop: float = 0.0) -> torch.Tensor:
    """(B, C) logits of the clips `rows` of a state-0 cache, through the stack and the head;
    with `layerdrop` > 0 each layer but the first is skipped with that probability."""
    x0, n = cache.batch(0, rows)  # (B, T, D), (B,)
    x0, n = x0.to(enc.device), n.to(enc.device)
    if layerdrop <= 0:
        return head(enc.stack_forward(x0, n, keep=False).states[-1], n)
    ctx = enc.stack_context(x0, n)
    h = x0
    for i in range(enc.num_layers):
        if i == 0 or float(torch.rand(())) >= layerdrop:
            h = enc.run_layer(i, h, ctx)
    norm = enc.final_norm_module
    return head(norm(h) if norm is not None else h, n)


def finetune(enc: Encoder, head: ClassifierHead, train_cache: StateCache, train_y: torch.Tensor,
             val_cache: StateCache, val_y: torch.Tensor, cfg: TrainConfig = TrainConfig(lr=5e-5, epochs=3),
             layerdrop: float = 0.0, desc: str = "fine-tuning", progress: bool = True) -> TrainLog:
    """Train `enc`'s stack (every layer and the final norm) and `head` in place.

    Args:
        enc: the encoder; its layers and final norm are updated in place.
        head: the task head (ideally already trained on the frozen encoder); updated in place.
        train_cache, val_cache: hidden state 0 of each clip (`which=0`), e.g. `Task.cache(enc,
            part, which=(0,))`.
        train_y, val_y: (N,) class ids in the caches' order.
        cfg: epochs, learning rate, batch size, time budget (`max_minutes`), seed.
        layerdrop: probability of skipping each layer but the first at each training step.

    Returns:
        The training log; the weights of the best validation epoch are loaded at the end.
    """
    parts = nn.ModuleDict({"layers": enc.layers, "head": head})
    if enc.final_norm_module is not None:
        parts["norm"] = enc.final_norm_module
    if not 0.0 <= layerdrop < 1.0:
        raise ValueError(f"layerdrop must lie in [0, 1), got {layerdrop}")
    for p in parts.parameters():
        p.requires_grad_(True)
    torch.manual_seed(cfg.seed)

    def step_loss(rows: Sequence[int]) -> torch.Tensor:
        return F.cross_entropy(stack_logits(enc, head, train_cache, rows, layerdrop), train_y[list(rows)].to(enc.device))

    log = train(parts, len(train_cache), step_loss, cfg,
                validate=lambda: stack_accuracy(enc, head, val_cache, val_y, cfg.batch_size),
                desc=desc, progress=progress)
    enc.eval()
    head.eval()
    return log
