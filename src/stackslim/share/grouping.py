"""Which layers share one weight: K adjacent layers, the measured blocks, or an explicit list.

Groups are lists of 0-based layer indices that together cover every layer exactly once.

- ``K`` (int): the paper's grouping, runs of K adjacent layers from the first
  (L=12, K=3 → [0,1,2] [3,4,5] [6,7,8] [9,10,11]; the last run is shorter when K ∤ L).
- ``"blocks"``: one group per block of mutually similar layers (`stackslim.similarity.find_blocks`
  on the linear-CKA matrix of the hidden states); with ``max_size=K`` each block is cut into
  the fewest runs of at most K layers, of near-equal length (a block of 8 with K=3 → 3, 3, 2).
- a list of lists: taken as given (sorted, checked to be a partition of 0..L-1).

Block j of `Blocks` lists 1-based hidden states; hidden state i is the output of layer i, i.e.
0-based layer i-1, so a block {3, 4, 5} is the group [2, 3, 4].
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..models.base import Encoder, EncoderError

GroupSpec = int | str | Sequence[Sequence[int]]


def fixed_groups(num_layers: int, k: int) -> list[list[int]]:
    """Runs of `k` adjacent layers: [[0..k-1], [k..2k-1], ...]."""
    if int(k) != k or k < 1:
        raise EncoderError(f"group size K must be a positive integer, got {k!r}")
    return [list(range(s, min(s + int(k), num_layers))) for s in range(0, num_layers, int(k))]


def split_run(run: Sequence[int], max_size: int | None) -> list[list[int]]:
    """Cut a run of layers into the fewest pieces of at most `max_size`, near-equal in length."""
    run = list(run)
    if not max_size or len(run) <= max_size:
        return [run]
    n = -(-len(run) // max_size)  # ceil
    return [list(map(int, p)) for p in np.array_split(np.array(run), n)]


def check_groups(groups: Sequence[Sequence[int]], num_layers: int) -> list[list[int]]:
    """Sorted copy of `groups` after checking they partition layers 0..num_layers-1."""
    out = [sorted(int(i) for i in g) for g in groups]
    out = [g for g in out if g]
    seen: dict[int, int] = {}
    for gi, g in enumerate(out):
        for i in g:
            if not 0 <= i < num_layers:
                raise EncoderError(f"group {gi} names layer {i}, but the model has layers "
                                   f"0..{num_layers - 1} (0-based)")
            if i in seen:
                raise EncoderError(f"layer {i} is in two groups ({seen[i]} and {gi})")
            seen[i] = gi
    missing = [i for i in range(num_layers) if i not in seen]
    if missing:
        raise EncoderError(f"layer {missing[0]} is in no group: groups must cover layers "
                           f"0..{num_layers - 1} (a layer alone is a group of one)")
    return sorted(out)


def block_groups(blocks, num_layers: int, max_size: int | None = None) -> list[list[int]]:
    """Groups from measured blocks (`Blocks` or lists of 1-based hidden states 1..L)."""
    lists = blocks.blocks if hasattr(blocks, "blocks") else blocks
    layers = [[int(s) - 1 for s in b] for b in lists]  # hidden state i = output of layer i-1
    groups = [piece for run in layers for piece in split_run(run, max_size)]
    return check_groups(groups, num_layers)


def measure_blocks(enc: Encoder, waves: Sequence[np.ndarray], batch_size: int = 8,
                   metric: str = "cka", view: str = "pooled"):
    """Blocks of `enc`'s hidden states on `waves` (linear CKA over clips, exact DP + BIC)."""
    try:
        from ..similarity import SimilarityEngine, find_blocks
    except ImportError as e:  # pragma: no cover - the similarity package ships with stackslim
        raise EncoderError("groups='blocks' needs stackslim.similarity, which failed to import "
                           f"({e}); give explicit groups instead") from e
    waves = list(waves)
    if len(waves) < 4:
        raise EncoderError(f"measuring blocks needs at least 4 clips, got {len(waves)}")
    eng = SimilarityEngine(num_states=enc.num_layers + 1, metrics=(metric,), view=view,
                           estimator="dataset")
    for s in range(0, len(waves), batch_size):
        eng.update(enc.hidden_states(waves[s : s + batch_size]))
    return find_blocks(eng.result().matrix(metric))


def resolve_groups(enc: Encoder, groups: GroupSpec, max_size: int | None = None, blocks=None,
                   waves: Sequence[np.ndarray] | None = None) -> list[list[int]]:
    """Turn a group spec into a checked partition of `enc`'s layers.

    Args:
        enc: the encoder (its number of layers; its states when blocks are measured).
        groups: K, "blocks", or lists of 0-based layer indices.
        max_size: with "blocks": cut each block into runs of at most this many layers.
        blocks: with "blocks": measured `Blocks` (or lists of 1-based hidden states).
        waves: with "blocks" and no `blocks`: clips to measure the blocks on.
    """
    L = enc.num_layers
    if isinstance(groups, bool):
        raise EncoderError(f"groups must be K, 'blocks' or lists of layer indices, got {groups!r}")
    if isinstance(groups, int):
        return fixed_groups(L, groups)
    if isinstance(groups, str):
        if groups.isdigit():
            return fixed_groups(L, int(groups))
        if groups != "blocks":
            raise EncoderError(f"groups must be K, 'blocks' or lists of layer indices, got {groups!r}")
        if blocks is None:
            if waves is None:
                raise EncoderError("groups='blocks' needs the blocks (blocks=, from "
                                   "stackslim.similarity.find_blocks) or clips to measure them (waves=)")
            blocks = measure_blocks(enc, waves)
        return block_groups(blocks, L, max_size)
    return check_groups(groups, L)
