"""Outlier channels: statistics, one-pass z-scoring / channel removal, block robustness."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from simhelpers import correlated_states, padded_states, rows_as_states

from stackslim.similarity import (ChannelStats, SimilarityEngine, SimilarityError, pairwise_reference,
                                  robustness_check, samples)

S, D = 5, 10


def with_outlier(seed=0, n=80):
    X = correlated_states(seed, n, S, D)
    for x in X:
        x[:, 3] = 40.0 * x[:, 3] + 5.0  # one loud channel in every state
    return X


@pytest.mark.parametrize("space", ["gram", "feature"])
def test_zscored_and_dropped_cka_equal_direct_computation(space):
    X = with_outlier()
    eng = SimilarityEngine(S, metrics=("cka",), cka_space=space)
    eng.update(rows_as_states(X))
    stats = ChannelStats.from_moments(eng.channel_moments())
    z = [(x - x.mean(0)) / x.std(0, unbiased=False) for x in X]
    got = eng.result(channel_weights=stats.weights("standardize"), transform="standardize")
    assert got.transform == "standardize"
    np.testing.assert_allclose(got.matrices["cka"], pairwise_reference(z, "cka"), atol=1e-10)
    keep = [c for c in range(D) if c != 3]
    got = eng.result(channel_weights=stats.weights("drop_outliers")).matrices["cka"]
    np.testing.assert_allclose(got, pairwise_reference([x[:, keep] for x in X], "cka"), atol=1e-10)


def test_channel_stats_shares_and_flags():
    X = with_outlier()
    stats = ChannelStats.from_hidden_states(rows_as_states(X), view="pooled")
    ms = np.stack([(x.numpy() ** 2).mean(0) for x in X])
    np.testing.assert_allclose(stats.mean_square, ms, rtol=1e-10)
    top1 = ms.max(1) / ms.sum(1)
    np.testing.assert_allclose(stats.top_k_share(1), top1, rtol=1e-10)
    assert np.all(stats.top_k_share(4) >= stats.top_k_share(1)) and np.all(stats.top_k_share(D) == pytest.approx(1.0))
    assert stats.outlier_channels(10.0) == [[3]] * S
    assert stats.outlier_channels(1e9) == [[]] * S
    d = stats.to_json()
    assert d["outlier_channels"] == [[3]] * S and len(d["top4_share"]) == S
    # the engine's streamed moments over frames equal the direct ones
    hs = padded_states(1, 12, 5, S, D)
    eng = SimilarityEngine(S, metrics=("cosine",), view="frames")
    eng.update(hs)
    direct = ChannelStats.from_hidden_states(hs, view="frames")
    np.testing.assert_allclose(ChannelStats.from_moments(eng.channel_moments()).std, direct.std, rtol=1e-10)
    f = samples(hs, "frames")[:, 2].numpy()
    np.testing.assert_allclose(direct.std[2], f.std(0), rtol=1e-10)


def _states(artefact: bool, seed: int = 0, n: int = 200, L: int = 8, Dm: int = 32):
    """artefact: smooth drift, blocks only in one loud channel; else two genuine regimes."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    h, a, b, Z1, Z2 = r(n, Dm), r(n), r(n), r(n, Dm), r(n, Dm)
    X = [h.clone()]
    for i in range(1, L + 1):
        if artefact:
            h = 0.8 * h + 0.6 * r(n, Dm)
            x = h.clone()
            x[:, 0] = 50 * (a if i <= 5 else b)
        else:
            x = (Z1 if i <= 5 else Z2) + 0.3 * r(n, Dm)
        X.append(x)
    return X


@pytest.mark.parametrize("space", ["gram", "feature"])
def test_robustness_check_tells_artefact_from_real_blocks(space):
    for artefact in (True, False):
        eng = SimilarityEngine(9, metrics=("cka",), cka_space=space)
        eng.update(rows_as_states(_states(artefact)))
        rep = robustness_check(eng)
        assert rep.blocks["none"].blocks == [[1, 2, 3, 4, 5], [6, 7, 8]]
        assert rep.survives == {"standardize": not artefact, "drop_outliers": not artefact}
        assert ("not an outlier-channel artefact" in rep.verdict) == (not artefact)
        d = rep.to_json()
        assert set(d["blocks"]) == {"none", "standardize", "drop_outliers"}
        if artefact:
            assert d["channels"]["outlier_channels"][3] == [0] and d["channels"]["top1_share"][3] > 0.9


def test_transforms_need_dataset_estimator():
    eng = SimilarityEngine(S, metrics=("cka",), estimator="minibatch", batch_size=8)
    eng.update(rows_as_states(correlated_states(0, 20, S, D)))
    with pytest.raises(SimilarityError, match="estimator='dataset'"):
        robustness_check(eng)
    with pytest.raises(SimilarityError, match="unknown transform"):
        ChannelStats.from_hidden_states(rows_as_states(correlated_states(0, 20, S, D)), "pooled").weights("log")
