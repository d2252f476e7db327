"""Where a run executes: the torch.distributed process group (under torchrun) and the device.

    torchrun --standalone --nproc_per_node=2 -m stackslim mimic MODEL DATA --out DIR

Every command calls `init_from_env()` first: with ``WORLD_SIZE > 1`` (set by torchrun) it
initialises the process group (nccl when CUDA is available, else gloo), otherwise it does
nothing and the run is one process. Every helper below is the identity / a constant in one
process, so the same code runs both ways. Rank 0 is the only process that writes results
(`is_main()`).

Device: `choose_device("auto")` gives ``cuda:LOCAL_RANK`` when CUDA is available (one GPU per
rank under torchrun), else the CPU; ``--device cpu|cuda|cuda:N`` forces one.
"""
from __future__ import annotations

import os
from typing import Any, Sequence, TypeVar

import torch
from .errors import DeviceError

T = TypeVar("T")

DEVICE_HELP = "auto (cuda if available, one GPU per torchrun rank), cpu, cuda or cuda:N"



def is_distributed() -> bool:
    """True when torch.distributed is available and a process group is initialised."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if is_distributed() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Only this process writes results and prints summaries."""
    return rank() == 0


def local_rank() -> int:
    """This process's index on its machine (torchrun's LOCAL_RANK; 0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_from_env() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun.

    The backend is nccl when CUDA is available (each rank then uses GPU LOCAL_RANK), gloo
    otherwise. A group already initialised (e.g. by a test or the caller) is kept.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and torch.distributed.is_available() and not torch.distributed.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank() % torch.cuda.device_count())
            torch.distributed.init_process_group("nccl")
        else:
            torch.distributed.init_process_group("gloo")
    return rank(), world_size()


def choose_device(spec: str = "auto") -> torch.device:
    """The torch device for `spec` ("auto", "cpu", "cuda", "cuda:N"); see the module docstring."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank() % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as e:
        raise DeviceError(f"--device {spec!r} is not a device ({DEVICE_HELP})") from e
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise DeviceError(f"--device {spec!r}: only cpu and cuda are supported")
    if not torch.cuda.is_available():
        raise DeviceError(f"--device {spec!r}: CUDA is not available on this machine")
    index = dev.index if dev.index is not None else local_rank() % torch.cuda.device_count()
    if index >= torch.cuda.device_count():
        raise DeviceError(f"--device {spec!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device("cuda", index)


def comm_device() -> torch.device:
    """Where collective tensors must live: the current GPU for nccl, else the CPU."""
    if is_distributed() and torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


_CPU_GROUP = None


def cpu_group():
    """The process group for collectives on CPU tensors: None (the default group) under gloo;
    under nccl, which only reduces GPU tensors, a gloo group over the same ranks, made once
    (every rank must reach the first call, as with any collective)."""
    global _CPU_GROUP
    if not is_distributed() or torch.distributed.get_backend() != "nccl":
        return None
    if _CPU_GROUP is None:
        _CPU_GROUP = torch.distributed.new_group(backend="gloo")
    return _CPU_GROUP


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of `items`: items r, r + W, r + 2W, ... (all of them in one process).

    Strided rather than contiguous so that every rank gets the same mix of clip lengths.
    """
    return list(items[rank()::world_size()])


def all_reduce_floats(values: Sequence[float], op: str = "sum") -> list[float]:
    """Element-wise sum or max of a few floats over processes (float64, one collective)."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=comm_device())
    red = {"sum": torch.distributed.ReduceOp.SUM, "max": torch.distributed.ReduceOp.MAX}[op]
    torch.distributed.all_reduce(t, op=red)
    return t.cpu().tolist()


def broadcast_float(x: float, src: int = 0) -> float:
    """Rank `src`'s value of `x` on every rank: one decision (e.g. early stopping) for all."""
    if not is_distributed():
        return float(x)
    t = torch.tensor([float(x)], dtype=torch.float64, device=comm_device())
    torch.distributed.broadcast(t, src=src)
    return float(t.item())


def all_gather_objects(obj: Any) -> list[Any]:
    """One object per process, in rank order (tensors should be on the CPU)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if is_distributed():
        torch.distributed.barrier()


def shutdown(wait: bool = True) -> None:
    """Leave the process group (no-op in one process). With `wait`, every rank first meets at a
    barrier: a rank that destroys the group while a peer still has collectives in flight can
    make gloo abort the peer ("terminate called without an active exception"). Pass
    wait=False on an error path, where a peer may never arrive."""
    if not is_distributed():
        return
    if wait:
        torch.distributed.barrier()
    torch.distributed.destroy_process_group()
