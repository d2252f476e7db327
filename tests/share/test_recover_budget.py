"""Recovery keeps to its time budget, in one phase and in two (all states, then the last)."""
from __future__ import annotations

import time

import pytest

from stackslim.heads import prepare_task
from stackslim.models import load_encoder
from stackslim.share import to_residual
from stackslim.share.recover import distill_cache, recover
from stackslim.train import TrainConfig


@pytest.mark.parametrize("states", ["all", "all-then-last"])
def test_recovery_stops_at_its_time_budget(tone_data, states):
    teacher = load_encoder("random:wav2vec2")
    task = prepare_task(str(tone_data), "word")
    train = distill_cache(teacher, task.dataset.batches(task.splits["train"], 8), states="all",
                          progress=False)
    val = task.cache(teacher, "validation", progress=False)
    student = to_residual(teacher, groups=2, rank=2)
    budget_s = 3.0
    cfg = TrainConfig(epochs=100_000, batch_size=2, lr=1e-4, weight_decay=0.0, patience=100_000,
                      max_minutes=budget_s / 60)
    t0 = time.monotonic()
    log = recover(student, train, cfg, states=states, val_cache=val, progress=False)
    wall = time.monotonic() - t0
    assert log.stopped_by == "time" and 1 <= log.epochs_run < 100_000
    # past the deadline at most one step and one validation pass run (less than an epoch),
    # plus the converted model's own validation at the start of each phase; a loaded machine
    # can stall one step for seconds (a budget ignored would run for hours), hence the slack
    epoch_s = log.seconds / log.epochs_run
    assert budget_s * 0.9 <= log.seconds and wall <= 2 * budget_s + epoch_s + 3.0
    assert len(log.train.val_score) == log.epochs_run


def test_unknown_states_is_an_error(tone_data):
    teacher = load_encoder("random:wav2vec2")
    task = prepare_task(str(tone_data), "word")
    train = distill_cache(teacher, task.dataset.batches(task.splits["train"], 8), states="all",
                          progress=False)
    with pytest.raises(ValueError, match="states must be"):
        recover(to_residual(teacher, groups=2, rank=2), train, TrainConfig(epochs=1), states="some")
