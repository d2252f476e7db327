"""Calibration statistics of a dense encoder: the second moment of every linear map's input.

For the linear map `name` of layer l with input rows x ∈ R^{d_in} (one row per valid frame),

    C_{l,name} = (1/n) Σ_frames x xᵀ = XᵀX / n          (d_in, d_in), float64

is all an activation-aware conversion needs: for any weight error E (d_out, d_in),
‖X Eᵀ‖²_F / n = tr(E C Eᵀ), so the output error of a map is a function of C alone. The
activations themselves are never kept: each batch adds its XᵀX to a running sum (streaming),
so memory is d_in² per map whatever the number of clips.

The statistics are collected by forward pre-hooks on the maps of the dense encoder; padded
frames are dropped with the clip lengths. Q, K and V read the same tensor, so its XᵀX is
computed once per layer and batch. A map whose forward is never called as a module (WavLM's
attention passes `q_proj.weight` to `F.multi_head_attention_forward`) gets no statistics:
`cov` returns None for it, and the conversion falls back to the weight-space (identity) metric.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..models.base import Encoder, EncoderError


@dataclass
class CalibStats:
    """Streaming sums of XᵀX per (layer, map name), with the number of frames."""

    sums: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict)  # (d_in, d_in) float64
    frames: dict[tuple[int, str], int] = field(default_factory=dict)
    clips: int = 0

    def add(self, key: tuple[int, str], xtx: torch.Tensor, n: int) -> None:
        if key in self.sums:
            self.sums[key] += xtx
            self.frames[key] += n
        else:
            self.sums[key] = xtx.clone()
            self.frames[key] = n

    def cov(self, layer: int, name: str) -> torch.Tensor | None:
        """C = XᵀX / n (d_in, d_in) float64 of map `name` in `layer`, or None without frames."""
        n = self.frames.get((layer, name), 0)
        return self.sums[(layer, name)] / n if n else None

    def describe(self) -> dict:
        return {"clips": self.clips, "maps": len(self.sums),
                "frames_per_map": int(max(self.frames.values(), default=0))}


@torch.no_grad()
def collect_calibration(enc: Encoder, waves: Sequence[np.ndarray], matrices: Sequence[str],
                        batch_size: int = 8, progress: bool = False) -> CalibStats:
    """Second moments of the inputs of `matrices` (names inside a layer) in every layer of `enc`.

    Args:
        enc: a dense encoder (its maps must be plain nn.Linear or any module with a forward).
        waves: calibration clips (16 kHz, 1-D float arrays); a few hundred are enough.
        matrices: map names inside one layer, e.g. ("fc1", "fc2").
        batch_size: clips per forward.

    Returns:
        `CalibStats` with one (d_in, d_in) float64 sum per (layer, map) that ran.
    """
    waves = list(waves)
    if not waves:
        raise EncoderError("calibration needs at least one clip (calib=[] was given)")
    stats = CalibStats()
    state: dict = {"mask": None, "last": {}}  # valid frames of the batch; XᵀX reused by Q/K/V

    def hook_for(layer: int, name: str):
        def hook(module, args):
            x = args[0] if args else None
            if not torch.is_tensor(x):
                return
            mask = state["mask"]
            rows = x[mask] if mask is not None and x.shape[:2] == mask.shape else x.reshape(-1, x.shape[-1])
            last = state["last"].get(layer)
            if last is not None and last[0] is x:
                xtx, n = last[1], last[2]  # the same tensor as the previous map's (Q, K, V)
            else:
                r = rows.double()  # (n, d_in)
                xtx, n = r.T @ r, r.shape[0]
                state["last"][layer] = (x, xtx, n)  # holding x: its memory cannot be reused
            stats.add((layer, name), xtx, n)
        return hook

    handles = [enc.layers[i].get_submodule(name).register_forward_pre_hook(hook_for(i, name))
               for i in range(enc.num_layers) for name in matrices]
    was_training = enc.model.training
    enc.model.eval()
    try:
        for s in tqdm(range(0, len(waves), batch_size), desc="calibration", disable=not progress,
                      leave=False):
            x0, lengths = enc.front_end(waves[s : s + batch_size])  # (B, T, D), (B,)
            state["mask"] = torch.arange(x0.shape[1], device=x0.device)[None] < lengths[:, None]
            state["last"] = {}
            enc.stack_forward(x0, lengths, final_norm=False, keep=False)
            stats.clips += len(waves[s : s + batch_size])
    finally:
        for h in handles:
            h.remove()
        enc.model.train(was_training)
    return stats
