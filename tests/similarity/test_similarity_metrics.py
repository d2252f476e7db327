"""Pairwise metrics against independent reference formulas, and their invariances."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stackslim.similarity import SimilarityError, cosine, linear_cka, mutual_knn

SETTINGS = settings(max_examples=25, deadline=None)


# -- independent references (numpy, explicit n x n matrices) --------------------------------
def hsic_biased_ref(X: np.ndarray, Y: np.ndarray) -> float:
    n = X.shape[0]
    K, L = X @ X.T, Y @ Y.T
    H = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(K @ H @ L @ H) / (n - 1) ** 2)


def cka_ref(X, Y) -> float:
    return hsic_biased_ref(X, Y) / np.sqrt(hsic_biased_ref(X, X) * hsic_biased_ref(Y, Y))


def hsic_unbiased_ref(X: np.ndarray, Y: np.ndarray) -> float:
    """Song et al. 2012, eq. (5), on the raw (uncentred) linear Grams."""
    n = X.shape[0]
    K, L = X @ X.T, Y @ Y.T
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    one = np.ones(n)
    t = np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2)) \
        - 2.0 / (n - 2) * (one @ K @ L @ one)
    return float(t / (n * (n - 3)))


def cka_unbiased_ref(X, Y) -> float:
    return hsic_unbiased_ref(X, Y) / np.sqrt(hsic_unbiased_ref(X, X) * hsic_unbiased_ref(Y, Y))


def mknn_ref(X, Y, k, center: bool = False) -> float:
    def nn(A):
        if center:
            A = A - A.mean(0)
        A = A / np.linalg.norm(A, axis=1, keepdims=True)
        G = A @ A.T
        np.fill_diagonal(G, -np.inf)
        return [set(np.argsort(-row)[:k]) for row in G]
    a, b = nn(X), nn(Y)
    return float(np.mean([len(p & q) / k for p, q in zip(a, b)]))


def data(seed, n, d1, d2, shift=0.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d1)) + shift
    Y = X @ rng.standard_normal((d1, d2)) + 0.5 * rng.standard_normal((n, d2))
    return X, Y


# -- reference values -----------------------------------------------------------------------
@SETTINGS
@given(seed=st.integers(0, 2**31), n=st.integers(4, 40), d1=st.integers(1, 20), d2=st.integers(1, 20))
def test_linear_cka_matches_trace_formula(seed, n, d1, d2):
    X, Y = data(seed, n, d1, d2, shift=3.0)
    assert linear_cka(X, Y) == pytest.approx(cka_ref(X, Y), abs=1e-9)
    assert linear_cka(torch.from_numpy(X).float(), Y) == pytest.approx(
        cka_ref(X.astype(np.float32).astype(np.float64), Y), abs=1e-9)  # float32 in, float64 inside


@SETTINGS
@given(seed=st.integers(0, 2**31), n=st.integers(6, 40), d1=st.integers(1, 12), d2=st.integers(1, 12))
def test_unbiased_cka_matches_song_formula(seed, n, d1, d2):
    X, Y = data(seed, n, d1, d2, shift=2.0)  # shifted: our centring must not change HSIC_u
    if hsic_unbiased_ref(X, X) <= 0 or hsic_unbiased_ref(Y, Y) <= 0:
        with pytest.raises(SimilarityError):
            linear_cka(X, Y, unbiased=True)
        return
    assert linear_cka(X, Y, unbiased=True) == pytest.approx(cka_unbiased_ref(X, Y), abs=1e-8)


@SETTINGS
@given(seed=st.integers(0, 2**31), n=st.integers(6, 40), k=st.integers(1, 5))
def test_mutual_knn_matches_reference(seed, n, k):
    X, Y = data(seed, n, 7, 5, shift=1.0)  # an offset: centring would change the neighbours
    assert mutual_knn(X, Y, k=k) == pytest.approx(mknn_ref(X, Y, k), abs=1e-12)
    assert mutual_knn(X, Y, k=k, center=True) == pytest.approx(mknn_ref(X, Y, k, center=True), abs=1e-12)


def test_cosine_reference_and_zero_rows():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((20, 6)), rng.standard_normal((20, 6))
    ref = np.mean((X * Y).sum(1) / (np.linalg.norm(X, axis=1) * np.linalg.norm(Y, axis=1)))
    assert cosine(X, Y) == pytest.approx(ref, abs=1e-12)
    X[3] = 0
    Y[5] = 0
    c = cosine(X, Y)
    keep = np.ones(20, bool)
    keep[[3, 5]] = False
    ref = ((X * Y).sum(1)[keep] / (np.linalg.norm(X, axis=1) * np.linalg.norm(Y, axis=1))[keep]).sum() / 20
    assert np.isfinite(c) and c == pytest.approx(ref, abs=1e-12)  # zero rows count as cosine 0
    assert cosine(np.zeros((3, 2)), np.zeros((3, 2))) == 0.0


# -- properties -----------------------------------------------------------------------------
@SETTINGS
@given(seed=st.integers(0, 2**31), n=st.integers(4, 50), d=st.integers(1, 30), unbiased=st.booleans())
def test_cka_self_is_one(seed, n, d, unbiased):
    X = np.random.default_rng(seed).standard_normal((n, d)) * 10 + 5
    try:
        v = linear_cka(X, X, unbiased=unbiased)
    except SimilarityError:  # unbiased self-HSIC can be <= 0 for tiny n: a defined error
        assert unbiased
        return
    assert v == pytest.approx(1.0, abs=1e-9)


@SETTINGS
@given(seed=st.integers(0, 2**31), n=st.integers(5, 40), d=st.integers(2, 16),
       scale=st.floats(1e-3, 1e3), unbiased=st.booleans())
def test_cka_invariant_to_rotation_and_isotropic_scaling(seed, n, d, scale, unbiased):
    X, Y = data(seed, n, d, d)
    if unbiased and (hsic_unbiased_ref(X, X) <= 0 or hsic_unbiased_ref(Y, Y) <= 0):
        return
    Q, _ = np.linalg.qr(np.random.default_rng(seed + 1).standard_normal((d, d)))
    base = linear_cka(X, Y, unbiased=unbiased)
    assert linear_cka(scale * X @ Q, Y, unbiased=unbiased) == pytest.approx(base, abs=1e-9)
    assert linear_cka(X, Y @ Q.T + 7.0, unbiased=unbiased) == pytest.approx(base, abs=1e-9)


@SETTINGS
@given(seed=st.integers(0, 2**31), n=st.integers(3, 40), d=st.integers(1, 10), k=st.integers(1, 8))
def test_mutual_knn_self_is_one(seed, n, d, k):
    X = np.random.default_rng(seed).standard_normal((n, d))
    if n < k + 1:
        with pytest.raises(SimilarityError, match="k\\+1"):
            mutual_knn(X, X, k=k)
        return
    assert mutual_knn(X, X, k=k) == 1.0


def test_mutual_knn_invariant_to_rotation_scaling_and_shift():
    X, Y = data(3, 50, 8, 8)
    Q, _ = np.linalg.qr(np.random.default_rng(4).standard_normal((8, 8)))
    assert mutual_knn(3.0 * X @ Q + 2.0, Y, k=5) == pytest.approx(mutual_knn(X, Y, k=5))


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [linear_cka, lambda a, b: linear_cka(a, b, unbiased=True), mutual_knn])
def test_constant_representation_is_a_defined_error(fn):
    X = np.random.default_rng(0).standard_normal((20, 4))
    C = np.tile(np.array([[1.5, -2.0, 3.0, 0.25]]), (20, 1))
    with pytest.raises(SimilarityError, match="constant"):
        fn(X, C)
    with pytest.raises(SimilarityError, match="constant"):
        fn(np.zeros((20, 4)), X)


def test_shape_errors():
    X = np.zeros((5, 3))
    with pytest.raises(SimilarityError, match="equal dimensions"):
        cosine(np.ones((5, 3)), np.ones((5, 4)))
    with pytest.raises(SimilarityError, match="same samples"):
        linear_cka(np.ones((5, 3)), np.ones((6, 3)))
    with pytest.raises(SimilarityError, match="2-D"):
        linear_cka(np.ones(5), X)
    with pytest.raises(SimilarityError, match="at least 4"):
        linear_cka(np.eye(3), np.eye(3), unbiased=True)
    with pytest.raises(SimilarityError, match="NaN"):
        cosine(np.full((2, 2), np.nan), np.ones((2, 2)))
    assert issubclass(SimilarityError, ValueError)


def test_inputs_are_never_modified():
    X = torch.randn(30, 6, dtype=torch.float64) + 3.0
    Y = torch.randn(30, 6, dtype=torch.float64)
    X0, Y0 = X.clone(), Y.clone()
    for fn in (cosine, linear_cka, mutual_knn, lambda a, b: linear_cka(a, b, unbiased=True)):
        fn(X, Y)
        fn(X[:, None, :][:, 0], Y)  # views whose permuted layout is already contiguous
    assert torch.equal(X, X0) and torch.equal(Y, Y0)
