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
