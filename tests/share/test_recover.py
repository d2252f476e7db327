"""Recovery by distillation, and the `stackslim share` command end to end."""
from __future__ import annotations

import json

import pytest
import torch

from stackslim.cli import main
from stackslim.evaluate import stack_accuracy as student_accuracy
from stackslim.heads import fit_head, prepare_task
from stackslim.models import load_encoder
from stackslim.share import load_shared, to_residual
from stackslim.share.recover import distill_cache, last_state_error, recover
from stackslim.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_recovery_brings_the_student_closer(tone_data):
    teacher = load_encoder("random:wav2vec2")
    task = prepare_task(str(tone_data), "word")
    idx = task.splits["train"]
    train = distill_cache(teacher, task.dataset.batches(idx, 8), states="all", progress=False)
    val = task.cache(teacher, "validation", progress=False)
    head, _ = fit_head(train, task.y("train"), val, task.y("validation"), task.num_classes,
                       TrainConfig(epochs=3), progress=False)
    student = to_residual(teacher, groups=4, rank=1, diag=False)
    before = last_state_error(student, train)
    cfg = TrainConfig(epochs=3, batch_size=4, lr=1e-3, weight_decay=0.0)
    log = recover(student, train, cfg, states="all", progress=False)
    assert log.epochs_run == 3 and log.train.train_loss[-1] < log.train.train_loss[0]
    assert last_state_error(student, train) < 0.5 * before
    # with the teacher's head: task loss on top, the head stays frozen and is given back
    frozen = [p.detach().clone() for p in head.parameters()]
    initial = student_accuracy(student, head, val, task.y("validation"))  # the converted student
    log = recover(student, train, TrainConfig(epochs=1, batch_size=4, lr=1e-4), states="last",
                  head=head, labels=task.y("train"), val_cache=val, val_labels=task.y("validation"),
                  task_weight=0.1, progress=False)
    assert len(log.train.val_score) == 1 and log.initial_score == initial
    assert [p["accuracy"] for p in log.val_parts] == [log.initial_score, *log.train.val_score]
    assert all(torch.equal(a, b) for a, b in zip(frozen, head.parameters()))
    assert all(p.requires_grad for p in head.parameters())
    best = max(log.initial_score, log.train.val_score[0])
    assert student_accuracy(student, head, val, task.y("validation")) == best
    # without a head the score is −(last-state error): the converted student's first
    err0 = last_state_error(student, val)
    log = recover(student, train, TrainConfig(epochs=1, batch_size=4, lr=1e-3), states="last",
                  val_cache=val, progress=False)
    assert log.initial_score == -err0 and log.val_parts[0] == {"last_error": err0}
    assert last_state_error(student, val) == min(err0, -log.train.val_score[0])


def test_share_command_end_to_end(tone_data, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["share", "random:whisper", str(tone_data), "--out", str(out), "--group", "2",
               "--rank", "4", "--no-diag", "--share-norms", "--epochs", "1",
               "--head-epochs", "2", "--latency-clips", "2", "--batch-size", "8"])
    assert rc == 0
    res = json.loads((out / "share.json").read_text())
    assert res["groups"] == [[0, 1], [2, 3]]
    assert res["config"]["diag"] is False and res["config"]["share_norms"] is True
    assert 0 < res["size"]["stack_ratio"] < 1 and res["disk"]["encoder_bytes_ratio"] < 1
    assert {"accuracy", "last_state_error"} <= set(res["before"]) and res["after"] is not None
    assert res["recovery"]["epochs_run"] == 1
    assert set(res["latency"]) == {"dense", "factored", "materialized"}
    assert set(res["conversion"]["summary"]) == {"self_attn.q_proj", "self_attn.k_proj",
                                                 "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2"}
    assert (out / "config.json").is_file()
    assert load_shared(out / "model").groups == [[0, 1], [2, 3]]
    assert "after recovery" in capsys.readouterr().out


def test_share_command_bad_input(tone_data, tmp_path, capsys):
    rc = main(["share", "random:whisper", str(tone_data), "--out", str(tmp_path / "x"),
               "--rank", "100", "--epochs", "0", "--head-epochs", "1"])
    assert rc == 2
    assert "rank 100" in capsys.readouterr().err
    torch.set_grad_enabled(True)


def test_share_speaker_task(tone_data, tmp_path):
    """--task speaker: the teacher's head and the accuracies are over speakers."""
    out = tmp_path / "spk"
    assert main(["share", "random:wav2vec2", str(tone_data), "--out", str(out), "--task", "speaker",
                 "--group", "2", "--rank", "4", "--epochs", "1", "--head-epochs", "5",
                 "--latency-clips", "0", "--batch-size", "8"]) == 0
    res = json.loads((out / "share.json").read_text())
    task = prepare_task(str(tone_data), "speaker", seed=0)
    assert res["task"] == json.loads(json.dumps(task.describe())) and res["task"]["classes"] == 4
    assert res["config"]["task"] == "speaker"
    words = {p: {task.dataset.clips[i].label for i in idx} for p, idx in task.splits.items()}
    assert words["train"].isdisjoint(words["test"])
    # the teacher's accuracy: a speaker head on the teacher's states of words it never saw
    teacher = load_encoder("random:wav2vec2")
    train, val = (task.cache(teacher, p, progress=False) for p in ("train", "validation"))
    head, _ = fit_head(train, task.y("train"), val, task.y("validation"), task.num_classes,
                       TrainConfig(epochs=5, seed=0), progress=False)
    from stackslim.heads import accuracy

    test = task.cache(teacher, "test", progress=False)
    assert res["teacher"]["accuracy"] == pytest.approx(accuracy(head, test, task.y("test")))
