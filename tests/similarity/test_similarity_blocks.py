"""Block detection, Block Influence, heatmaps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from simhelpers import padded_states, rows_as_states, correlated_states

from stackslim.similarity import (SimilarityEngine, SimilarityError, block_influence, block_influence_from_matrix,
                                  find_blocks, plot_heatmap)


def block_matrix(sizes, within, between, noise, seed=0):
    """(L+1, L+1) with state 0 unrelated, states 1..L in contiguous blocks."""
    L = sum(sizes)
    label = np.concatenate([[i] * s for i, s in enumerate(sizes)])
    A = np.where(label[:, None] == label[None, :], within, between).astype(float)
    E = np.random.default_rng(seed).normal(0, noise, (L, L))
    A = np.clip(A + (E + E.T) / 2, -1, 1)
    M = np.full((L + 1, L + 1), 0.2)
    M[1:, 1:] = A
    np.fill_diagonal(M, 1.0)
    return M


def test_two_blocks_recovered_with_strong_boundary():
    b = find_blocks(block_matrix([8, 4], 0.9, 0.3, 0.02))
    assert b.blocks == [list(range(1, 9)), list(range(9, 13))]
    assert b.boundaries == [8]
    assert b.boundary_scores[0] == pytest.approx(0.6, abs=0.05)
    assert len(b.bic) == 12 and int(np.argmin(b.bic)) == 1
    assert "BIC" in b.method and b.to_json()["blocks"] == b.blocks


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(2, 6), min_size=1, max_size=4), within=st.floats(0.7, 1.0),
       gap=st.floats(0.3, 0.7), seed=st.integers(0, 1000))
def test_random_block_diagonal_structures_are_recovered(sizes, within, gap, seed):
    b = find_blocks(block_matrix(sizes, within, within - gap, 0.01, seed))
    assert [len(x) for x in b.blocks] == sizes
    assert all(s > 0.2 for s in b.boundary_scores)


def test_uniform_matrix_is_one_block_and_fixed_count():
    M = block_matrix([12], 0.9, 0.9, 0.003)
    assert find_blocks(M).num_blocks == 1
    assert find_blocks(M, num_blocks=3).num_blocks == 3
    with pytest.raises(SimilarityError, match="num_blocks"):
        find_blocks(M, num_blocks=13)
    with pytest.raises(SimilarityError, match="matrix"):
        find_blocks(np.ones((3, 4)))
    assert find_blocks(np.eye(2)).blocks == [[1]]


def test_block_influence_direct_equals_engine_off_diagonal():
    hs = padded_states(0, 30, 4, 5, 8)
    for metric, view in (("cosine", "frames"), ("cosine", "pooled"), ("mknn", "pooled")):
        eng = SimilarityEngine(5, metrics=(metric,), view=view, estimator="dataset", k=4)
        eng.update(hs)
        M = eng.result().matrices[metric]
        direct = block_influence(hs, metric=metric, view=view, k=4)
        np.testing.assert_allclose(direct, block_influence_from_matrix(M), atol=1e-12)
        np.testing.assert_allclose(direct, 1 - np.diag(M, 1), atol=1e-12)
    halves = [rows_as_states([x[:20] for x in correlated_states(1, 40, 3, 4)]),
              rows_as_states([x[20:] for x in correlated_states(1, 40, 3, 4)])]
    whole = rows_as_states(correlated_states(1, 40, 3, 4))
    np.testing.assert_allclose(block_influence(halves, view="pooled"), block_influence(whole, view="pooled"))


def test_heatmap_written_atomically(tmp_path):
    M = block_matrix([4, 3], 0.9, 0.3, 0.01)
    p = plot_heatmap(M, "cka", find_blocks(M), path=tmp_path / "sub" / "h.png")
    assert p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG"
    assert [f.name for f in p.parent.iterdir()] == ["h.png"]  # no temporary left behind
    big = plot_heatmap(torch.rand(30, 30), "no annotations", path=tmp_path / "big.png", vmin=None)
    assert big.exists()
    with pytest.raises(SimilarityError, match="square"):
        plot_heatmap(np.ones((2, 3)), "x", path=tmp_path / "bad.png")
