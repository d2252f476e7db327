"""`stackslim prune` under `torchrun --nproc_per_node=2` (gloo, CPU): same orders and curves
as one process (the heads train with DDP on the same batches), the layer runs of the scoring
divided between the ranks, rank 0 alone writes."""
from __future__ import annotations

import json

ARGS = ["--epochs", "5", "--refit-epochs", "2", "--quiet", "--batch-size", "16",
        "--strategies", "forward,bi"]


def test_prune_two_processes(tones_dir, tmp_path, torchrun):
    from stackslim.cli import main

    one, two = tmp_path / "one", tmp_path / "two"
    r = torchrun(["-m", "stackslim", "prune", "random:wav2vec2", tones_dir, "--out", two, *ARGS])
    assert r.returncode == 0, r.stderr[-3000:]
    assert main(["prune", "random:wav2vec2", str(tones_dir), "--out", str(one), *ARGS]) == 0
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    a, b = (json.loads((d / "pruning.json").read_text()) for d in (one, two))
    assert a["best"]["deleted_layers"] == b["best"]["deleted_layers"]
    for name, s in a["strategies"].items():
        assert s["order"] == b["strategies"][name]["order"]
        for v, c in s["curves"].items():
            for x, y in zip(c["test_accuracy"], b["strategies"][name]["curves"][v]["test_accuracy"]):
                assert abs(x - y) <= 0.05, (name, v)  # float rounding may flip a clip
    # the same clip × layer runs as one process, each rank doing about half of them
    runs_one, runs_two = a["layer_runs"], b["layer_runs"]
    assert len(runs_one["per_rank"]) == 1 and len(runs_two["per_rank"]) == 2
    assert runs_two["total"] == runs_one["total"]
    assert max(runs_two["per_rank"]) <= 0.6 * runs_one["total"], runs_two
