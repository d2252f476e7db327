"""`stackslim mimic` end to end on a tiny random model and the tone data set."""
from __future__ import annotations

import json

import pytest
import torch

from stackslim.cli import main
from stackslim.mimic import MimicConfig, MimicModel, run

from mimichelpers import saved_model_accuracy

FAST = ["--epochs", "2", "--task-epochs", "2", "--head-epochs", "2", "--hidden", "16",
        "--latency-batch", "2", "--latency-repeats", "1", "--quiet"]


def test_cli_writes_results_and_model(tone_data, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["mimic", "random:wav2vec2", str(tone_data), "--out", str(out), "--layers", "2",
               "--unlabelled", str(tone_data), "--max-unlabelled", "4", *FAST, "--task-epochs", "12"])
    assert rc == 0
    printed = capsys.readouterr().out
    for what in ("parameters (stack)", "bytes on disk", "ms/clip, batch 1", "capacity"):
        assert what in printed
    res = json.loads((out / "mimic.json").read_text())
    assert res["config"]["layers"] == 2 and res["cache"]["unlabelled"] == 4
    assert 1 <= res["boundary"]["boundary"] <= 3
    for side in ("teacher", "mimic"):
        assert res[side]["params"] > res[side]["params_stack"] > 0
        assert res[side]["bytes"] > 0 and res[side]["latency"]["batch1_ms"] > 0
    # what it reports is what the saved model does, and the capacity is their ratio
    assert res["mimic"]["accuracy"] == pytest.approx(saved_model_accuracy(out / "model", tone_data))
    assert res["capacity"] == pytest.approx(res["mimic"]["accuracy"] / res["teacher"]["accuracy"])
    assert res["mimic"]["params_stack"] < res["teacher"]["params_stack"]
    assert res["ratios"]["params_stack"] > 1
    assert json.loads((out / "config.json").read_text())["command"] == "mimic"
    model = MimicModel.load(out / "model")
    assert len(model.layers) == 2 and model.class_names == ["high", "low", "mid"]


def test_library_call_baseline_whisper(tone_dataset, tmp_path):
    cfg = MimicConfig(kind="transformer", hidden=16, baseline=True, task_epochs=1, head_epochs=1,
                      latency_batch=2, latency_repeats=1)
    res = run("random:whisper", tone_dataset, tmp_path / "r", cfg, progress=False)
    assert res.logs["stage1"] is None and res.logs["stage2"].epochs_run == 1
    assert res.capacity == res.mimic["accuracy"] / res.teacher["accuracy"]
    waves = [tone_dataset.load(0), tone_dataset.load(1)]
    model = MimicModel.load(res.model_dir)
    with torch.no_grad():
        assert model(waves).shape == (2, 3)


def test_bad_input_exits_2_with_one_line(tone_data, tmp_path, capsys):
    assert main(["mimic", "random:wav2vec2", str(tone_data), "--out", str(tmp_path / "a"),
                 "--hidden", "0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stackslim mimic: error:") and "--hidden" in err and "\n" not in err
    assert main(["mimic", "random:wav2vec2", str(tone_data), "--out", str(tmp_path / "b"),
                 "--layers", "2", "--boundary", "9", *FAST]) == 2
    assert "--boundary" in capsys.readouterr().err
    assert main(["mimic", "random:nope", str(tone_data), "--out", str(tmp_path / "c"), "--quiet"]) == 2
    capsys.readouterr()
    assert main(["mimic", "random:wav2vec2", str(tone_data), "--out", str(tmp_path / "d"),
                 "--unlabelled", str(tmp_path / "nowhere"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--unlabelled" in err and "nowhere" in err and "\n" not in err
    assert not (tmp_path / "d").exists()  # failed before writing anything


def test_speaker_task(tone_data, tmp_path):
    """--task speaker: speakers are the classes, the splits hold different words."""
    from stackslim.heads import prepare_task

    out = tmp_path / "spk"
    assert main(["mimic", "random:wav2vec2", str(tone_data), "--out", str(out), "--task", "speaker",
                 *FAST, "--task-epochs", "12"]) == 0
    res = json.loads((out / "mimic.json").read_text())
    task = prepare_task(str(tone_data), "speaker", seed=0)
    assert res["task"] == json.loads(json.dumps(task.describe())) and res["task"]["classes"] == 6
    words = {p: {task.dataset.clips[i].label for i in idx} for p, idx in task.splits.items()}
    assert words["train"].isdisjoint(words["test"]) and words["train"].isdisjoint(words["validation"])
    assert MimicModel.load(out / "model").class_names == [f"spk{s}" for s in range(6)]
    assert res["mimic"]["accuracy"] == pytest.approx(saved_model_accuracy(out / "model", tone_data, "speaker"))
