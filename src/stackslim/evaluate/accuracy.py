"""Task accuracy of an encoder and a classifier head: from cached hidden states 0 (the stack
runs, the front end does not: every method's validation and test numbers) or from clips.

    acc = stack_accuracy(student, head, test_cache, y_test)   # a fraction in [0, 1]

`stack_accuracy` returns the same float as `heads.accuracy` on the teacher's own cached last
states when the stack is the teacher's (float32 mean of the hits), so accuracies of a teacher
and its compressed students compare exactly.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from ..models.base import Encoder
from ..models.cache import StateCache

if TYPE_CHECKING:  # heads/ imports this module; the head is only called here
    from ..heads.head import ClassifierHead


@torch.no_grad()
def stack_accuracy(student: Encoder, head: ClassifierHead, cache: StateCache, y: torch.Tensor,
                   batch_size: int = 32) -> float:
    """Accuracy of `student`'s stack (after its final norm) + `head` on a cache of states 0.

    Both run in eval mode (dropout off); the student's training mode is given back, the
    head is left in eval mode.
    """
    was = student.training
    student.eval()
    head.eval()
    pred = []
    for s in range(0, len(cache), batch_size):
        x0, n = cache.batch(0, range(s, min(s + batch_size, len(cache))))  # (B, T, D), (B,)
        x0, n = x0.to(student.device), n.to(student.device)
        h = student.stack_forward(x0, n, final_norm=True, keep=False).states[-1]
        pred.append(head(h, n).argmax(-1).cpu())
    student.train(was)
    if not pred:
        return 0.0
    return float((torch.cat(pred) == y.cpu()).float().mean())


def wave_logits(enc: Encoder, head: ClassifierHead, waves: Sequence[np.ndarray]) -> torch.Tensor:
    x0, n = enc.front_end(list(waves))  # (B, T, D), (B,)
    h = enc.stack_forward(x0, n, final_norm=True, keep=False).states[-1]
    return head(h, n)  # (B, C)


@torch.no_grad()
def wave_accuracy(enc: Encoder, head: ClassifierHead, waves: Sequence[np.ndarray], y: torch.Tensor,
                  batch_size: int = 32) -> float:
    """Accuracy of encoder (front end and stack) + head on clips (no cached states)."""
    enc.eval()
    head.eval()
    return clip_accuracy(lambda w: wave_logits(enc, head, w), waves, y, batch_size)


@torch.no_grad()
def clip_accuracy(logits: Callable[[list], torch.Tensor | np.ndarray], waves: Sequence[np.ndarray],
                  y: torch.Tensor, batch_size: int = 32) -> float:
    """Accuracy of any clips → (B, C) logits function (a PyTorch model, an onnxruntime
    session) on `waves`, `batch_size` clips per call: hits / len(waves)."""
    right = 0
    for s in range(0, len(waves), batch_size):
        out = torch.as_tensor(logits(list(waves[s : s + batch_size])))
        right += int((out.argmax(-1) == y[s : s + batch_size]).sum())
    return right / max(len(waves), 1)
