"""A tiny training problem shared by the DDP test and its torchrun worker.

Run as a script under torchrun it trains the problem with `stackslim.train.train` in the
process group and rank 0 saves the parameters and the log:

    torchrun --standalone --nproc_per_node=2 tests/train/trainhelpers.py OUT.pt [BATCH_SIZE]
"""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

from stackslim.train import TrainConfig, TrainLog, train

N, D, C = 21, 4, 3  # 21 rows, batch 8: the last batch has 5 rows (3 + 2 on two ranks)
CFG = TrainConfig(epochs=4, batch_size=8, lr=1e-2, weight_decay=1e-2, patience=10, seed=3)


class Tiny(nn.Module):
    """Linear → tanh → linear, plus a parameter no step uses (its gradient stays None)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, C))
        self.unused = nn.Parameter(torch.ones(C))


def problem(seed: int = 0) -> tuple[Tiny, torch.Tensor, torch.Tensor]:
    """(model, x (N, D), y (N,)), identical in every process."""
    torch.manual_seed(seed)
    x = torch.randn(N, D)
    y = torch.randint(0, C, (N,))
    return Tiny(), x, y


def fit(cfg: TrainConfig = CFG, batch_size: int | None = None) -> tuple[Tiny, TrainLog]:
    """Train the tiny problem (mean cross-entropy over a batch's rows; validation = −loss)."""
    model, x, y = problem()
    if batch_size is not None:
        cfg = TrainConfig(**{**cfg.__dict__, "batch_size": batch_size})

    def step(rows):
        return F.cross_entropy(model.body(x[list(rows)]), y[list(rows)])

    def validate() -> float:
        return -float(F.cross_entropy(model.body(x), y))

    log = train(model, N, step, cfg, validate=validate, progress=False)
    return model, log


if __name__ == "__main__":
    from stackslim import runtime

    torch.set_num_threads(1)
    rank, world = runtime.init_from_env()
    model, log = fit(batch_size=int(sys.argv[2]) if len(sys.argv) > 2 else None)
    if rank == 0:
        torch.save({"state": model.state_dict(), "log": log.to_json(), "world": world}, sys.argv[1])
    runtime.shutdown()
