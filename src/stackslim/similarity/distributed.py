"""Thin torch.distributed helpers used by the accumulators (work with gloo and nccl).

Every helper is a no-op (returns its input) when torch.distributed is not initialised, so the
same code runs in one process and under torchrun.
"""
from __future__ import annotations

from typing import Any

import torch


def is_distributed() -> bool:
    """True when torch.distributed is available and a process group is initialised."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    return torch.distributed.get_world_size() if is_distributed() else 1


def comm_device() -> torch.device:
    """Where collective tensors must live: the current GPU for nccl, else the CPU."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_reduce_(t: torch.Tensor, op) -> torch.Tensor:
    dev = comm_device()
    if t.device == dev:
        torch.distributed.all_reduce(t, op=op)
    else:  # e.g. CPU statistics under nccl: reduce a copy on the communication device
        tmp = t.to(dev)
        torch.distributed.all_reduce(tmp, op=op)
        t.copy_(tmp)
    return t


def all_reduce_sum_(t: torch.Tensor) -> torch.Tensor:
    """In-place sum over processes."""
    if is_distributed():
        _all_reduce_(t, torch.distributed.ReduceOp.SUM)
    return t


def all_reduce_max_int(x: int) -> int:
    """Max of an int over processes (to agree on a dimension an empty process has not seen)."""
    if not is_distributed():
        return int(x)
    return int(_all_reduce_(torch.tensor([int(x)], dtype=torch.int64), torch.distributed.ReduceOp.MAX).item())


def all_gather_objects(obj: Any) -> list[Any]:
    """One object per process, in rank order (tensors should be on the CPU)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out
