"""Cutting cached clips into windows and joining caches (distillation on unlabelled clips)."""
from __future__ import annotations

import pytest
import torch

from stackslim.models.cache import StateCache, append_windows, chunk_cache, concat_caches


def _cache(lengths: list[int], d: int = 3, first: int = 10) -> StateCache:
    """State 0: distinct values per clip and frame; state 1: twice state 0."""
    x = [torch.arange(T * d, dtype=torch.float32).reshape(T, d) + 1000 * i for i, T in enumerate(lengths)]
    return StateCache(states={0: x, 1: [t * 2 for t in x]}, lengths=torch.tensor(lengths),
                      indices=list(range(first, first + len(lengths))))


def test_chunk_cache_cuts_every_state_at_the_same_frames():
    c = chunk_cache(_cache([7, 3]), 3)
    assert c.lengths.tolist() == [3, 3, 1, 3]
    assert c.indices == [10, 10, 10, 11]
    full = _cache([7, 3])
    torch.testing.assert_close(torch.cat(c.states[0][:3]), full.states[0][0])
    for x, t in zip(c.states[0], c.states[1]):
        torch.testing.assert_close(t, 2 * x)
    with pytest.raises(ValueError, match="max_frames"):
        chunk_cache(full, 0)


def test_concat_keeps_order_and_the_shared_states():
    a, b = _cache([2, 4]), _cache([5], first=20)
    del b.states[1]
    c = concat_caches(a, b)
    assert list(c.states) == [0] and c.lengths.tolist() == [2, 4, 5] and c.indices == [10, 11, 20]
    assert c.states[0][2] is b.states[0][0]


def test_append_windows_cuts_the_extra_clips_to_the_longest_first_clip():
    train, pool = _cache([4, 3]), _cache([9, 2], first=50)
    c = append_windows(train, pool)
    assert c.lengths.tolist() == [4, 3, 4, 4, 1, 2]
    assert c.indices == [10, 11, 50, 50, 50, 51]
    assert int(c.lengths[2:].sum()) == int(pool.lengths.sum())  # every frame kept once
