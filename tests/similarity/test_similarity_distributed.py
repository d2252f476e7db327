"""Two processes (torch.distributed, gloo) each with half the data give the one-process result."""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist
from simhelpers import padded_states, spawn_two, split_rows

from stackslim.similarity import SimilarityEngine
from stackslim.similarity.outliers import ChannelStats

S, D, CLIPS = 4, 10, 48
CONFIGS = {  # name: engine kwargs
    "pooled-dataset-gram": dict(view="pooled", estimator="dataset", cka_space="gram"),
    "frames-dataset-feature": dict(view="frames", estimator="dataset", metrics=("cosine", "cka")),
    "pooled-minibatch": dict(view="pooled", estimator="minibatch", batch_size=8),
    "pooled-unbiased": dict(view="pooled", estimator="unbiased", metrics=("cosine", "cka"), batch_size=8),
}


def _results(rank: int, world: int) -> dict[str, dict[str, np.ndarray]]:
    """Every config on this process's share of the clips (contiguous, equal shares)."""
    hs = padded_states(11, CLIPS, 5, S, D, lite=True)
    share = CLIPS // world  # 24 clips: a multiple of batch_size, so minibatches coincide
    mine = split_rows(hs, [share] * world)[rank]
    out = {}
    for name, kw in CONFIGS.items():
        eng = SimilarityEngine(S, k=4, **kw)
        for part in split_rows(mine, [10, share - 10]):
            eng.update(part)
        eng.all_reduce()
        res = eng.result()
        out[name] = {m: a for m, a in res.matrices.items()}
        out[name]["n"] = np.array(res.n_samples)
        if kw["estimator"] == "dataset":
            stats = ChannelStats.from_moments(eng.channel_moments())
            out[name]["cka_standardized"] = eng.result(channel_weights=stats.weights("standardize")).matrices["cka"]
    return out


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.save(_results(rank, world), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    spawn_two(_worker, str(tmp_path))
    single = _results(0, 1)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        for name, mats in single.items():
            for key, ref in mats.items():
                np.testing.assert_allclose(got[name][key], ref, atol=1e-6, err_msg=f"rank {rank} {name} {key}")
