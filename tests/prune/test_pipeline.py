"""Strategies, curves and the teacher on a tiny task (random encoder, tones)."""
from __future__ import annotations

import json

import pytest
import torch

from stackslim.heads import prepare_task
from stackslim.models import load_encoder
from stackslim.prune import (ALL_STRATEGIES, STRATEGIES, Curve, PruneConfig, PruneError, run_pruning)
from stackslim.train import TrainConfig

FAST = dict(train=TrainConfig(epochs=20, lr=1e-3, batch_size=16, patience=10), refit_epochs=5)


@pytest.fixture(scope="module")
def pruned(tones):
    enc = load_encoder("random:hubert")
    task = prepare_task(tones, "word", seed=0)
    cfg = PruneConfig(strategies=ALL_STRATEGIES, **FAST)
    result, teacher_enc, evaluator = run_pruning(enc, task, cfg, progress=False)
    return result, enc, evaluator


def test_registry_is_complete():
    assert set(STRATEGIES) == set(ALL_STRATEGIES)


def test_orders_are_permutations_of_the_deletable_layers(pruned):
    result, enc, _ = pruned
    L = enc.num_layers
    assert [s.name for s in result.strategies] == list(ALL_STRATEGIES)
    for s in result.strategies:
        assert sorted(s.order) == list(range(1, L)), s.name  # 0-based: layer 1 (index 0) stays
    orders = {s.name: s.order for s in result.strategies}
    assert orders["forward"] == [1, 2, 3]  # the paper's layers 2, 3, 4; layer 1 never deleted
    assert orders["backward"] == [3, 2, 1]
    bi = result.strategies[2].info["block_influence"]
    assert orders["bi"] == sorted(range(1, L), key=lambda i: (bi[str(i + 1)], i))


def test_curves_start_at_the_teacher(pruned):
    result, enc, _ = pruned
    t = result.teacher
    for s in result.strategies:
        for variant, c in s.curves.items():
            assert len(c.test_accuracy) == len(c.val_accuracy) == enc.num_layers
            assert c.test_accuracy[0] == t.test_accuracy, (s.name, variant)
            assert c.val_accuracy[0] == t.val_accuracy
            assert c.capacity()[0] == 1.0
            # the largest k (not the first drop) whose accuracy keeps 95% of the teacher's
            assert c.max_deletable(0.95) == max(k for k, a in enumerate(c.test_accuracy)
                                                if a >= 0.95 * t.test_accuracy)
            assert c.max_deletable(0.95, "validation") == max(
                k for k, a in enumerate(c.val_accuracy) if a >= 0.95 * t.val_accuracy)


def test_max_deletable_is_the_largest_k_that_keeps_the_threshold():
    c = Curve(order=[1, 2, 3], variant="no_refit", val_accuracy=[0.5, 0.5, 0.1, 0.1],
              test_accuracy=[0.8, 0.76, 0.5, 0.77])
    assert c.capacity() == pytest.approx([1.0, 0.95, 0.625, 0.9625])
    assert c.max_deletable(0.95) == 3  # k = 2 falls below, k = 3 is back above
    assert c.max_deletable(0.96) == 3 and c.max_deletable(0.97) == 0
    assert c.max_deletable(0.95, "validation") == 1


def test_same_deleted_set_same_point(pruned):
    result, _, evaluator = pruned
    # every order ends with all deletable layers gone: one point shared by all strategies
    last = {s.curves["no_refit"].test_accuracy[-1] for s in result.strategies}
    assert len(last) == 1
    assert evaluator.point([3, 1], "no_refit") == evaluator.point([1, 3], "no_refit")


def test_result_json_and_best(pruned):
    result, _, _ = pruned
    d = result.to_json()
    assert d["strategies"]["forward"]["order"] == [2, 3, 4]  # written 1-based
    assert d["strategies"]["forward"]["family"] == "paper" and d["strategies"]["greedy"]["family"] == "ours"
    assert set(d["summary"]) == {"no_refit", "refit"}
    b = d["best"]
    assert b["chosen_on"] == "validation" and 1 not in b["deleted_layers"]
    assert b["num_layers"] + len(b["deleted_layers"]) == 4


def test_max_deletable_and_capacity():
    c = Curve(order=[1, 2, 3], variant="no_refit", val_accuracy=[0.8, 0.8, 0.7, 0.4],
              test_accuracy=[0.8, 0.78, 0.6, 0.77])
    assert c.capacity() == pytest.approx([1.0, 0.975, 0.75, 0.9625])
    assert c.max_deletable(0.95) == 3  # the largest k that holds, even after a dip
    assert c.max_deletable(0.99) == 0
    assert c.max_deletable(0.95, "validation") == 1


@pytest.mark.parametrize("kw, match", [
    (dict(strategies=("forward", "sideways")), "unknown strategy 'sideways'"),
    (dict(threshold=0.0), r"threshold must lie in \(0, 1\]"),
    (dict(threshold=1.5), r"threshold must lie in \(0, 1\]"),
    (dict(strategies=()), "at least one strategy"),
    (dict(train=TrainConfig(epochs=0)), "epochs must be >= 1"),
    (dict(train=TrainConfig(max_minutes=-1)), "max_minutes must be >= 0"),
    (dict(finetune=True, finetune_epochs=0), "finetune_epochs must be >= 1"),
])
def test_bad_config(kw, match):
    with pytest.raises(PruneError, match=match):
        PruneConfig(**kw)


def test_finetuned_teacher_leaves_the_callers_encoder(tones):
    enc = load_encoder("random:whisper")
    before = enc.layers[1].fc1.weight.detach().clone()
    task = prepare_task(tones, "word", seed=0)
    cfg = PruneConfig(strategies=("forward", "greedy"), finetune=True, finetune_epochs=1,
                      finetune_lr=1e-3, refit=False, **FAST)
    result, teacher_enc, _ = run_pruning(enc, task, cfg, progress=False)
    assert torch.equal(enc.layers[1].fc1.weight, before)
    # LayerDrop (the default) may skip layer 2 in every step of one tiny epoch: layer 1 always runs
    assert not torch.equal(teacher_enc.layers[0].fc1.weight, enc.layers[0].fc1.weight)
    assert result.teacher.finetuned and result.teacher.finetune_log.epochs_run == 1
    for s in result.strategies:
        assert list(s.curves) == ["no_refit"]
        assert s.curves["no_refit"].test_accuracy[0] == result.teacher.test_accuracy


def test_the_models_own_head_is_the_teacher(tones, tones_dir, tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    from stackslim.heads import fit_head
    from stackslim.models import load_encoder as load
    from stackslim.models.random_configs import _W2V_COMMON
    from stackslim.prune import run as prune

    task = prepare_task(tones, "word", seed=0)
    names = ["extra"] + list(task.names)[::-1]  # the head knows one class more, in another order
    cfg = Wav2Vec2Config(**_W2V_COMMON, num_labels=len(names), classifier_proj_size=16,
                         id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    model = Wav2Vec2ForSequenceClassification(cfg).eval()
    model.save_pretrained(tmp_path / "cls")
    enc = load(tmp_path / "cls")  # train a head on it, then write it into the checkpoint
    caches = {p: task.cache(enc, p, progress=False) for p in ("train", "validation")}
    head, _ = fit_head(caches["train"], task.y("train"), caches["validation"], task.y("validation"),
                       task.num_classes, proj_size=16, progress=False)
    rows = [task.names.index(n) if n in task.names else 0 for n in names]
    with torch.no_grad():
        model.projector.load_state_dict(head.projector.state_dict())
        model.classifier.weight.copy_(head.classifier.weight[rows])
        model.classifier.bias.copy_(head.classifier.bias[rows])
    model.save_pretrained(tmp_path / "cls")
    pcfg = PruneConfig(strategies=("backward", "greedy"), refit=False, **FAST)
    result = prune(tmp_path / "cls", tones_dir, tmp_path / "out", pcfg, progress=False)
    assert result.teacher.own_head and result.teacher.head_log is None
    assert json.loads((tmp_path / "out" / "pruning.json").read_text())["teacher"]["head"] == "the model's own"
    from stackslim.heads import accuracy

    test = task.cache(enc, "test", progress=False)
    assert result.teacher.test_accuracy == pytest.approx(accuracy(head, test, task.y("test")), abs=1e-6)
    trained = prune(tmp_path / "cls", tones_dir, tmp_path / "out2",
                    PruneConfig(strategies=("backward",), refit=False, own_head=False, save_model=False, **FAST),
                    progress=False)
    assert not trained.teacher.own_head and trained.teacher.head_log.epochs_run > 0
