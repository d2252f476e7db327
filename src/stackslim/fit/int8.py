"""The encoder's stored tensors in float32 or int8, written to one safetensors file, and the
int8 weights' effect on accuracy (weights rounded in place on a copy).

int8 is symmetric per row (output channel), as onnxruntime's per-channel dynamic quantization
stores MatMul weights: for a matrix W (rows × cols)

    s_i = max_j |W_ij| / 127,     q_ij = round(W_ij / s_i) ∈ [−127, 127],     Ŵ_ij = s_i q_ij

Only the stack's 2-D tensors (its linear maps: dense, shared, low-rank factors, mimic layers)
are quantized; the front end, positions, norms, biases and diagonals stay float32.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..mimic.model import MimicEncoder, used_prefixes
from ..models.base import Encoder
from ..share.size import safetensors_bytes


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8 (rows, cols), s float32 (rows,)) of the module docstring."""
    s = w.detach().abs().amax(1).clamp_min(1e-12) / 127  # (rows,)
    q = torch.round(w.detach() / s[:, None]).clamp(-127, 127).to(torch.int8)
    return q, s.float()


def _quantized(enc: Encoder) -> set[int]:
    return {id(p) for p in enc.layers.parameters() if p.dim() == 2 and p.numel()}


def encoder_tensors(enc: Encoder, int8: bool) -> dict[str, torch.Tensor]:
    """Name → tensor of what the encoder stores (a shared tensor once; a mimic keeps only the
    front-end modules it runs), int8 weights with their ``.scale`` rows when `int8`."""
    if isinstance(enc, MimicEncoder):
        keep = used_prefixes(enc.mimic.front, enc.mimic.positions)
        named = [(f"front_end.{k}", p) for k, p in enc.mimic.front.model.named_parameters()
                 if k.startswith(keep)] + [(f"layers.{k}", p) for k, p in enc.layers.named_parameters()]
    else:
        named = list(enc.encoder_module.named_parameters())  # unique parameters only
    q = _quantized(enc) if int8 else set()
    out: dict[str, torch.Tensor] = {}
    for name, p in named:
        if id(p) in q:
            out[name], out[f"{name}.scale"] = quantize_rows(p)
        elif p.numel():
            out[name] = p.detach().float().cpu().contiguous()
    return out


def write_encoder(enc: Encoder, path: str | Path, int8: bool) -> int:
    """Write `encoder_tensors` to the safetensors file `path`; its tensor bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in encoder_tensors(enc, int8).items()}, str(path))
    return safetensors_bytes(path)


@torch.no_grad()
def int8_copy(enc: Encoder) -> Encoder:
    """A copy of `enc` whose quantized tensors hold Ŵ (what the int8 model computes with,
    activations apart)."""
    new = copy.deepcopy(enc)
    for p in new.layers.parameters():
        if p.dim() == 2 and p.numel():
            q, s = quantize_rows(p)
            p.copy_(q.float() * s[:, None])
    return new
