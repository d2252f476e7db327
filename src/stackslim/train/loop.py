"""One training loop for every trained thing in stackslim (heads, mimic layers, shared
layers): mini-batches over row indices, AdamW, optional time budget, early stopping on a
validation score, best weights restored at the end.

The caller supplies `step_loss(rows) -> loss` (a scalar tensor on a batch of row indices) and
optionally `validate() -> score` (higher is better). Everything else — shuffling with a seed,
the optimiser, progress, patience, the time limit — lives here once.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(default=30, metadata={"help": "maximum number of epochs"})
    batch_size: int = field(default=32, metadata={"help": "clips per step"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    patience: int = field(default=5, metadata={"help": "epochs without validation gain before stopping"})
    max_minutes: float = field(default=0.0, metadata={"help": "time budget in minutes (0: none)"})
    seed: int = field(default=0, metadata={"help": "shuffling and init seed"})


@dataclass
class TrainLog:
    epochs_run: int = 0
    best_epoch: int = -1
    best_score: float = -math.inf
    train_loss: list[float] = field(default_factory=list)
    val_score: list[float] = field(default_factory=list)
    seconds: float = 0.0
    stopped_by: str = "epochs"  # epochs | patience | time

    def to_json(self) -> dict:
        return self.__dict__.copy()


def train(module: nn.Module, n_rows: int, step_loss: Callable[[Sequence[int]], torch.Tensor],
          cfg: TrainConfig, validate: Callable[[], float] | None = None,
          params: Sequence[nn.Parameter] | None = None, desc: str = "training",
          progress: bool = True) -> TrainLog:
    """Train `module` (its parameters, or `params`) to minimise `step_loss` over `n_rows` rows.

    With `validate`, the weights of the best-scoring epoch are restored at the end and training
    stops after `cfg.patience` epochs without improvement. With `cfg.max_minutes`, training stops
    once the budget is spent (checked after every step).
    """
    params = [p for p in (params if params is not None else module.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    log = TrainLog()
    best_state = None
    t0 = time.monotonic()
    deadline = t0 + cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf
    bar = tqdm(range(cfg.epochs), desc=desc, unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        module.train()
        order = torch.randperm(n_rows, generator=gen).tolist()
        total, count = 0.0, 0
        for s in range(0, n_rows, cfg.batch_size):
            rows = order[s : s + cfg.batch_size]
            loss = step_loss(rows)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: loss became {loss.item()} at epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(rows)
            count += len(rows)
            if time.monotonic() > deadline:
                break
        module.eval()
        log.epochs_run = epoch + 1
        log.train_loss.append(total / max(count, 1))
        if validate is not None:
            with torch.no_grad():
                score = float(validate())
            log.val_score.append(score)
            if score > log.best_score:
                log.best_score, log.best_epoch = score, epoch
                best_state = copy.deepcopy(module.state_dict())
            bar.set_postfix(loss=f"{log.train_loss[-1]:.4f}", val=f"{score:.4f}")
            if epoch - log.best_epoch >= cfg.patience:
                log.stopped_by = "patience"
                break
        else:
            bar.set_postfix(loss=f"{log.train_loss[-1]:.4f}")
        if time.monotonic() > deadline:
            log.stopped_by = "time"
            break
    bar.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    log.seconds = time.monotonic() - t0
    return log
