"""A fake batch stream for the sharded-cache test; as a script (under torchrun) rank 0 saves
the gathered cache:

    torchrun --standalone --nproc_per_node=2 tests/models/cachehelpers.py OUT.pt
"""
from __future__ import annotations

import sys

import torch

from stackslim.models.cache import ShardedBatches, StateCache

SIZES = [3, 3, 3, 2, 1]  # 5 batches of a 12-clip stream: rank 0 gets 3 of them, rank 1 gets 2


def stream():
    """`(waves, indices)` batches; a clip's 'wave' is its own (T, 2) state, T = 1 + index % 4."""
    start = 0
    for n in SIZES:
        idx = list(range(start, start + n))
        yield [torch.full((1 + i % 4, 2), float(i)) for i in idx], idx
        start += n


def encode() -> StateCache:
    """The cache of the stream, each rank encoding its own batches, then gathered."""
    mine = ShardedBatches(stream())
    states, lengths, indices = [], [], []
    for waves, idx in mine:
        states += waves
        lengths += [w.shape[0] for w in waves]
        indices += idx
    return mine.gather(StateCache(states={0: states}, lengths=torch.tensor(lengths, dtype=torch.long),
                                  indices=indices))


if __name__ == "__main__":
    from stackslim import runtime

    rank, _ = runtime.init_from_env()
    cache = encode()
    if rank == 0:
        torch.save({"states": cache.states[0], "lengths": cache.lengths, "indices": cache.indices},
                   sys.argv[1])
    runtime.shutdown()
