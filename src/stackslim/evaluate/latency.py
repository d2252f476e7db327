"""CPU latency and size of any model, measured the same way everywhere (mimic, prune, share, study).

    from stackslim.evaluate import clip_latency, bytes_on_disk, count_params, interleaved_latency
    lat = clip_latency(lambda waves: model(waves), waves, batch_size=8)
    lat["batch1_ms"], lat["batched_ms"]      # median milliseconds per clip
    lat = interleaved_latency({"teacher": f, "student": g}, waves)   # several models, round-robin

Method: `fn(inputs)` runs `warmup` times untimed, then `repeats` times timed with
`time.perf_counter`, under `torch.inference_mode()`, with the torch intra-op threads as they are
set when called (recorded in the result). The median is the headline number; p90, min and mean
come with it. Per-clip numbers divide a batch's time by its number of clips.

Sizes: `count_params` counts unique stored parameters (a shared tensor once, as
`Encoder.num_params` does); `bytes_on_disk` sums the sizes of the files under a path.
"""
from __future__ import annotations

import gc
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn


def measure_latency(fn: Callable[[Any], Any], inputs: Any, warmup: int = 2,
                    repeats: int = 7) -> dict[str, float | int]:
    """Wall-clock time of `fn(inputs)` after warm-up.

    Args:
        fn: the call to time (its result is discarded).
        inputs: its single argument (e.g. a list of waveforms).
        warmup: untimed calls first (lazy init, allocator, caches).
        repeats: timed calls; at least 1.

    Returns:
        ``median_ms``, ``p90_ms``, ``min_ms``, ``mean_ms`` (milliseconds per call),
        ``repeats``, ``warmup``, ``threads`` (torch intra-op threads during the timing).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    times = []
    # the cyclic collector paused while timing: no collection lands inside a measurement (a
    # gc.collect() before it would cost a second per call on a large heap, e.g. a study's caches)
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        with torch.inference_mode():
            for _ in range(max(0, warmup)):
                fn(inputs)
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn(inputs)
                times.append((time.perf_counter() - t0) * 1e3)
    finally:
        if gc_was_on:
            gc.enable()
    t = np.asarray(times)
    return {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)),
            "min_ms": float(t.min()), "mean_ms": float(t.mean()), "repeats": int(repeats),
            "warmup": int(warmup), "threads": int(torch.get_num_threads())}


def clip_latency(fn: Callable[[list], Any], waves: Sequence, batch_size: int = 8,
                 warmup: int = 2, repeats: int = 7) -> dict[str, Any]:
    """Per-clip latency of `fn(list_of_clips)` at batch 1 and batched.

    Batch 1 times `fn([waves[0]])`; batched times `fn(waves[:batch_size])` and divides by the
    number of clips in it (fewer when `waves` is shorter).

    Returns:
        ``batch1_ms`` and ``batched_ms`` (median ms per clip), ``batch_size`` (clips in the
        batched call), ``threads``, and the full `measure_latency` dicts under ``batch1`` and
        ``batched`` (milliseconds per call, not per clip).
    """
    if len(waves) == 0:
        raise ValueError("clip_latency needs at least one clip")
    one = measure_latency(fn, [waves[0]], warmup, repeats)
    batch = list(waves[:batch_size])
    many = measure_latency(fn, batch, warmup, repeats)
    return {"batch1_ms": one["median_ms"], "batched_ms": many["median_ms"] / len(batch),
            "batch_size": len(batch), "threads": one["threads"], "batch1": one, "batched": many}


def count_params(*modules: nn.Module | Sequence[nn.Parameter]) -> int:
    """Unique parameters of modules (or parameter lists) together; a shared tensor counts once."""
    seen: set[int] = set()
    n = 0
    for m in modules:
        params = m.parameters() if isinstance(m, nn.Module) else m
        for p in params:
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
    return n


def bytes_on_disk(path: str | os.PathLike) -> int:
    """Size in bytes of a file, or the sum over every file under a folder (links not followed)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such file or folder")
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())


@torch.inference_mode()
def interleaved_latency(fns: dict, waves: list, repeats: int = 5, shuffle: bool = True) -> dict[str, dict]:
    """Median ms per clip at batch 1 and batched, for every variant, timed round-robin so that
    machine noise hits all variants alike. Each round takes the variants in a new seeded random
    order: the variant timed right after a large one finds the caches filled with the other's
    weights (bench/latency_order.py: three identical small models after whisper-base in a fixed
    order, the one that follows the teacher is the slowest), so no variant keeps that place.
    `shuffle=False`: the fixed order of `fns`, to measure that bias."""
    one = {k: [] for k in fns}
    many = {k: [] for k in fns}
    for f in fns.values():  # warm-up
        f(waves[:1])
        f(waves)
    keys = list(fns)
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        for k in [keys[i] for i in (rng.permutation(len(keys)) if shuffle else range(len(keys)))]:
            f = fns[k]
            one[k].append(measure_latency(f, waves[:1], warmup=0, repeats=1)["median_ms"])
            many[k].append(measure_latency(f, waves, warmup=0, repeats=1)["median_ms"] / len(waves))
    return {k: {"batch1_ms": float(np.median(one[k])), "batched_ms": float(np.median(many[k]))} for k in fns}
