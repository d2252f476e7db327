"""`stackslim prune` end to end: files, the saved model's accuracy with plain transformers,
one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from stackslim.cli import main
from stackslim.errors import StackslimError
from stackslim.heads import prepare_task
from stackslim.prune import PruneError

ARGS = ["--epochs", "20", "--refit-epochs", "5", "--quiet", "--batch-size", "16"]


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
    assert json.loads((run_dir / "config.json").read_text())["config"]["strategies"] == ["forward", "backward", "bi", "greedy"]
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
    assert issubclass(PruneError, StackslimError)  # what the CLI turns into one line, exit 2
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


def _speaker_tones(root):
    """3 words × 4 speakers × 3 takes of 0.3 s: a speaker is a strong tone of its own (its
    'voice'), a word a weaker one, so that speakers can be told apart across words."""
    from stackslim.data import Clip, load_dataset, write_manifest, write_wav

    rng = np.random.default_rng(0)
    t = np.arange(4800) / 16000
    clips = []
    for w, fw in enumerate((2500.0, 3000.0, 3500.0)):
        for s in range(4):
            for r in range(3):
                x = np.sin(2 * np.pi * (300.0 + 450.0 * s) * t) + 0.3 * np.sin(2 * np.pi * fw * t)
                path = write_wav(root / f"w{w}_s{s}_{r}.wav",
                                 (0.3 * x + 0.02 * rng.standard_normal(t.size)).astype(np.float32))
                clips.append(Clip(path=path, label=f"w{w}", speaker=f"s{s}"))
    write_manifest(root / "manifest.csv", clips)
    return load_dataset(root)


def test_speaker_task(tmp_path):
    """--task speaker: speakers are the classes (of the saved head too), the splits hold
    different words."""
    tones = _speaker_tones(tmp_path / "data")
    out = tmp_path / "spk"
    assert main(["prune", "random:wav2vec2", str(tmp_path / "data"), "--out", str(out), "--task", "speaker",
                 "--strategies", "backward"] + ARGS) == 0
    d = json.loads((out / "pruning.json").read_text())
    task = prepare_task(tones, "speaker", seed=0)
    assert d["task"] == json.loads(json.dumps(task.describe())) and d["task"]["classes"] == 4
    head = json.loads((out / "model" / "head.json").read_text())
    assert head["classes"] == [f"s{i}" for i in range(4)] and head["task"] == "speaker"
    assert d["teacher"]["test_accuracy"] > 0.5  # speakers told apart in words never trained on
    words = {p: {tones.clips[i].label for i in idx} for p, idx in task.splits.items()}
    assert words["train"].isdisjoint(words["test"]) and words["train"].isdisjoint(words["validation"])
    assert load_file(str(out / "model" / "head.safetensors"))["classifier.weight"].shape[0] == 4
    assert json.loads((out / "config.json").read_text())["config"]["task"] == "speaker"
    assert head["num_classes"] == 4
