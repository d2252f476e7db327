"""SampleStore on disk and the blocked Gram pass: the same numbers as the in-memory formulas."""
from __future__ import annotations

import gc
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from hypothesis import given, settings
from hypothesis import strategies as st
from simhelpers import correlated_states, rows_as_states, spawn_two

from stackslim.similarity import SampleStore, SimilarityEngine, SimilarityError, allpairs, store
from stackslim.similarity.allpairs import gram_pass

SETTINGS = settings(max_examples=30, deadline=None)


def reference(X: np.ndarray, k: int, knn_center: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(S, S) biased CKA and mutual kNN of X (n, S, D) from the textbook formulas, all in memory:
    CKA_ij = ||Xc_i^T Xc_j||_F^2 / (||Xc_i^T Xc_i||_F ||Xc_j^T Xc_j||_F); kNN by cosine of the
    raw rows (the reference definition; of the centred rows with knn_center), a sample never its
    own neighbour."""
    n, S, _ = X.shape
    Xc = X - X.mean(0)
    cka, nbrs = np.eye(S), []
    for i in range(S):
        for j in range(S):
            num = np.linalg.norm(Xc[:, i].T @ Xc[:, j]) ** 2
            cka[i, j] = num / (np.linalg.norm(Xc[:, i].T @ Xc[:, i]) * np.linalg.norm(Xc[:, j].T @ Xc[:, j]))
        R = Xc[:, i] if knn_center else X[:, i]
        U = R / np.linalg.norm(R, axis=1, keepdims=True)
        sim = U @ U.T
        np.fill_diagonal(sim, -np.inf)
        nbrs.append([set(np.argsort(-row)[:k]) for row in sim])
    knn = np.array([[np.mean([len(a & b) for a, b in zip(nbrs[i], nbrs[j])]) / k for j in range(S)]
                    for i in range(S)])
    return cka, knn


def random_samples(seed: int, n: int, S: int, D: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, S, D, generator=g, dtype=torch.float64)
    return X + 0.5 * X[:, :1]  # states correlated with state 0


@contextmanager
def tiny_budget():
    """A working set of a few hundred bytes: every pass runs over many blocks."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(allpairs, "CHUNK_BYTES", 512)
        mp.setattr(store, "CHUNK_BYTES", 512)
        yield


@SETTINGS
@given(seed=st.integers(0, 2**31), n=st.integers(3, 41), S=st.integers(1, 4), D=st.integers(2, 7),
       k=st.integers(1, 6), budget=st.sampled_from([64, 200, 777, 4096, 2**26]))
def test_blocked_pass_from_disk_equals_the_formulas(seed, n, S, D, k, budget):
    # D >= 2: with one feature the centred cosines are all +-1, exact ties that any order breaks
    k = min(k, n - 1)
    X = random_samples(seed, n, S, D)
    st_ = SampleStore(S)
    for part in X.split(5):  # several appends
        st_.update(part)
    for center in (False, True):
        A, idx = gram_pass(st_, cka=True, k=k, budget=budget, knn_center=center)
        A_mem, idx_mem = gram_pass(X, cka=True, k=k, budget=2**30, knn_center=center)  # one block, in memory
        torch.testing.assert_close(A, A_mem, rtol=1e-10, atol=0)
        assert torch.equal(idx, idx_mem)
        cka, knn = reference(X.numpy(), k, knn_center=center)
        np.testing.assert_allclose(allpairs.cka_from_inner(A).numpy(), cka, rtol=1e-10, atol=1e-12)
        got = (allpairs.knn_overlap_matrix(idx) / (n * k)).numpy()
        np.testing.assert_allclose(got, knn, atol=1e-12)
    st_.close()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(10, 37))
def test_engine_with_many_blocks_equals_the_formulas(seed, n):
    S, D, k = 3, 6, 4
    X = correlated_states(seed, n, S, D)
    w = torch.rand(S, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.1
    eng = SimilarityEngine(S, k=k)
    with tiny_budget():
        eng.update(rows_as_states(X))
        res = eng.result()
        weighted = eng.result(channel_weights=w).matrices
    cka, knn = reference(torch.stack(X, 1).numpy(), k)
    np.testing.assert_allclose(res.matrices["cka"], cka, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.matrices["mknn"], knn, atol=1e-12)
    cka_w, knn_w = reference((torch.stack(X, 1) * w).numpy(), k)
    np.testing.assert_allclose(weighted["cka"], cka_w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weighted["mknn"], knn_w, atol=1e-12)
    eng.close()


def test_temp_folder_is_removed_on_close_and_on_garbage_collection(tmp_path):
    X = random_samples(0, 10, 2, 3)
    eng = SimilarityEngine(2, k=2)
    eng.add_samples(X)
    path = eng.acc["store"]._file.path
    assert path.exists() and torch.equal(eng.acc["store"][:], X)
    assert Path(tempfile.gettempdir()) in path.parents
    eng.close()
    assert not path.parent.exists()
    eng = SimilarityEngine(2, k=2)
    eng.add_samples(random_samples(1, 10, 2, 3))
    path = eng.acc["store"]._file.path
    del eng
    gc.collect()
    assert not path.parent.exists()


def test_checkpoint_file_is_appended_and_resumes(tmp_path):
    X = random_samples(3, 30, 3, 4)
    full = SimilarityEngine(3, k=3)
    full.add_samples(X)
    eng = SimilarityEngine(3, k=3)
    side = tmp_path / "samples"
    eng.add_samples(X[:10])
    sd = eng.state_dict(side)
    assert sd["acc"]["store"]["data"] is None and side.stat().st_size == 10 * 3 * 4 * 8
    eng.add_samples(X[10:20])
    with open(side, "ab") as f:  # an interrupted earlier append left a partial row behind
        f.write(b"\0" * 5)
    sd = eng.state_dict(side)
    assert side.stat().st_size == 20 * 3 * 4 * 8  # appended, the partial tail dropped
    torch.save(sd, tmp_path / "ckpt.pt")
    eng.add_samples(X[20:25])
    eng.state_dict(side)  # a later checkpoint than the one resumed: extra rows are ignored
    resumed = SimilarityEngine.from_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    resumed.add_samples(X[20:])
    for m, ref in full.result().matrices.items():
        np.testing.assert_allclose(resumed.result().matrices[m], ref, rtol=1e-12, atol=1e-14)
    assert torch.equal(resumed.acc["store"][:], X)
    os.truncate(side, 5 * 3 * 4 * 8)
    with pytest.raises(SimilarityError, match="fewer than 20 rows"):
        SimilarityEngine.from_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))


def test_knn_with_too_few_samples_fails_before_the_pass():
    eng = SimilarityEngine(2, k=8)
    eng.add_samples(random_samples(0, 8, 2, 3))
    with pytest.raises(SimilarityError, match="k=8 needs at least k\\+1=9 samples, got 8"):
        eng.result()


def _gather_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    store.CHUNK_BYTES = 300  # many rounds of a few rows
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        X = random_samples(5, 48, 3, 4)
        s = SampleStore(3)
        for part in (X[:17] if rank == 0 else X[17:]).split(6):  # uneven shares
            s.update(part)
        s.all_reduce()
        torch.save(s[:], os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_all_reduce_gathers_uneven_shares_in_rank_order_through_the_file(tmp_path):
    spawn_two(_gather_worker, str(tmp_path))
    X = random_samples(5, 48, 3, 4)
    for rank in (0, 1):
        assert torch.equal(torch.load(tmp_path / f"rank{rank}.pt"), X)


def test_result_of_a_subset_of_metrics_skips_the_others():
    eng = SimilarityEngine(3, k=3)
    eng.add_samples(random_samples(4, 20, 3, 5))
    full = eng.result().matrices
    only = eng.result(metrics=("cka",)).matrices  # what the robustness check asks for
    assert list(only) == ["cka"] and np.array_equal(only["cka"], full["cka"])
    with pytest.raises(SimilarityError, match="not all among"):
        eng.result(metrics=("cka", "nope"))
