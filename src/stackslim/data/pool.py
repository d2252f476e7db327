"""Unlabelled clips for distillation (`--unlabelled SPEC --max-unlabelled N` of mimic and share).

    ds, idx = unlabelled_clips("synth-sentences", max_clips=500, seed=0)
    for waves, rows in ds.batches(idx, 16): ...

Their labels are never read: any data set spec works (a folder, a CSV manifest, a synthetic
set), and the clips may be of any length (callers cut long ones into windows, see
`stackslim.models.cache.chunk_cache`). Clips that a ``split`` column holds out for evaluation
(eval, test, validation) are left out: synth-sentences' eval clips are the WER set of `share`,
its ``split=pool`` clips are the ones made for distillation.
"""
from __future__ import annotations

import os

import numpy as np

from .datasets import AudioDataset, DataError, load_dataset

# help of the two options, one wording for every command that has them
UNLABELLED_HELP = ("extra audio distilled on without labels: a data set spec (a folder, a CSV "
                   "manifest or synth-sentences) whose clips marked split=eval|test|validation "
                   "are left out; long clips are cut into windows of the train split's longest "
                   "clip")
MAX_UNLABELLED_HELP = "use at most this many unlabelled clips, a seeded subset (0: all)"
HELD_OUT = ("eval", "test", "validation")  # values of a `split` column never distilled on


def unlabelled_clips(data: str | os.PathLike | AudioDataset, max_clips: int = 0,
                     seed: int = 0) -> tuple[AudioDataset, list[int]]:
    """The data set of `data` and the indices of the clips to use: all of them but the held-out
    ones (`HELD_OUT`), or a seeded random subset of `max_clips` of those (sorted) when there are
    more.

    Raises:
        DataError: `data` is not a usable data set or holds only held-out clips (the message
            names it and the option), or `max_clips` < 0.
    """
    if max_clips < 0:
        raise DataError(f"--max-unlabelled must be >= 0, got {max_clips}")
    if isinstance(data, AudioDataset):
        ds = data
    else:
        try:
            ds = load_dataset(data)
        except DataError as e:  # say which option: DATA is a data set spec too
            raise DataError(f"--unlabelled {e}") from None
    idx = [i for i, c in enumerate(ds.clips) if c.get("split") not in HELD_OUT]
    if not idx:
        raise DataError(f"--unlabelled {ds.name}: every clip is held out for evaluation "
                        f"(split column: {', '.join(HELD_OUT)})")
    if max_clips and max_clips < len(idx):
        idx = sorted(np.random.default_rng(seed).choice(idx, max_clips, replace=False).tolist())
    return ds, idx
