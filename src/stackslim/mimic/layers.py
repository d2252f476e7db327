"""The two kinds of mimicking layer (Dorszewski et al., ICASSP 2025, "Mimic").

Both map a (B, T, d) sequence with its lengths to a (B, T, d) sequence. Padded frames
(t >= lengths[b]) never change a valid frame's output; their own outputs are meaningless.

``linear`` (frame-wise bottleneck, the same weights on every frame):

    y_t = W_2 ReLU(LayerNorm(W_1 x_t + b_1)) + b_2      W_1: z×d, W_2: d×z
    parameters: 2dz + 3z + d

``transformer`` (one post-LN Transformer encoder layer, attention over time, feed-forward z,
ReLU, no dropout; padded keys masked):

    a = LayerNorm_1(x + MHA(x, x, x; key padding mask))
    y = LayerNorm_2(a + W_2 ReLU(W_1 a + b_1) + b_2)
    parameters: 4d² + 4d (attention) + 2dz + z + d (feed-forward) + 4d (two LayerNorms)
"""
from __future__ import annotations

import torch
from torch import nn

KINDS = ("linear", "transformer")


def valid_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) bool, True on valid frames."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


class LinearMimic(nn.Module):
    """Frame-wise Linear d→z, LayerNorm(z), ReLU, Linear z→d."""

    def __init__(self, d: int, z: int):
        super().__init__()
        self.d, self.z = d, z
        self.fc1 = nn.Linear(d, z)
        self.norm = nn.LayerNorm(z)
        self.fc2 = nn.Linear(z, d)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, d), (B,) → (B, T, d); every frame on its own, so padding cannot leak."""
        return self.fc2(torch.relu(self.norm(self.fc1(x))))  # (B, T, z) inside

    @staticmethod
    def expected_params(d: int, z: int) -> int:
        return (d * z + z) + 2 * z + (z * d + d)


class TransformerMimic(nn.Module):
    """One batch-first Transformer encoder layer (post-LN, ReLU, dropout 0), feed-forward z."""

    def __init__(self, d: int, z: int, heads: int):
        super().__init__()
        if d % heads:
            raise ValueError(f"hidden size {d} is not divisible by {heads} attention heads")
        self.d, self.z, self.heads = d, z, heads
        self.layer = nn.TransformerEncoderLayer(d_model=d, nhead=heads, dim_feedforward=z,
                                                dropout=0.0, activation="relu", batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, d), (B,) → (B, T, d); padded keys get no attention weight."""
        pad = ~valid_mask(lengths.to(x.device), x.shape[1])  # (B, T) True = padding
        if not bool(pad.any()):
            return self.layer(x)
        y = self.layer(x, src_key_padding_mask=pad)
        # PyTorch's inference fast path returns nested-tensor zeros past each clip; the slow path
        # returns whatever; zero them so outputs do not depend on the path
        return y.masked_fill(pad.unsqueeze(-1), 0.0)

    @staticmethod
    def expected_params(d: int, z: int) -> int:
        return (4 * d * d + 4 * d) + (2 * d * z + z + d) + 4 * d


def make_layer(kind: str, d: int, z: int, heads: int = 0) -> nn.Module:
    """A mimicking layer of `kind` ("linear" or "transformer").

    heads=0 picks the largest divisor of d that is at most max(1, d // 64) (64-wide heads).
    """
    if kind == "linear":
        return LinearMimic(d, z)
    if kind == "transformer":
        if not heads:
            heads = max(h for h in range(1, max(1, d // 64) + 1) if d % h == 0)
        return TransformerMimic(d, z, heads)
    raise ValueError(f"unknown mimic kind {kind!r}; choose one of {', '.join(KINDS)}")
