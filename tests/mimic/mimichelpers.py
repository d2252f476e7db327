"""Helpers for the mimic tests (imported as `mimichelpers`)."""
from __future__ import annotations

import torch

from stackslim.mimic import MimicModel


def saved_model_accuracy(model_dir, data, task: str = "word") -> float:
    """Reference: accuracy of the saved mimic model, run on the test split's waves in this
    process (the split `mimic` makes with its default seed)."""
    from stackslim.heads import prepare_task

    task = prepare_task(data, task, seed=0)
    model = MimicModel.load(model_dir)
    waves = [task.dataset.load(i) for i in task.splits["test"]]
    with torch.no_grad():
        pred = model(waves).argmax(-1)
    return float((pred == task.y("test")).float().mean())
