"""The learning-rate schedule of the shared training loop: constant by default; cosine rises
linearly over the warm-up to `lr` and decays to 0 at the last step; the loop applies it."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from stackslim.train import TrainConfig, train
from stackslim.train.loop import lr_factor, schedule_step


def test_constant_is_one_everywhere():
    cfg = TrainConfig()
    assert [lr_factor(s, 10, cfg) for s in range(10)] == [1.0] * 10


def test_cosine_warms_up_then_decays_to_zero():
    cfg = TrainConfig(schedule="cosine", warmup=0.1)
    total = 100  # w = 10 warm-up steps
    f = [lr_factor(s, total, cfg) for s in range(total)]
    assert f[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # non-increasing after the warm-up
    assert f[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert lr_factor(total, total, cfg) == pytest.approx(0.0)


@pytest.mark.parametrize("bad", [dict(schedule="linear"), dict(warmup=1.0), dict(warmup=-0.1)])
def test_bad_schedule_is_refused(bad):
    with pytest.raises(ValueError, match="schedule|warmup"):
        TrainConfig(**bad)


def test_loop_follows_the_schedule(monkeypatch):
    """The rate the optimiser used at each step, read back from inside the step."""
    w = nn.Parameter(torch.zeros(3))
    seen: list[float] = []
    module = nn.Module()
    module.w = w
    opt_holder: dict = {}

    def step_loss(rows):
        seen.append(opt_holder["lr"]() if opt_holder else float("nan"))
        return ((w - 1.0) ** 2).sum() * len(rows)

    # the loop owns its optimiser: catch it by patching AdamW's constructor
    real = torch.optim.AdamW

    def spy(params, **kw):
        opt = real(params, **kw)
        opt_holder["lr"] = lambda: opt.param_groups[0]["lr"]
        return opt

    monkeypatch.setattr(torch.optim, "AdamW", spy)
    cfg = TrainConfig(epochs=4, batch_size=2, lr=0.1, schedule="cosine", warmup=0.25)
    train(module, 5, step_loss, cfg, progress=False)  # 3 steps per epoch, 12 in all
    total = 12
    assert seen == pytest.approx([0.1 * lr_factor(s, total, cfg) for s in range(total)])


def test_schedule_step_follows_the_budget():
    cfg = TrainConfig(schedule="cosine", max_minutes=1.0)
    assert schedule_step(3, 1000, 0.0, cfg) == 3  # no time spent: the step itself
    assert schedule_step(3, 1000, 30.0, cfg) == 500  # half the budget: half the steps
    assert schedule_step(3, 1000, 120.0, cfg) == 1000  # past the budget: the end, not beyond
    assert schedule_step(700, 1000, 30.0, cfg) == 700  # the steps ahead of the clock
    assert schedule_step(3, 1000, 30.0, TrainConfig(schedule="cosine")) == 3  # no budget


def test_cosine_under_a_budget_decays_to_the_deadline():
    """100 epochs asked, a 1.5 s budget ends training after a few: the cosine must have come
    down with the clock (by the step count alone it would still be near its peak)."""
    import time as _time

    w = nn.Parameter(torch.zeros(3))
    module = nn.Module()
    module.w = w

    def step_loss(rows):
        _time.sleep(0.02)
        return ((w - 1.0) ** 2).sum()

    cfg = TrainConfig(epochs=100, batch_size=1, lr=0.1, schedule="cosine", warmup=0.0,
                      max_minutes=1.5 / 60)
    log = train(module, 10, step_loss, cfg, progress=False)
    assert log.stopped_by == "time" and log.epochs_run < 100
    assert log.lr[0] > 0.05  # first epoch ≈ the first seconds of the budget: near the peak
    assert log.lr[-1] < 0.02  # the last: near the deadline, near 0
    assert all(a >= b for a, b in zip(log.lr, log.lr[1:]))
    steps_only = [lr_factor(s, 100 * 10, cfg) for s in range(10 * log.epochs_run)]
    assert min(steps_only) > 0.9  # what the step count alone would have given
