"""Unlabelled clips for distillation (`--unlabelled SPEC --max-unlabelled N` of mimic and share).

    ds, idx = unlabelled_clips("synth-sentences", max_clips=500, seed=0)
    for waves, rows in ds.batches(idx, 16): ...

Their labels are never read: any data set spec works (a folder, a CSV manifest, a synthetic
set), and the clips may be of any length (callers cut long ones into windows, see
`stackslim.models.cache.chunk_cache`). Clips that a ``split`` column holds out for evaluation
(eval, test, validation) are left out: synth-sentences' eval clips are the WER set of `share`,
its ``split=pool`` clips are the ones made for distillation.

Several sets join with ``+`` (``synth-translate+synth-sentences``): at most `max_clips` of each
(a seeded subset per set), their clips interleaved in turn (one of the first set, one of the
second, ...) so that any run of rows, the held-out tail included, holds clips of every set.
"""
from __future__ import annotations

import os

import numpy as np

from .datasets import AudioDataset, DataError, load_dataset

# help of the two options, one wording for every command that has them
UNLABELLED_HELP = ("extra audio distilled on without labels: a data set spec (a folder, a CSV "
                   "manifest, synth-sentences or synth-translate; several joined by '+') whose "
                   "clips marked split=eval|test|validation are left out; long clips are cut "
                   "into windows of the train split's longest clip")
MAX_UNLABELLED_HELP = ("use at most this many unlabelled clips (of each '+'-joined set), a seeded "
                       "subset (0: all)")
HELD_OUT = ("eval", "test", "validation")  # values of a `split` column never distilled on


def unlabelled_specs(data: str | os.PathLike | AudioDataset) -> list:
    """The data set specs of an --unlabelled value: ``A+B`` → [A, B]; an existing path, a
    loaded data set, or a spec without ``+`` is one."""
    if isinstance(data, AudioDataset) or "+" not in str(data) or os.path.exists(data):
        return [data]
    return str(data).split("+")


def unlabelled_clips(data: str | os.PathLike | AudioDataset, max_clips: int = 0,
                     seed: int = 0) -> tuple[AudioDataset, list[int]]:
    """The data set of `data` and the indices of the clips to use: all of them but the held-out
    ones (`HELD_OUT`), or a seeded random subset of `max_clips` of those (sorted) when there are
    more. ``A+B``: both sets' clips, at most `max_clips` of each, interleaved (module docstring).

    Raises:
        DataError: `data` is not a usable data set or holds only held-out clips (the message
            names it and the option), or `max_clips` < 0.
    """
    if max_clips < 0:
        raise DataError(f"--max-unlabelled must be >= 0, got {max_clips}")
    specs = unlabelled_specs(data)
    parts = [_one_set(spec, max_clips, seed) for spec in specs]
    if len(parts) == 1:
        return parts[0]
    order = []  # (part, index) in turn: one clip of each set while it has clips left
    for k in range(max(len(idx) for _, idx in parts)):
        order += [(p, idx[k]) for p, (_, idx) in enumerate(parts) if k < len(idx)]
    ds = AudioDataset([parts[p][0].clips[i] for p, i in order],
                      name="+".join(d.name for d, _ in parts))
    return ds, list(range(len(order)))


def _one_set(data: str | os.PathLike | AudioDataset, max_clips: int, seed: int
             ) -> tuple[AudioDataset, list[int]]:
    """`unlabelled_clips` of one data set."""
    if isinstance(data, AudioDataset):
        ds = data
    else:
        if not str(data).strip():
            raise DataError("--unlabelled: an empty data set spec (check the '+' joins)")
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
