"""What mimic trains on, computed once: front-end features and the teacher's target states.

For every clip, one teacher forward gives
- ``features``: the front end's output before positional encoding (what the mimic layers read;
  the front end is frozen, so this never changes during training);
- ``boundary``: hidden state b, the end of the first measured block (2 mimic layers only);
- ``last``: hidden state L after the family's final norm (what the teacher's head reads).

They are kept per clip, unpadded, in a `StateCache` under those three string keys.
Memory: 2-3 × T × D × 4 bytes per clip (whisper-base, 1 s: 200-300 kB).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import runtime
from ..models.base import Encoder
from ..models.cache import ShardedBatches, StateCache, append_windows, chunk_cache
from ..models.memo import features_and_states
from .config import MimicError

FEATURES, BOUNDARY, LAST = "features", "boundary", "last"


def check_encoder(enc: Encoder) -> None:
    """The encoder must expose its front end before positions (`features`, `add_positions`)."""
    if not (hasattr(enc, "features") and hasattr(enc, "add_positions")):
        raise MimicError(f"{enc.name}: family {enc.family} has no pre-positional front-end output")


def cache_targets(enc: Encoder, batches: Iterable[tuple[list[np.ndarray], list[int]]],
                  boundary: int | None = None, total: int | None = None,
                  desc: str = "teacher states", progress: bool = True,
                  also: Sequence[int] = ()) -> StateCache:
    """Features, (boundary state) and last state of every clip of `batches`, in one pass.

    Args:
        enc: the teacher encoder.
        batches: ``(waves, indices)`` batches, e.g. `AudioDataset.batches`.
        boundary: hidden state index (1..L-1) to keep as the ``boundary`` target, or None.
        also: more hidden states (1..L-1, raw outputs of their layer) to keep under their
            integer index, e.g. to evaluate pruned stacks on the same pass.
    """
    check_encoder(enc)
    L = enc.num_layers
    if boundary is not None and not 1 <= boundary <= L - 1:
        raise MimicError(f"boundary hidden state must lie in 1..{L - 1}, got {boundary}")
    also = sorted(set(int(i) for i in also))
    if any(not 1 <= i <= L - 1 for i in also):
        raise MimicError(f"extra hidden states must lie in 1..{L - 1}, got {also}")
    keys = [FEATURES, LAST] + ([BOUNDARY] if boundary is not None else []) + also
    states: dict = {k: [] for k in keys}
    lengths: list[int] = []
    indices: list[int] = []
    enc.model.eval()
    batches = ShardedBatches(batches)  # under torchrun: this rank's batches, gathered below
    bar = tqdm(total=total, desc=desc, unit="clip", disable=not progress or not runtime.is_main(),
               leave=False)
    with torch.inference_mode():
        for waves, idx in batches:
            h, hs = features_and_states(enc, waves)  # (B, T, D) before positions; states 0..L
            n = hs.lengths
            got = {FEATURES: h, LAST: hs.states[-1], **{i: hs.states[i] for i in also}}
            if boundary is not None:
                got[BOUNDARY] = hs.states[boundary]
            for k, s in got.items():
                s = s.float().cpu()  # caches live on the CPU, whatever device encoded
                for b, t in enumerate(n.tolist()):
                    states[k].append(s[b, :t].clone())
            lengths += n.tolist()
            indices += list(idx)
            bar.update(len(idx))
    bar.close()
    return batches.gather(StateCache(states=states, lengths=torch.tensor(lengths, dtype=torch.long),
                                     indices=indices))


def default_boundary(num_layers: int) -> int:
    """round(2L/3), clamped to 1..L-1: the paper's typical end of the first block."""
    return min(max(1, round(2 * num_layers / 3)), num_layers - 1)


def find_boundary(enc: Encoder, batches: Iterable[tuple[list[np.ndarray], list[int]]],
                  progress: bool = True) -> tuple[int, dict]:
    """Last hidden state of the first block of `enc`'s stack, measured on `batches`.

    Linear CKA between every pair of hidden states (frames, minibatches of 128 frames, the
    paper's setting), then `stackslim.similarity.find_blocks`. Falls back to `default_boundary`
    when one block is found.

    Returns:
        (boundary, info): info holds the blocks, the CKA matrix and how the boundary was chosen.
    """
    from ..similarity import SimilarityEngine, find_blocks

    L = enc.num_layers
    if L < 2:
        raise MimicError(f"{enc.name} has {L} layer: 2 mimic layers need a stack of at least 2")
    eng = SimilarityEngine(num_states=L + 1, metrics=("cka",), view="frames",
                           estimator="minibatch", batch_size=128)
    for waves, _ in tqdm(batches, desc="finding blocks", unit="batch", disable=not progress,
                         leave=False):
        eng.update(enc.hidden_states(waves))
    S = eng.result().matrix("cka")
    blocks = find_blocks(S)
    if blocks.num_blocks >= 2:
        b, how = blocks.boundaries[0], "end of the first block (linear CKA, frames, minibatch 128)"
    else:
        b, how = default_boundary(L), "one block found: fallback round(2L/3)"
    return b, {"boundary": b, "how": how, "blocks": blocks.to_json(), "cka": S.tolist()}


@dataclass
class MimicData:
    """Cached teacher targets of a task's splits (+ unlabelled clips for stage 1).

    Attributes:
        train, validation, test: caches in each split's order.
        y: split → (N,) class ids.
        unlabelled: extra clips for stage 1 only, or None.
        boundary: the hidden state the first of 2 mimic layers targets, or None.
        num_layers: L of the teacher.
    """

    train: StateCache
    validation: StateCache
    test: StateCache
    y: dict[str, torch.Tensor]
    unlabelled: StateCache | None
    boundary: int | None
    num_layers: int

    def unlabelled_windows(self) -> StateCache | None:
        """The unlabelled clips cut to the train split's longest clip (`chunk_cache`), or None."""
        if self.unlabelled is None:
            return None
        return chunk_cache(self.unlabelled, int(self.train.lengths.max()))

    def stage1_rows(self) -> StateCache:
        """Everything stage 1 trains on: the train split, then the unlabelled windows."""
        return self.train if self.unlabelled is None else append_windows(self.train, self.unlabelled)

    def describe(self) -> dict:
        return {"train": len(self.train), "validation": len(self.validation),
                "test": len(self.test),
                "unlabelled": 0 if self.unlabelled is None else len(self.unlabelled),
                "train_frames": int(self.train.lengths.sum()),
                "stage1_frames": int(self.train.lengths.sum()) + (
                    0 if self.unlabelled is None else int(self.unlabelled.lengths.sum())),
                "boundary": self.boundary, "num_layers": self.num_layers}


def build_data(enc: Encoder, task, boundary: int | None = None, unlabelled=None,
               max_unlabelled: int = 0, batch_size: int = 16, seed: int = 0,
               progress: bool = True) -> MimicData:
    """Cache the teacher's targets for every split of `task` (`heads.Task`) and `unlabelled`.

    Args:
        unlabelled: an `AudioDataset` (or data set spec) whose clips join stage 1, or None.
        max_unlabelled: a seeded subset of at most this many unlabelled clips (0: all).
    """
    parts = {}
    for part in ("train", "validation", "test"):
        idx = task.splits[part]
        parts[part] = cache_targets(enc, task.dataset.batches(idx, batch_size), boundary,
                                    total=len(idx), desc=f"teacher states ({part})",
                                    progress=progress)
    extra = None
    if unlabelled is not None:
        from ..data import unlabelled_clips

        ds, idx = unlabelled_clips(unlabelled, max_unlabelled, seed)
        extra = cache_targets(enc, ds.batches(idx, batch_size), boundary, total=len(idx),
                              desc="teacher states (unlabelled)", progress=progress)
    return MimicData(train=parts["train"], validation=parts["validation"], test=parts["test"],
                     y={p: task.y(p) for p in parts}, unlabelled=extra, boundary=boundary,
                     num_layers=enc.num_layers)
