"""`stackslim share` (recovery on the train split and unlabelled clips) under
`torchrun --nproc_per_node=2` (gloo, CPU)."""
from __future__ import annotations

import json

import pytest

from stackslim.heads import prepare_task
from stackslim.models import load_encoder
from stackslim.share import load_shared
from stackslim.share.recover import last_state_error


def test_share_recovery_two_processes(tone_data, tmp_path, torchrun):
    out = tmp_path / "run"
    r = torchrun(["-m", "stackslim", "share", "random:wav2vec2", tone_data, "--out", out,
                  "--group", "2", "--rank", "4", "--epochs", "2", "--head-epochs", "2",
                  "--latency-clips", "2", "--batch-size", "4", "--lr", "1e-3",
                  "--unlabelled", tone_data, "--max-unlabelled", "20"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model", "share.json"]
    res = json.loads((out / "share.json").read_text())
    assert res["recovery"]["epochs_run"] == 2 and len(res["recovery"]["train_loss"]) == 2
    # rank 0's numbers are the saved model's on the whole test split (not on a shard)
    teacher = load_encoder("random:wav2vec2")
    test = prepare_task(str(tone_data), "word", seed=0).cache(teacher, "test", progress=False)
    saved = load_shared(out / "model")
    assert res["after"]["last_state_error"] == pytest.approx(last_state_error(saved, test), rel=1e-4)
    # ... the recovered model's, which the recovery moved away from the converted one
    assert res["after"]["last_state_error"] != pytest.approx(res["before"]["last_state_error"], rel=0.1)
    # 20 unlabelled clips in batches of 16: each rank encodes one batch, both get all 20
    n = res["recovery"]["data"]
    assert n["unlabelled_clips"] == 20 and n["rows"] == n["labelled_clips"] + n["unlabelled_windows"]
