"""End-to-end fine-tuning of the stack and the head on cached hidden state 0."""
from __future__ import annotations

import torch

from stackslim.heads import fit_head, prepare_task
from stackslim.evaluate import stack_accuracy
from stackslim.heads.finetune import finetune
from stackslim.models import load_encoder
from stackslim.train import TrainConfig


def _setup(tones, family="random:hubert"):
    enc = load_encoder(family)
    task = prepare_task(tones, "word", seed=0)
    caches = {p: task.cache(enc, p, which=(0, -1), progress=False) for p in ("train", "validation")}
    head, _ = fit_head(caches["train"], task.y("train"), caches["validation"], task.y("validation"),
                       task.num_classes, TrainConfig(epochs=10), progress=False)
    return enc, task, caches, head


def test_finetune_trains_the_stack_not_the_front_end(tones):
    enc, task, caches, head = _setup(tones)
    layer0 = enc.layers[0].attention.q_proj.weight.detach().clone()
    front = enc.model.feature_extractor.conv_layers[0].conv.weight.detach().clone()
    log = finetune(enc, head, caches["train"], task.y("train"), caches["validation"], task.y("validation"),
                   TrainConfig(epochs=2, lr=1e-3, batch_size=8), progress=False)
    assert log.epochs_run == 2 and len(log.val_score) == 2
    assert not torch.equal(enc.layers[0].attention.q_proj.weight, layer0)
    assert torch.equal(enc.model.feature_extractor.conv_layers[0].conv.weight, front)
    # the best validation epoch is the one kept
    acc = stack_accuracy(enc, head, caches["validation"], task.y("validation"))
    assert acc == log.best_score


def test_stack_accuracy_matches_frozen_accuracy(tones):
    from stackslim.heads import accuracy

    enc, task, caches, head = _setup(tones, "random:whisper")
    want = accuracy(head, caches["validation"], task.y("validation"))
    assert stack_accuracy(enc, head, caches["validation"], task.y("validation")) == want


def test_time_budget_stops_fine_tuning(tones):
    enc, task, caches, head = _setup(tones)
    log = finetune(enc, head, caches["train"], task.y("train"), caches["validation"], task.y("validation"),
                   TrainConfig(epochs=50, lr=1e-4, batch_size=4, max_minutes=1e-4), progress=False)
    assert log.stopped_by == "time" and log.epochs_run == 1


def test_layerdrop_skips_layers_as_drawn(tones):
    """With LayerDrop p each layer but the first runs when its draw u ~ U(0, 1) is >= p: the
    logits are those of the model without the skipped layers."""
    from stackslim.heads.finetune import stack_logits

    enc, task, caches, head = _setup(tones)
    enc.eval()
    rows = list(range(6))
    x0, n = caches["train"].batch(0, rows)
    seen_kept = set()
    for seed in range(12):
        torch.manual_seed(seed)
        draws = [float(torch.rand(())) for _ in range(enc.num_layers - 1)]  # layers 1..L-1
        skipped = [i + 1 for i, u in enumerate(draws) if u < 0.5]
        torch.manual_seed(seed)
        with torch.no_grad():
            got = stack_logits(enc, head, caches["train"], rows, layerdrop=0.5)
            small = enc.without_layers(skipped) if skipped else enc
            want = head(small.stack_forward(x0, n, keep=False).states[-1], n)
        torch.testing.assert_close(got, want)
        seen_kept.add(enc.num_layers - len(skipped))
    assert len(seen_kept) >= 3  # the seeds drew different depths: layers were really skipped
    with torch.no_grad():
        full = head(enc.stack_forward(x0, n, keep=False).states[-1], n)
        assert torch.equal(stack_logits(enc, head, caches["train"], rows), full)  # p = 0: every layer


def test_finetune_with_layerdrop_runs_fewer_layers(tones, monkeypatch):
    enc, task, caches, head = _setup(tones)
    calls = []
    run_layer = enc.run_layer
    monkeypatch.setattr(enc, "run_layer", lambda i, h, ctx: calls.append(i) or run_layer(i, h, ctx))
    cfg = TrainConfig(epochs=2, lr=1e-3, batch_size=8)
    finetune(enc, head, caches["train"], task.y("train"), caches["validation"], task.y("validation"),
             cfg, layerdrop=0.5, progress=False)
    steps = 2 * -(-len(caches["train"]) // 8)  # training forwards: 2 epochs of batches of 8
    count = [calls.count(i) for i in range(enc.num_layers)]
    val_forwards = count[0] - steps  # layer 0 runs in every forward, validation runs them all
    assert val_forwards > 0
    trained = [c - val_forwards for c in count[1:]]  # training forwards that ran layer i
    assert all(0 < t < steps for t in trained), (trained, steps)
    assert sum(trained) < 0.8 * steps * (enc.num_layers - 1)  # about half skipped
