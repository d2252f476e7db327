"""Compute hidden states of a data set once and keep them: heads, pruning, mimic and share
all train or evaluate on states that do not change between epochs.

Memory: one (T_i, D) float32 tensor per clip and kept state (whisper-base, 1 s clips:
50 × 512 × 4 B = 100 kB per clip and state).

Under torchrun the encoding is sharded: rank r encodes batches r, r + W, ... of the stream
(`ShardedBatches`) and the ranks then exchange their states, so every rank holds the whole
cache, in the stream's order, equal to the one-process cache. Every rank must make the call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import runtime
from .base import Encoder

Batches = Iterable[tuple[list[np.ndarray], list[int]]]


def pad_frames(seqs: Sequence[torch.Tensor]) -> torch.Tensor:
    """(T_i, D) tensors → zero-padded (B, max T_i, D)."""
    out = seqs[0].new_zeros(len(seqs), max(s.shape[0] for s in seqs), seqs[0].shape[1])
    for b, s in enumerate(seqs):
        out[b, : s.shape[0]] = s
    return out


@dataclass
class StateCache:
    """Per-clip hidden states of some clips.

    Attributes:
        states: hidden-state index (0..L) → list of (T_i, D) tensors, one per clip.
        lengths: (N,) valid frames of each clip.
        indices: the data set index of each clip.
    """

    states: dict[int, list[torch.Tensor]]
    lengths: torch.Tensor
    indices: list[int]

    def __len__(self) -> int:
        return len(self.indices)

    def batch(self, which: int, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded (B, T, D) batch of state `which` for cache rows `rows`, and lengths (B,)."""
        seqs = [self.states[which][r] for r in rows]
        return pad_frames(seqs), torch.tensor([s.shape[0] for s in seqs])

    def pooled(self, which: int) -> torch.Tensor:
        """(N, D) mean over valid frames of state `which`, every clip."""
        return torch.stack([s.mean(0) for s in self.states[which]])

    def as_pooled(self, which: int = -1) -> "StateCache":
        """State `which` as 1-frame clips holding each clip's mean frame (`pooled_cache`);
        the cache itself when it already is one."""
        if bool((self.lengths == 1).all()):
            return self
        return pooled_cache(self.pooled(which), key=which, indices=self.indices)


def concat_caches(*caches: StateCache) -> StateCache:
    """One cache with the clips of all `caches` in order (the state keys they all share)."""
    keys = set(caches[0].states)
    for c in caches[1:]:
        keys &= set(c.states)
    return StateCache(states={k: [s for c in caches for s in c.states[k]] for k in caches[0].states
                              if k in keys},
                      lengths=torch.cat([c.lengths for c in caches]),
                      indices=[i for c in caches for i in c.indices])


def chunk_cache(cache: StateCache, max_frames: int) -> StateCache:
    """Cut every clip longer than `max_frames` into consecutive windows of at most `max_frames`.

    Every state of a clip is cut at the same frames, so a window's inputs still line up with
    its targets: clip (T, D) → windows [0, W), [W, 2W), ... (the last one shorter). A window's
    ``indices`` entry is its clip's. Mixing long unlabelled clips (whisper-base on sentences:
    100-335 frames) with 1 s task clips (50 frames) in one batch would pad every clip to the
    longest one, several times the compute; cut to the task's length, batches stay dense.
    (A window's targets were computed with the whole clip as context.)
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    keys = list(cache.states)
    states: dict = {k: [] for k in keys}
    lengths: list[int] = []
    indices: list[int] = []
    for r, T in enumerate(cache.lengths.tolist()):
        for s in range(0, T, max_frames):
            for k in keys:
                states[k].append(cache.states[k][r][s : s + max_frames])
            lengths.append(min(max_frames, T - s))
            indices.append(cache.indices[r])
    return StateCache(states=states, lengths=torch.tensor(lengths, dtype=torch.long), indices=indices)


def append_windows(cache: StateCache, extra: StateCache) -> StateCache:
    """`cache`, then the clips of `extra` cut to `cache`'s longest clip (`chunk_cache`): e.g. a
    task's train split followed by unlabelled clips, for distillation on both."""
    return concat_caches(cache, chunk_cache(extra, int(cache.lengths.max())))


def pooled_cache(pooled: torch.Tensor, key: int = -1, indices: Sequence[int] | None = None) -> StateCache:
    """(N, D) pooled vectors as a StateCache of 1-frame clips under `key`.

    The paper's head is affine up to its mean over frames, so
    head(h, n) = W_c (W_p mean(h) + b_p) + b_c: training or evaluating it on these 1-frame clips
    gives the same logits as on the frames (to float rounding) at 1/T of the cost.
    """
    return StateCache(states={key: list(pooled[:, None, :])}, lengths=torch.ones(len(pooled), dtype=torch.long),
                      indices=list(range(len(pooled))) if indices is None else list(indices))


class ShardedBatches:
    """This rank's batches of a `(waves, indices)` stream: batch b goes to rank b mod W.

        mine = ShardedBatches(dataset.batches(idx, 16))
        for waves, idx in mine: ...           # only this rank's batches are encoded
        cache = mine.gather(local_cache)      # every rank: all clips, in the stream's order

    One process: every batch, and `gather` returns the cache as it is. (The other ranks'
    audio is still read by the stream, a small cost next to the forward pass.)
    """

    def __init__(self, batches: Batches):
        self.batches = batches
        self.sizes: list[int] = []  # clips in each of this rank's batches, in order

    def __iter__(self):
        r, w = runtime.rank(), runtime.world_size()
        for b, (waves, idx) in enumerate(self.batches):
            if b % w == r:
                self.sizes.append(len(idx))
                yield waves, idx

    def gather(self, cache: StateCache) -> StateCache:
        """Every rank's clips of this stream in one cache (on the CPU), in stream order."""
        if not runtime.is_distributed():
            return cache
        local = (self.sizes, {k: [t.cpu() for t in v] for k, v in cache.states.items()},
                 cache.lengths.cpu(), cache.indices)
        parts = runtime.all_gather_objects(local)
        starts = [np.cumsum([0, *p[0]]).tolist() for p in parts]  # first row of each local batch
        w = len(parts)
        order: list[tuple[int, int]] = []  # (rank, row) in stream order
        for b in range(sum(len(p[0]) for p in parts)):
            r, j = b % w, b // w
            order += [(r, i) for i in range(starts[r][j], starts[r][j + 1])]
        states = {k: [parts[r][1][k][i] for r, i in order] for k in cache.states}
        lengths = torch.stack([parts[r][2][i] for r, i in order]) if order else cache.lengths
        return StateCache(states=states, lengths=lengths, indices=[parts[r][3][i] for r, i in order])


def cache_states(enc: Encoder, waves: Batches,
                 which: Sequence[int] = (0, -1), total: int | None = None,
                 desc: str = "encoding", final_norm: bool = True,
                 progress: bool = True) -> StateCache:
    """Run `enc` over batches `(waves, indices)` (e.g. `AudioDataset.batches`) and keep the
    states listed in `which` (negative = from the end) for every clip, unpadded."""
    L = enc.num_layers
    waves = ShardedBatches(waves)
    keep = sorted({w % (L + 1) for w in which})
    states: dict[int, list[torch.Tensor]] = {w: [] for w in keep}
    lengths: list[int] = []
    indices: list[int] = []
    bar = tqdm(total=total and -(-total // runtime.world_size()), desc=desc, unit="clip",
               disable=not progress or not runtime.is_main(), leave=False)
    for batch_waves, batch_idx in waves:
        hs = enc.hidden_states(batch_waves, final_norm=final_norm)
        for w in keep:
            s = hs.states[w].float().cpu()  # caches live on the CPU, whatever device encoded
            for b, n in enumerate(hs.lengths.tolist()):
                states[w].append(s[b, :n].clone())
        lengths += hs.lengths.tolist()
        indices += list(batch_idx)
        bar.update(len(batch_idx))
    bar.close()
    cache = waves.gather(StateCache(states=states, lengths=torch.tensor(lengths), indices=indices))
    # negative keys too, so cache.states[-1] works as in HiddenStates
    for w in list(which):
        cache.states[w] = cache.states[w % (L + 1)]
    return cache
