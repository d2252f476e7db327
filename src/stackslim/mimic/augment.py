"""SpecAugment-style masking of cached front-end features (training only).

The front end is frozen and its output cached, so waveform augmentation would need a new teacher
pass per variant; masking the cached features costs nothing. For a batch x (B, T, d) with lengths
n (B,):

    time masks:    `time_masks` spans per clip, each of w ~ U{1, ..., ⌈time_frac · n_b⌉} frames
                   starting at s ~ U{0, ..., n_b − w}: x[b, s:s+w, :] = 0
    channel masks: each channel of each clip zeroed with probability `channel_frac`
                   (then x[b, t, c] · 1 / (1 − channel_frac) on the kept channels, as dropout)

The targets are left alone: stage 1 learns to reproduce the teacher's states from a damaged input
(denoising), stage 2 to classify it. Padded frames stay zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FeatureMask:
    """How much of a feature batch to mask (0 and 0: no masking)."""

    time_frac: float = 0.0
    time_masks: int = 2
    channel_frac: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.time_frac < 1.0 or not 0.0 <= self.channel_frac < 1.0:
            raise ValueError("mask fractions must lie in [0, 1)")
        if self.time_masks < 0:
            raise ValueError(f"time_masks must be >= 0, got {self.time_masks}")

    @property
    def active(self) -> bool:
        return (self.time_frac > 0 and self.time_masks > 0) or self.channel_frac > 0

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor,
                 gen: torch.Generator | None = None) -> torch.Tensor:
        """(B, T, d) features, (B,) lengths → masked copy (B, T, d)."""
        if not self.active:
            return x
        B, T, d = x.shape
        keep = torch.ones(B, T, 1, dtype=x.dtype)  # (B, T, 1)
        if self.time_frac > 0:
            for b, n in enumerate(lengths.tolist()):
                wmax = max(1, int(round(self.time_frac * n)))
                for _ in range(self.time_masks):
                    w = int(torch.randint(1, wmax + 1, (1,), generator=gen))
                    s = int(torch.randint(0, max(1, n - w + 1), (1,), generator=gen))
                    keep[b, s : s + w] = 0
        x = x * keep.to(x.device)
        if self.channel_frac > 0:
            ch = (torch.rand(B, 1, d, generator=gen) >= self.channel_frac).to(x.dtype)  # (B, 1, d)
            x = x * ch.to(x.device) / (1.0 - self.channel_frac)
        return x
