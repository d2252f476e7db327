"""The all-pairs engine against the per-pair reference, streaming, merging, views, resume."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from simhelpers import correlated_states, padded_states, rows_as_states, split_rows

from stackslim.models.base import HiddenStates
from stackslim.similarity import (SimilarityEngine, SimilarityError, SimilarityResult, pairwise_reference,
                                  samples)

S, N, D = 5, 64, 12
COMBOS = [  # (metrics, view, estimator, cka_space)
    (("cosine", "cka", "mknn"), "pooled", "dataset", "gram"),
    (("cosine", "cka", "mknn"), "pooled", "dataset", "feature"),
    (("cosine", "cka"), "frames", "dataset", "auto"),
    (("cosine", "cka", "mknn"), "flat", "dataset", "auto"),
    (("cosine", "cka", "mknn"), "pooled", "minibatch", "auto"),
    (("cosine", "cka", "mknn"), "frames", "minibatch", "auto"),
    (("cosine", "cka"), "pooled", "unbiased", "auto"),
    (("cka",), "flat", "unbiased", "auto"),
]


def engine(metrics, view, estimator, space, **kw):
    return SimilarityEngine(S, metrics=metrics, view=view, estimator=estimator, cka_space=space,
                            k=5, batch_size=16, **kw)


def check_matrix(M):
    assert M.shape == (S, S)
    assert np.allclose(M, M.T, atol=0) and np.all(np.diag(M) == 1.0) and np.isfinite(M).all()


def test_dataset_estimators_match_pairwise_reference():
    X = correlated_states(0, N, S, D)
    hs = rows_as_states(X)
    for space in ("gram", "feature"):
        eng = engine(("cosine", "cka", "mknn"), "pooled", "dataset", space)
        eng.update(hs)
        res = eng.result()
        for m in ("cosine", "cka", "mknn"):
            ref = pairwise_reference(X, m, k=5)
            np.testing.assert_allclose(res.matrices[m], ref, atol=1e-10, err_msg=f"{space} {m}")
            check_matrix(res.matrices[m])


def test_minibatch_and_unbiased_match_per_batch_reference():
    X = correlated_states(1, N, S, D)
    batches = [[x[b:b + 16] for x in X] for b in range(0, N, 16)]
    eng = engine(("cosine", "cka", "mknn"), "pooled", "minibatch", "auto")
    eng.update(rows_as_states(X))
    res = eng.result()
    for m in ("cka", "mknn"):
        ref = np.mean([pairwise_reference(b, m, k=5) for b in batches], 0)
        np.testing.assert_allclose(res.matrices[m], ref, atol=1e-10)
    np.testing.assert_allclose(res.matrices["cosine"], pairwise_reference(X, "cosine"), atol=1e-12)
    eng = engine(("cka",), "pooled", "unbiased", "auto")
    eng.update(rows_as_states(X))
    # Reference: mean unbiased HSIC over batches, then normalised (Nguyen et al. 2021).
    from test_similarity_metrics import hsic_unbiased_ref
    H = np.zeros((S, S))
    for b in batches:
        H += np.array([[hsic_unbiased_ref(b[i].numpy(), b[j].numpy()) for j in range(S)] for i in range(S)])
    ref = H / np.sqrt(np.outer(np.diag(H), np.diag(H)))
    np.testing.assert_allclose(eng.result().matrices["cka"], ref, atol=1e-10)


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "-".join([c[1], c[2], c[3]]))
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31), cuts=st.lists(st.integers(1, 20), min_size=1, max_size=6))
def test_streaming_equals_one_shot_and_merge_equals_one(combo, seed, cuts):
    """Any split of the data into update() calls, and merging two engines, give one result."""
    if combo[1] == "flat":  # flat needs equal lengths: 40 clips of 2 valid frames
        hs = HiddenStates([x.reshape(40, 2, D) for x in correlated_states(seed, 80, S, D)],
                          torch.full((40,), 2), None)
    else:
        hs = padded_states(seed, 40, 4, S, D)
    sizes, total = [], 0
    for c in cuts:
        if total + c < 40:
            sizes.append(c)
            total += c
    sizes.append(40 - total)
    one = engine(*combo)
    one.update(hs)
    streamed, left, right = engine(*combo), engine(*combo), engine(*combo)
    for part in split_rows(hs, sizes):
        streamed.update(part)
    # Merge: split the samples at 32, a multiple of batch_size, so the minibatches are the same.
    z = samples(hs, combo[1])
    left.add_samples(z[:32])
    right.add_samples(z[32:])
    left.merge(right)
    r1 = one.result()
    for other in (streamed.result(), left.result()):
        assert other.n_samples == r1.n_samples
        for m in r1.matrices:
            np.testing.assert_allclose(other.matrices[m], r1.matrices[m], atol=1e-6)
            check_matrix(other.matrices[m])


def test_frames_view_ignores_padding():
    hs = padded_states(2, 10, 6, S, D, pad_value=1e3)
    hs2 = HiddenStates([x.clone() for x in hs.states], hs.lengths, None)
    pad = ~hs.mask()
    for i, x in enumerate(hs2.states):
        x[pad] = float("nan") if i == 1 else -7.0  # even NaN padding must not leak in
    for view in ("pooled", "frames"):
        a = engine(("cosine", "cka"), view, "dataset", "auto")
        b = engine(("cosine", "cka"), view, "dataset", "auto")
        a.update(hs)
        b.update(hs2)
        ra, rb = a.result(), b.result()
        assert ra.n_samples == (int(hs.lengths.sum()) if view == "frames" else 10)
        for m in ra.matrices:
            np.testing.assert_allclose(ra.matrices[m], rb.matrices[m], atol=1e-12)
    # the frames samples are exactly the valid frames
    z = samples(hs, "frames")
    ref = torch.cat([hs.states[0][b, :int(hs.lengths[b])] for b in range(10)])
    assert torch.equal(z[:, 0], ref)


def test_flat_view_needs_equal_lengths():
    hs = padded_states(3, 6, 5, S, D)
    eng = engine(("cka",), "flat", "dataset", "auto")
    with pytest.raises(SimilarityError, match="same valid length"):
        eng.update(hs)
    ok = HiddenStates([x[:, :3] for x in hs.states], torch.full((6,), 3), None)
    eng.update(ok)
    longer = HiddenStates(hs.states, torch.full((6,), 5), None)
    with pytest.raises(SimilarityError, match="earlier batches had 3"):
        eng.update(longer)


def test_unsupported_combinations_name_the_supported_ones():
    with pytest.raises(SimilarityError, match="mknn does not support estimator='unbiased'.*supported"):
        SimilarityEngine(S, metrics=("mknn",), estimator="unbiased")
    with pytest.raises(SimilarityError, match="view='frames'"):
        SimilarityEngine(S, metrics=("mknn",), view="frames", estimator="dataset")
    with pytest.raises(SimilarityError, match="unknown metric"):
        SimilarityEngine(S, metrics=("euclid",))
    with pytest.raises(SimilarityError, match="cka_space='feature'"):
        SimilarityEngine(S, metrics=("cka",), view="flat", cka_space="feature")
    with pytest.raises(SimilarityError, match="batch_size"):
        SimilarityEngine(S, metrics=("mknn",), estimator="minibatch", k=8, batch_size=8)


def test_constant_state_is_a_clear_error():
    X = correlated_states(4, 20, S, D)
    X[2] = torch.ones_like(X[2]) * 3.0
    for est, space in (("dataset", "gram"), ("dataset", "feature"), ("minibatch", "auto"), ("unbiased", "auto")):
        eng = SimilarityEngine(S, metrics=("cka",), estimator=est, cka_space=space, batch_size=10)
        with pytest.raises(SimilarityError):
            eng.update(rows_as_states(X))
            eng.result()


def test_wrong_state_count_and_no_data():
    eng = SimilarityEngine(S)
    with pytest.raises(SimilarityError, match="no samples"):
        eng.result()
    with pytest.raises(SimilarityError, match="expected 5 hidden states"):
        eng.update(rows_as_states(correlated_states(0, 10, S + 1, D)))


def test_minibatch_leftover_is_counted_or_reported():
    X = correlated_states(5, 37, S, D)  # 2 full batches of 16 + 5 leftover
    eng = SimilarityEngine(S, metrics=("cka", "mknn"), estimator="minibatch", k=5, batch_size=16)
    eng.update(rows_as_states(X))
    assert eng.result().dropped_samples == 5  # 5 < k+1 = 6: too small for kNN
    eng = SimilarityEngine(S, metrics=("cka",), estimator="minibatch", batch_size=16)
    eng.update(rows_as_states(X))
    res = eng.result()
    assert res.dropped_samples == 0
    ref = (16 * pairwise_reference([x[:16] for x in X], "cka") + 16 * pairwise_reference(
        [x[16:32] for x in X], "cka") + 5 * pairwise_reference([x[32:] for x in X], "cka")) / 37
    np.testing.assert_allclose(res.matrices["cka"], ref, atol=1e-10)


def test_state_dict_resume_and_json(tmp_path):
    X = correlated_states(6, 48, S, D)
    hs = rows_as_states(X)
    a, b = split_rows(hs, [20, 28])
    for est in ("dataset", "minibatch"):
        full = SimilarityEngine(S, estimator=est, cka_space="feature" if est == "dataset" else "auto",
                                batch_size=16, k=5)
        full.update(hs)
        first = SimilarityEngine(S, estimator=est, cka_space=full.cka_space, batch_size=16, k=5)
        first.update(a)
        torch.save(first.state_dict(), tmp_path / "state.pt")
        resumed = SimilarityEngine.from_state_dict(torch.load(tmp_path / "state.pt"))
        resumed.update(b)
        r0, r1 = full.result(), resumed.result()
        for m in r0.matrices:
            np.testing.assert_allclose(r1.matrices[m], r0.matrices[m], atol=1e-10)
    path = r0.save(tmp_path / "sim.json")
    d = json.loads(path.read_text())
    assert d["view"] == "pooled" and d["n_samples"] == 48 and len(d["matrices"]["cka"]) == S
    back = SimilarityResult.load(path)
    np.testing.assert_array_equal(back.matrices["cka"], r0.matrices["cka"])
    bi = r0.block_influence("cosine")
    assert bi.shape == (S - 1,) and np.allclose(bi, 1 - np.diag(r0.matrices["cosine"], 1))


def test_all_reduce_is_once_only_and_noop_single_process():
    eng = SimilarityEngine(S, estimator="dataset", cka_space="feature", k=5)
    eng.update(rows_as_states(correlated_states(7, 30, S, D)))
    before = eng.result().matrices
    eng.all_reduce()
    after = eng.result().matrices
    for m in before:
        np.testing.assert_allclose(after[m], before[m], atol=1e-12)
    with pytest.raises(SimilarityError, match="already all-reduced"):
        eng.update(rows_as_states(correlated_states(7, 30, S, D)))


def test_float32_inference_tensors_are_accepted():
    X = [x.float() for x in correlated_states(8, 30, S, D)]
    with torch.inference_mode():
        hs = rows_as_states([x.clone() for x in X])
    eng = SimilarityEngine(S, k=5)
    eng.update(hs)
    ref = pairwise_reference([x.double() for x in X], "cka")
    np.testing.assert_allclose(eng.result().matrices["cka"], ref, atol=1e-10)
