"""`stackslim prune` end to end: files, the saved model's accuracy with plain transformers,
one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from stackslim.cli import known_errors, main
from stackslim.heads import prepare_task
from stackslim.prune import PruneError

ARGS = ["--head-epochs", "20", "--refit-epochs", "5", "--no-progress", "--batch-size", "16"]


@pytest.fixture(scope="module")
def run_dir(tones_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("prune") / "run"
    rc = main(["prune", "random:wav2vec2", str(tones_dir), "--out", str(out),
               "--strategies", "forward,backward,bi,greedy"] + ARGS)
    assert rc == 0
    return out


def test_outputs(run_dir, capsys):
    d = json.loads((run_dir / "pruning.json").read_text())
    assert set(d["strategies"]) == {"forward", "backward", "bi", "greedy"}
    assert d["teacher"]["test_accuracy"] > 0 and d["threshold"] == 0.95
    for s in d["strategies"].values():
        for c in s["curves"].values():
            assert c["test_accuracy"][0] == d["teacher"]["test_accuracy"]
            # the largest k whose accuracy keeps the threshold times the teacher's, per split
            acc, val = c["test_accuracy"], c["val_accuracy"]
            assert c["max_deletable"] == max(k for k, a in enumerate(acc) if a >= 0.95 * acc[0] - 1e-9)
            assert c["max_deletable_val"] == max(k for k, a in enumerate(val) if a >= 0.95 * val[0] - 1e-9)
    assert (run_dir / "pruning.png").stat().st_size > 10_000
    assert json.loads((run_dir / "config.json").read_text())["strategies"] == ["forward", "backward", "bi", "greedy"]
    assert (run_dir / "model" / "config.json").is_file() and (run_dir / "model" / "head.safetensors").is_file()


def test_saved_model_scores_the_reported_accuracy_with_plain_transformers(run_dir, tones):
    best = json.loads((run_dir / "pruning.json").read_text())["best"]
    model = AutoModel.from_pretrained(run_dir / "model")
    assert model.config.num_hidden_layers == best["num_layers"]
    w = load_file(str(run_dir / "model" / "head.safetensors"))
    task = prepare_task(tones, "word", seed=0)
    right = 0
    for i in task.splits["test"]:
        wave = tones.load(i)
        x = torch.from_numpy((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7))[None]
        with torch.no_grad():
            h = model(x).last_hidden_state  # (1, T, D)
        logits = (h @ w["projector.weight"].T + w["projector.bias"]).mean(1) @ w["classifier.weight"].T \
            + w["classifier.bias"]
        right += int(logits.argmax(-1).item() == task.ids[i])
    assert right / len(task.splits["test"]) == pytest.approx(best["test_accuracy"], abs=1e-6)


@pytest.mark.parametrize("extra, match", [
    (["--strategies", "forward,nope"], "unknown strategy 'nope'"),
    (["--threshold", "1.5"], "threshold must lie in"),
])
def test_bad_inputs_fail_with_one_line(extra, match, tones_dir, tmp_path, capsys):
    assert PruneError in known_errors()  # else the CLI raises it instead of printing one line
    assert main(["prune", "random:hubert", str(tones_dir), "--out", str(tmp_path / "o")] + extra + ARGS) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match.split("'")[0] in err[0]


def test_out_is_a_file(tones_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["prune", "random:hubert", str(tones_dir), "--out", str(tmp_path / "file")] + ARGS) == 2
    assert "not a folder" in capsys.readouterr().err


def test_no_save_model_removes_an_earlier_model(tones_dir, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "model").mkdir(parents=True)
    (out / "model" / "config.json").write_text("{}")  # what an earlier run saved there
    assert main(["prune", "random:hubert", str(tones_dir), "--out", str(out), "--no-save-model",
                 "--strategies", "forward", "--no-refit"] + ARGS) == 0
    assert not (out / "model").exists()
    assert json.loads((out / "pruning.json").read_text())["removed_from_earlier_run"] == ["model/"]
    assert f"removed {out}/model/" in capsys.readouterr().out
