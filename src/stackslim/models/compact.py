"""Building modules from stored tensors without a dense copy: the compact loaders of shared and
mimic models build their modules on the meta device, then put the stored tensors in place."""
from __future__ import annotations

import mmap

import torch
from torch import nn


def assign_tensors(module: nn.Module, tensors: dict[str, torch.Tensor],
                   aliases: dict[str, str] | None = None, requires_grad: bool = True) -> None:
    """Put stored tensors into `module` (typically built on the meta device) without copying.

    Every state-dict key of `module` is set to ``tensors[aliases.get(key, key)]``: one
    nn.Parameter per *stored* tensor, so names that alias one tensor (a ResidualTransformer
    group's W_shared) end up holding the same Parameter object, as when it was saved. Keys
    missing from `tensors` are left as they are (the caller checks completeness).
    Unlike ``load_state_dict(assign=True)``, which wraps each key in its own Parameter.
    """
    aliases = aliases or {}
    made: dict[str, nn.Parameter] = {}
    for key, old in module.state_dict(keep_vars=True).items():
        name = aliases.get(key, key)
        if name not in tensors:
            continue
        owner_name, _, leaf = key.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        if leaf in owner._parameters:
            if name not in made:
                made[name] = nn.Parameter(tensors[name], requires_grad=requires_grad)
            owner._parameters[leaf] = made[name]
        else:
            owner._buffers[leaf] = tensors[name]


def fill_meta(module: nn.Module) -> list[str]:
    """Replace every tensor still on the meta device by zeros on CPU (the parts of a model
    that were not stored because nothing runs them, e.g. a decoder saved apart); returns their
    names.

    The zeros are views into one anonymous memory map (zero pages the kernel maps on first
    write): none of it is resident until written. Per-tensor `np.zeros` (calloc) cleared
    every tensor that the allocator served from memory freed earlier, which made whisper-base's
    unread decoder 6.6 MiB resident.
    """
    todo, made = [], {}
    for key, t in module.state_dict(keep_vars=True).items():
        if t.device.type == "meta":
            todo.append((key, t))
    if not todo:
        return []
    align = 64  # every view starts on a 64-byte boundary, like the allocator's own tensors
    offsets, total = {}, 0
    for _, t in todo:
        if id(t) not in offsets:
            offsets[id(t)] = total
            total += -(-t.numel() * t.element_size() // align) * align
    buf = mmap.mmap(-1, max(total, align))  # anonymous, zero-filled, lazily backed
    filled = []
    for key, t in todo:
        owner_name, _, leaf = key.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        if t.numel() == 0:
            z = torch.zeros(t.shape, dtype=t.dtype)
        else:
            z = torch.frombuffer(buf, dtype=t.dtype, count=t.numel(), offset=offsets[id(t)]).view(t.shape)
        if leaf in owner._parameters:  # a tensor held under several names stays one
            owner._parameters[leaf] = made.setdefault(id(t), nn.Parameter(z, requires_grad=t.requires_grad))
        else:
            owner._buffers[leaf] = z
        filled.append(key)
    return filled
