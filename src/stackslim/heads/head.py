"""The task head of the redundancy paper: per-frame projector → mean over valid frames → classifier.

    z_t = W_p h_t + b_p                     # (B, T, P), P = 256
    u   = (1 / n) Σ_{t < n} z_t             # (B, P), mean over the clip's n valid frames
    y   = W_c u + b_c                        # (B, C) logits
"""
from __future__ import annotations

import torch
from torch import nn


class ClassifierHead(nn.Module):
    """Projector d→P, masked mean pooling, linear classifier P→C."""

    def __init__(self, hidden_size: int, num_classes: int, proj_size: int = 256):
        super().__init__()
        self.hidden_size, self.num_classes, self.proj_size = hidden_size, num_classes, proj_size
        self.projector = nn.Linear(hidden_size, proj_size)
        self.classifier = nn.Linear(proj_size, num_classes)

    def pool(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D), (B,) → (B, P): projected frames averaged over valid frames only."""
        z = self.projector(h)  # (B, T, P)
        mask = (torch.arange(h.shape[1], device=h.device)[None] < lengths.to(h.device)[:, None])
        mask = mask.unsqueeze(-1).to(z.dtype)  # (B, T, 1)
        return (z * mask).sum(1) / lengths.to(z.device).clamp(min=1)[:, None].to(z.dtype)

    def forward(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) last hidden state, (B,) lengths → (B, C) logits."""
        return self.classifier(self.pool(h, lengths))

    def config(self) -> dict:
        return {"hidden_size": self.hidden_size, "num_classes": self.num_classes,
                "proj_size": self.proj_size}
