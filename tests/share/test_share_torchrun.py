"""`stackslim share` (recovery on the train split and unlabelled clips) under
`torchrun --nproc_per_node=2` (gloo, CPU)."""
from __future__ import annotations

import json


def test_share_recovery_two_processes(tone_data, tmp_path, torchrun):
    out = tmp_path / "run"
    r = torchrun(["-m", "stackslim", "share", "random:wav2vec2", tone_data, "--out", out,
                  "--group", "2", "--rank", "4", "--epochs", "2", "--head-epochs", "2",
                  "--latency-clips", "2", "--batch-size", "4",
                  "--unlabelled", tone_data, "--max-unlabelled", "20"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model", "share.json"]
    res = json.loads((out / "share.json").read_text())
    assert res["recovery"]["epochs_run"] == 2 and len(res["recovery"]["train_loss"]) == 2
    assert res["after"] is not None and 0.0 <= res["after"]["accuracy"] <= 1.0
    # 20 unlabelled clips in batches of 16: each rank encodes one batch, both get all 20
    n = res["recovery"]["data"]
    assert n["unlabelled_clips"] == 20 and n["rows"] == n["labelled_clips"] + n["unlabelled_windows"]
