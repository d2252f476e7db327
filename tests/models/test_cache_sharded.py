"""ShardedBatches: two ranks each encode half the batches; the gathered cache is the one-process
cache, clip for clip, in stream order."""
from __future__ import annotations

from pathlib import Path

import torch
from cachehelpers import encode


def test_one_process_keeps_every_batch():
    cache = encode()
    assert cache.indices == list(range(12))
    assert cache.lengths.tolist() == [1 + i % 4 for i in range(12)]


def test_two_ranks_gather_the_one_process_cache(tmp_path, torchrun):
    out = tmp_path / "cache.pt"
    r = torchrun([Path(__file__).with_name("cachehelpers.py"), out])
    assert r.returncode == 0, r.stderr[-3000:]
    got = torch.load(out, weights_only=True)
    ref = encode()
    assert got["indices"] == ref.indices and torch.equal(got["lengths"], ref.lengths)
    assert all(torch.equal(a, b) for a, b in zip(got["states"], ref.states[0], strict=True))
