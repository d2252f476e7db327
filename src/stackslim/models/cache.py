"""Compute hidden states of a data set once and keep them: heads, pruning, mimic and share
all train or evaluate on states that do not change between epochs.

Memory: one (T_i, D) float32 tensor per clip and kept state (whisper-base, 1 s clips:
50 × 512 × 4 B = 100 kB per clip and state).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .base import Encoder


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
        lengths = torch.tensor([s.shape[0] for s in seqs])
        out = seqs[0].new_zeros(len(seqs), int(lengths.max()), seqs[0].shape[1])
        for b, s in enumerate(seqs):
            out[b, : s.shape[0]] = s
        return out, lengths

    def pooled(self, which: int) -> torch.Tensor:
        """(N, D) mean over valid frames of state `which`, every clip."""
        return torch.stack([s.mean(0) for s in self.states[which]])


def cache_states(enc: Encoder, waves: Iterable[tuple[list[np.ndarray], list[int]]],
                 which: Sequence[int] = (0, -1), total: int | None = None,
                 desc: str = "encoding", final_norm: bool = True,
                 progress: bool = True) -> StateCache:
    """Run `enc` over batches `(waves, indices)` (e.g. `AudioDataset.batches`) and keep the
    states listed in `which` (negative = from the end) for every clip, unpadded."""
    L = enc.num_layers
    keep = sorted({w % (L + 1) for w in which})
    states: dict[int, list[torch.Tensor]] = {w: [] for w in keep}
    lengths: list[int] = []
    indices: list[int] = []
    bar = tqdm(total=total, desc=desc, unit="clip", disable=not progress, leave=False)
    for batch_waves, batch_idx in waves:
        hs = enc.hidden_states(batch_waves, final_norm=final_norm)
        for w in keep:
            s = hs.states[w].float()
            for b, n in enumerate(hs.lengths.tolist()):
                states[w].append(s[b, :n].clone())
        lengths += hs.lengths.tolist()
        indices += list(batch_idx)
        bar.update(len(batch_idx))
    bar.close()
    # negative keys too, so cache.states[-1] works as in HiddenStates
    for w in list(which):
        states[w] = states[w % (L + 1)]
    return StateCache(states=states, lengths=torch.tensor(lengths), indices=indices)
