"""Thin torch.distributed helpers used by the accumulators (work with gloo and nccl).

Every helper is a no-op (returns its input) when torch.distributed is not initialised, so the
same code runs in one process and under torchrun.
"""
from __future__ import annotations

import torch

from ..runtime import all_gather_objects, comm_device, is_distributed, world_size

__all__ = ["all_gather_objects", "all_reduce_max_int", "all_reduce_sum_", "comm_device",
           "is_distributed", "world_size"]


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
