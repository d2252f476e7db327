"""`evaluate.stack_accuracy`: the one accuracy-from-cached-state-0 loop (fine-tuning, recovery,
share's before/after, the study)."""
from __future__ import annotations

import pytest
import torch

from stackslim.evaluate import stack_accuracy
from stackslim.heads import accuracy, fit_head, prepare_task
from stackslim.models import load_encoder
from stackslim.share import to_residual
from stackslim.train import TrainConfig


@pytest.fixture(scope="module")
def setup(tone_data):
    enc = load_encoder("random:wav2vec2")
    task = prepare_task(str(tone_data), "word", seed=0)
    caches = {p: task.cache(enc, p, which=(0, -1), progress=False) for p in ("train", "validation")}
    head, _ = fit_head(caches["train"], task.y("train"), caches["validation"], task.y("validation"),
                       task.num_classes, TrainConfig(epochs=5), progress=False)
    return enc, task, caches, head


def test_the_teacher_stack_gives_the_frozen_accuracy(setup):
    enc, task, caches, head = setup
    y = task.y("validation")
    assert stack_accuracy(enc, head, caches["validation"], y) == accuracy(head, caches["validation"], y)
    assert stack_accuracy(enc, head, caches["validation"], y, batch_size=3) == accuracy(head, caches["validation"], y)


def test_a_student_is_scored_in_eval_mode_and_given_back(setup):
    enc, task, caches, head = setup
    student = to_residual(enc, groups=2, rank=2)
    cache, y = caches["validation"], task.y("validation")
    student.train()
    acc = stack_accuracy(student, head, cache, y)
    assert student.training and not head.training  # the student's mode is given back
    student.eval()
    with torch.no_grad():  # what share's own loop computed: hits / clips
        x0, n = cache.batch(0, list(range(len(cache))))
        pred = head(student.stack_forward(x0, n, final_norm=True, keep=False).states[-1], n).argmax(-1)
    assert acc == pytest.approx(int((pred == y).sum()) / len(cache), abs=1e-6)
    assert stack_accuracy(student, head, cache, y) == acc  # dropout off: the same every time
