"""A task on a data set: classes, group-disjoint splits, and cached encoder states per split.

    task = prepare_task("synth-commands", "word", seed=0, max_clips=2000)
    task.splits["train"]         # data set indices
    task.y("test")               # (N,) int64 class ids in the split's order
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..data import AudioDataset, DataError, load_dataset, split, task_labels
from ..models.base import Encoder
from ..models.cache import StateCache, cache_states


@dataclass
class Task:
    dataset: AudioDataset
    task: str
    names: list[str]  # class names, ids index into it
    ids: np.ndarray  # (N,) class id of every clip of the data set
    splits: dict[str, list[int]]  # train / validation / test → data set indices
    split_kind: str = ""  # "by speaker", "by label" or "random (stratified by label)"

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def chance(self) -> float:
        """Accuracy of always answering the most frequent test class."""
        y = self.ids[self.splits["test"]]
        return float(np.bincount(y).max() / len(y)) if len(y) else 0.0

    def y(self, part: str) -> torch.Tensor:
        return torch.from_numpy(self.ids[self.splits[part]])

    def cache(self, enc: Encoder, part: str, which: Sequence[int] = (0, -1),
              batch_size: int = 16, progress: bool = True) -> StateCache:
        """States `which` of every clip of split `part`, in the split's order."""
        idx = self.splits[part]
        return cache_states(enc, self.dataset.batches(idx, batch_size), which=which,
                            total=len(idx), desc=f"encoding {part}", progress=progress)

    def describe(self) -> dict:
        return {"data": self.dataset.name, "task": self.task, "classes": self.num_classes,
                "clips": {k: len(v) for k, v in self.splits.items()}, "split": self.split_kind,
                "chance": self.chance}


def prepare_task(data: str | AudioDataset, task: str = "word", seed: int = 0,
                 max_clips: int | None = None,
                 fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> Task:
    """Load `data`, pick the task's classes and make group-disjoint splits.

    `max_clips` keeps a seeded random subset of each split (proportionally), for quick runs.
    A class must have clips in train; every split must be non-empty (DataError otherwise).
    Splits keep speakers apart when every clip has one, else they are random, with a warning;
    `Task.split_kind` (and `describe()`, in every results file) says which.
    """
    ds = data if isinstance(data, AudioDataset) else load_dataset(data)
    labels = task_labels(ds, task)
    if len(labels.names) < 2:
        raise DataError(f"{ds.name}: task {task!r} has {len(labels.names)} class; need at least 2")
    parts = split(ds, by=labels.group_by, fractions=fractions, seed=seed, target=labels.column)
    if max_clips is not None and max_clips < len(ds):
        rng = np.random.default_rng(seed)
        frac = max_clips / len(ds)
        parts = {k: sorted(rng.choice(v, size=max(1, int(round(len(v) * frac))), replace=False).tolist())
                 for k, v in parts.items()}
    return Task(dataset=ds, task=task, names=labels.names, ids=labels.ids, splits=parts,
                split_kind=labels.split_kind)
