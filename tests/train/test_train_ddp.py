"""DistributedDataParallel in the one training loop: 2 processes (gloo, CPU) give the
parameters of 1 process on the full batches."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from trainhelpers import fit

HERE = Path(__file__).parent


@pytest.mark.parametrize("batch_size", [8, 10])  # last batch 5 rows (3 + 2), or 1 (rank 1 idle)
def test_two_ranks_equal_one_process(tmp_path, batch_size, torchrun):
    out = tmp_path / "ddp.pt"
    r = torchrun([str(HERE / "trainhelpers.py"), str(out), str(batch_size)])
    assert r.returncode == 0, r.stderr[-3000:]
    got = torch.load(out, weights_only=True)
    assert got["world"] == 2
    model, log = fit(batch_size=batch_size)
    for k, ref in model.state_dict().items():
        torch.testing.assert_close(got["state"][k], ref, atol=1e-5, rtol=1e-5, msg=k)
    # never used by a step: no gradient, so AdamW leaves it (and its weight decay) alone
    assert torch.equal(got["state"]["unused"], torch.ones(3))
    assert got["log"]["epochs_run"] == log.epochs_run and got["log"]["best_epoch"] == log.best_epoch
    for a, b in zip(got["log"]["train_loss"], log.train_loss):
        assert abs(a - b) < 1e-5
    for a, b in zip(got["log"]["val_score"], log.val_score):
        assert abs(a - b) < 1e-5
