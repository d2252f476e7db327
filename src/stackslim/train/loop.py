"""One training loop for every trained thing in stackslim (heads, mimic layers, shared
layers): mini-batches over row indices, AdamW, optional time budget, early stopping on a
validation score, best weights restored at the end; a constant learning rate, or linear warm-up
then cosine decay (`schedule="cosine"`) over the epochs or the time budget, whichever ends first.

The caller supplies `step_loss(rows) -> loss` (a scalar tensor on a batch of row indices) and
optionally `validate() -> score` (higher is better). Everything else — shuffling with a seed,
the optimiser, progress, patience, the time limit — lives here once.

Under torchrun (a process group initialised, `stackslim.runtime.init_from_env`) the same call
trains with DistributedDataParallel: every rank draws the same shuffled order (same seed), and
of each global batch of `cfg.batch_size` rows rank r takes rows r, r + W, ... (W processes).
DDP averages the W local gradients; the local loss is weighted by W·n_r / n (n_r of the
batch's n rows are local), so for a loss that is a mean over rows the reduced gradient is the
full batch's:

    (1/W) Σ_r ∇(W n_r / n · L_r) = Σ_r (n_r / n) ∇L_r = ∇L_batch

A rank with no row in a (short, last) batch runs the step on one row with weight 0, so that it
still joins the gradient all_reduce. Decisions are made once for all ranks: the validation
score is rank 0's (broadcast), and the time budget / a non-finite loss stop every rank at the
same step (all_reduce of the flags). One process (no group) runs exactly the plain loop.
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

from .. import runtime


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(default=30, metadata={"help": "maximum number of epochs"})
    batch_size: int = field(default=32, metadata={"help": "clips per step"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    patience: int = field(default=5, metadata={"help": "epochs without validation gain before stopping"})
    max_minutes: float = field(default=0.0, metadata={"help": "time budget in minutes (0: none)"})
    seed: int = field(default=0, metadata={"help": "shuffling and init seed"})
    schedule: str = field(default="constant", metadata={
        "help": "learning rate over the steps: 'constant', or 'cosine' (linear warm-up, then cosine "
                "decay to 0 at the last step of `epochs` or at the end of the time budget, "
                "whichever comes first)"})
    warmup: float = field(default=0.05, metadata={"help": "cosine: warm-up as a fraction of all steps"})

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown learning-rate schedule {self.schedule!r}: choose from {', '.join(SCHEDULES)}")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup must lie in [0, 1), got {self.warmup}")


SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """The multiplier of `cfg.lr` at optimiser step `step` (0-based) of `total`.

    constant: 1. cosine, with w = max(1, round(warmup · total)) warm-up steps:

        f(s) = (s + 1) / w                                   for s < w
        f(s) = ½ (1 + cos(π (s − w) / max(1, total − w)))    after

    so the rate rises to `lr` over the warm-up and falls to 0 at the last step. Warm-up keeps
    the first updates of a deep stack trained from random weights small (the shared weights
    of a residual layer get the gradients of K layers at once).
    """
    if cfg.schedule == "constant":
        return 1.0
    w = max(1, round(cfg.warmup * total))
    if step < w:
        return (step + 1) / w
    return 0.5 * (1.0 + math.cos(math.pi * min(step - w, total - w) / max(1, total - w)))


def schedule_step(step: int, total: int, elapsed_s: float, cfg: TrainConfig) -> int:
    """The step the schedule is at: `step`, or further on under a time budget.

    A budget usually ends training long before `epochs` (a 20-minute share recovery runs 5 of
    100), and a cosine over the steps alone would then barely decay. So the schedule reads the
    fraction of the budget spent too, as a step:

        s_eff = max(step, ⌊total · elapsed / budget⌋)

    and the rate warms up over the first `warmup` of the budget and reaches 0 at its end.
    """
    if cfg.max_minutes <= 0:
        return step
    return max(step, min(total, math.floor(total * elapsed_s / (cfg.max_minutes * 60))))


@dataclass
class TrainLog:
    epochs_run: int = 0
    best_epoch: int = -1
    best_score: float = -math.inf
    train_loss: list[float] = field(default_factory=list)
    val_score: list[float] = field(default_factory=list)
    seconds: float = 0.0
    stopped_by: str = "epochs"  # epochs | patience | time
    lr: list[float] = field(default_factory=list)  # the rate of each epoch's last step

    def to_json(self) -> dict:
        return self.__dict__.copy()


def train(module: nn.Module, n_rows: int, step_loss: Callable[[Sequence[int]], torch.Tensor],
          cfg: TrainConfig, validate: Callable[[], float] | None = None,
          params: Sequence[nn.Parameter] | None = None, desc: str = "training",
          progress: bool = True) -> TrainLog:
    """Train `module` (its parameters, or `params`) to minimise `step_loss` over `n_rows` rows.

    With `validate`, the weights of the best-scoring epoch are restored at the end and training
    stops after `cfg.patience` epochs without improvement. With `cfg.max_minutes`, training stops
    once the budget is spent (checked after every step), the epoch-end validation included: the
    steps stop as long before the deadline as the last validation took. The learning rate of
    each step is cfg.lr · lr_factor(schedule_step(...)): under a budget a cosine ends with it.
    """
    params = [p for p in (params if params is not None else module.parameters()) if p.requires_grad]
    params = list({id(p): p for p in params}.values())  # a shared tensor once (optimiser, DDP)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = cfg.epochs * math.ceil(n_rows / cfg.batch_size)  # every rank takes every step
    step = _DistributedStep(params, step_loss) if runtime.is_distributed() else None
    gen = torch.Generator().manual_seed(cfg.seed)
    log = TrainLog()
    best_state = None
    t0 = time.monotonic()
    elapsed = 0.0  # what the schedule reads: under torchrun the ranks' agreed (max) time
    n_step = 0
    deadline = t0 + cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf
    # the budget covers the validation that ends an epoch too: steps stop that much earlier
    # (the last validation's time; a 20-minute share recovery ran 34 s over without it)
    reserve = 0.0
    bar = tqdm(range(cfg.epochs), desc=desc, unit="epoch", disable=not progress or not runtime.is_main(),
               leave=False)
    for epoch in bar:
        module.train()
        order = torch.randperm(n_rows, generator=gen).tolist()
        total, count = 0.0, 0
        for s in range(0, n_rows, cfg.batch_size):
            rows = order[s : s + cfg.batch_size]
            if step is None:  # under torchrun `elapsed` is the last step's agreed time
                elapsed = time.monotonic() - t0
            lr = cfg.lr * lr_factor(schedule_step(n_step, total_steps, elapsed, cfg), total_steps, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            if step is None:
                loss = step_loss(rows)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{desc}: loss became {loss.item()} at epoch {epoch}")
                local, mine = loss, len(rows)
            else:
                loss, local, mine = step(rows)
                # agreed before backward: a rank that raised or stopped alone would leave the
                # others waiting in DDP's gradient all_reduce
                bad, out_of_time, elapsed = runtime.all_reduce_floats(
                    [not torch.isfinite(local), time.monotonic() + reserve > deadline,
                     time.monotonic() - t0], "max")  # elapsed: the next step's schedule
                bad, out_of_time = bad > 0, out_of_time > 0
                if bad:
                    raise FloatingPointError(f"{desc}: loss became non-finite at epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n_step += 1
            total += local.item() * mine
            count += mine
            if step is None:
                out_of_time = time.monotonic() + reserve > deadline
            if out_of_time:
                break
        module.eval()
        log.epochs_run = epoch + 1
        if step is not None:
            total, count = runtime.all_reduce_floats([total, count])
        log.train_loss.append(total / max(count, 1))
        log.lr.append(opt.param_groups[0]["lr"])
        if validate is not None:
            v0 = time.monotonic()
            with torch.no_grad():
                score = runtime.broadcast_float(validate())  # rank 0's: one decision for all
            reserve = runtime.all_reduce_floats([time.monotonic() - v0], "max")[0] \
                if step is not None else time.monotonic() - v0
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
        if _past(deadline - reserve, step is not None):  # no room for another epoch's check
            log.stopped_by = "time"
            break
    bar.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    log.seconds = time.monotonic() - t0
    return log


def _past(deadline: float, agree: bool) -> bool:
    """Whether the time budget is spent; with `agree`, true on every rank once true on one."""
    late = time.monotonic() > deadline
    return runtime.all_reduce_floats([late], "max")[0] > 0 if agree else late


class _StepModule(nn.Module):
    """The trained parameters as one module whose forward is the caller's step, so that DDP
    (which hooks the parameters of the module it wraps) sees every use of them in the step."""

    def __init__(self, params: Sequence[nn.Parameter], step_loss: Callable[[Sequence[int]], torch.Tensor]):
        super().__init__()
        self.trained = nn.ParameterList(params)  # the same Parameter objects, not copies
        self.step_loss = step_loss

    def forward(self, rows: Sequence[int]) -> torch.Tensor:
        return self.step_loss(rows)


class _DistributedStep:
    """One training step under DistributedDataParallel: this rank's rows of a global batch."""

    def __init__(self, params: Sequence[nn.Parameter], step_loss: Callable[[Sequence[int]], torch.Tensor]):
        from torch.nn.parallel import DistributedDataParallel

        dev = params[0].device
        # find_unused_parameters: a step may skip some trained parameters (LayerDrop, a head
        # not in the loss); DDP then marks them ready instead of waiting for their gradients.
        # The constructor also broadcasts rank 0's parameters: every rank starts identical.
        # CPU parameters under nccl (e.g. training on cached states while the encoder ran on
        # the GPUs) reduce their gradients through a gloo group instead
        self.ddp = DistributedDataParallel(
            _StepModule(params, step_loss), device_ids=[dev.index] if dev.type == "cuda" else None,
            process_group=runtime.cpu_group() if dev.type == "cpu" else None,
            broadcast_buffers=False, find_unused_parameters=True)
        self.rank, self.world = runtime.rank(), runtime.world_size()

    def __call__(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """For the global batch `rows`: (loss to back-propagate, local mean loss, local rows).

        The first is the local loss weighted by W·n_r / n (module docstring)."""
        local = list(rows[self.rank :: self.world])
        if not local:  # a short last batch: join the all_reduce with a zero-weight step
            loss = self.ddp(list(rows[:1]))
            return loss * 0.0, loss.detach(), 0
        loss = self.ddp(local)
        return loss * (self.world * len(local) / len(rows)), loss.detach(), len(local)
