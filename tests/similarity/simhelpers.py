"""Helpers for the similarity tests (imported as `simhelpers`): random correlated states and HiddenStates builders."""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import pytest
import torch


@dataclass
class LiteStates:
    """Stand-in for HiddenStates (same fields) for spawned workers: importing stackslim.models
    pulls in transformers, seconds per process; the similarity code only needs the fields."""

    states: list
    lengths: torch.Tensor
    final_norm: bool | None = None


def _cls(lite: bool):
    if lite:
        return LiteStates
    from stackslim.models.base import HiddenStates

    return HiddenStates


def correlated_states(seed: int, n: int, S: int, D: int) -> list[torch.Tensor]:
    """S float64 tensors (n, D): a residual-like stream, states drift away from state 0."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, D, generator=g, dtype=torch.float64)
    out = [h]
    for _ in range(S - 1):
        mix = torch.randn(D, D, generator=g, dtype=torch.float64) / D ** 0.5
        h = h + 0.6 * torch.tanh(h @ mix) + 0.3 * torch.randn(n, D, generator=g, dtype=torch.float64)
        out.append(h)
    return out


def rows_as_states(X: list[torch.Tensor], lite: bool = False):
    """One clip per row, one frame per clip: pooled view == the rows."""
    n = X[0].shape[0]
    return _cls(lite)(states=[x[:, None, :] for x in X], lengths=torch.ones(n, dtype=torch.long),
                      final_norm=None)


def split_rows(hs, sizes: list[int]) -> list:
    out, a = [], 0
    for s in sizes:
        out.append(type(hs)([x[a:a + s] for x in hs.states], hs.lengths[a:a + s], hs.final_norm))
        a += s
    return out


def padded_states(seed: int, B: int, T: int, S: int, D: int, pad_value: float = 1e3, lite: bool = False):
    """(B, T, D) states with random lengths; padded frames hold garbage (pad_value noise)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    flat = correlated_states(seed, B * T, S, D)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    states = []
    for x in flat:
        x = x.reshape(B, T, D).clone()
        x[~mask] = pad_value * torch.randn(int((~mask).sum()), D, generator=g, dtype=torch.float64)
        states.append(x)
    return _cls(lite)(states=states, lengths=lengths, final_norm=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn_two(worker, *args, timeout: float = 120) -> None:
    """Run worker(rank, 2, port, *args) in two spawned processes; fail the test if they hang."""
    ctx = torch.multiprocessing.spawn(worker, args=(2, free_port(), *args), nprocs=2, join=False)
    deadline = time.time() + timeout
    while not ctx.join(timeout=2):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"distributed workers did not finish within {timeout:.0f} s")
