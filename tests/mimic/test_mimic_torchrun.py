"""`stackslim mimic` under `torchrun --nproc_per_node=2` (gloo, CPU): the ranks share the
teacher encoding and train with DDP; rank 0 alone writes one result."""
from __future__ import annotations

import json

import pytest
from mimichelpers import saved_model_accuracy

FAST = ["--epochs", "2", "--task-epochs", "2", "--head-epochs", "2", "--hidden", "16",
        "--batch-size", "8", "--latency-batch", "2", "--latency-repeats", "1", "--quiet", "--device", "cpu"]


def test_mimic_two_processes_write_one_result(tone_data, tmp_path, torchrun):
    out = tmp_path / "run"
    r = torchrun(["-m", "stackslim", "mimic", "random:wav2vec2", tone_data, "--out", out, *FAST,
                  "--task-epochs", "12"])
    assert r.returncode == 0, r.stderr[-3000:]
    # nothing but the results (the run's lock file is gone with the run)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "mimic.json", "model"]
    assert r.stdout.count("wrote ") == 1  # rank 0 reports, rank 1 stays quiet
    res = json.loads((out / "mimic.json").read_text())
    assert res["logs"]["stage1"]["epochs_run"] == 2 and res["logs"]["stage2"]["epochs_run"] == 12
    assert res["cache"]["train"] + res["cache"]["validation"] + res["cache"]["test"] == 36
    # rank 0 reports what the saved model does on the whole test split (not on its shard)
    assert res["mimic"]["accuracy"] == pytest.approx(saved_model_accuracy(out / "model", tone_data))
