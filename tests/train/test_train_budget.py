"""The time budget of the training loop covers the validation that ends each epoch."""
from __future__ import annotations

import time

import torch

from stackslim.train import TrainConfig, train


def test_slow_validation_stays_inside_the_budget():
    w = torch.nn.Parameter(torch.zeros(3))
    module = torch.nn.Module()
    module.w = w

    def step_loss(rows):
        time.sleep(0.01)  # a step: 10 ms, 5 per epoch
        return ((w - 1.0) ** 2).sum()

    def validate() -> float:
        time.sleep(0.4)  # much longer than an epoch's steps
        return -float(((w - 1.0) ** 2).sum())

    budget_s = 2.0
    cfg = TrainConfig(epochs=1000, batch_size=2, lr=1e-2, weight_decay=0.0, patience=1000,
                      max_minutes=budget_s / 60)
    log = train(module, 10, step_loss, cfg, validate=validate, progress=False)
    assert log.stopped_by == "time" and log.epochs_run >= 2
    # log.seconds: from the loop's start, when its clock starts (the first AdamW's one-time
    # set-up comes before). Without the reserve the last validation (0.4 s) ran past it.
    assert log.seconds <= budget_s + 0.1, log.seconds
    assert log.seconds >= budget_s - 0.6  # and the budget is used, less about one validation
