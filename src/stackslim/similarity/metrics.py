"""Similarity of two representations of the same n samples: cosine, linear CKA, mutual kNN.

All functions take X (n, d1) and Y (n, d2) as torch tensors or numpy arrays (row i of X and
row i of Y describe the same sample), compute in float64 and return a Python float. Bad input
(shapes, too few samples, NaN, a constant representation) raises `SimilarityError`, a
ValueError subclass; no function ever returns NaN.

These are the pairwise definitions. `SimilarityEngine` computes the same quantities for every
pair of hidden states at once, streaming (see `allpairs` and `accumulators`).
"""
from __future__ import annotations

import numpy as np
import torch

from .allpairs import (CONST_RTOL, check_knn_samples, check_variance, gram_pass, hsic_unbiased_matrix,
                       knn_overlap_matrix)
from .config import SimilarityError

Array = torch.Tensor | np.ndarray


def as_float64(X: Array, name: str = "X") -> torch.Tensor:
    """A 2-D float64 torch view/copy of X (never modified in place), checked finite."""
    t = X if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
    t = t.detach()
    if t.ndim != 2:
        raise SimilarityError(f"{name}: expected a 2-D (n, d) array, got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise SimilarityError(f"{name}: empty array of shape {tuple(t.shape)}")
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise SimilarityError(f"{name} contains NaN or inf")
    return t


def _pair(X: Array, Y: Array) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = as_float64(X, "X"), as_float64(Y, "Y")
    if x.shape[0] != y.shape[0]:
        raise SimilarityError(f"X and Y must describe the same samples: X has {x.shape[0]} rows, "
                              f"Y has {y.shape[0]}")
    return x, y.to(x.device)


def _unit_rows(X: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm; zero rows stay zero (so their cosine with anything is 0)."""
    n = X.norm(dim=1, keepdim=True)  # (n, 1)
    return torch.where(n > 0, X / n.clamp_min(torch.finfo(X.dtype).tiny), torch.zeros_like(X))


def cosine(X: Array, Y: Array) -> float:
    """Mean over samples of the cosine between row i of X and row i of Y.

    cos(x, y) = <x, y> / (|x| |y|), averaged over the n rows. Convention: the cosine of a zero
    vector with anything (a zero vector included) is 0, so the result is never NaN.

    Args:
        X: (n, d). Y: (n, d), same d (a cosine needs vectors of one space).

    Raises:
        SimilarityError: different d or n, empty, NaN/inf.
    """
    x, y = _pair(X, Y)
    if x.shape[1] != y.shape[1]:
        raise SimilarityError(f"cosine needs equal dimensions, got d1={x.shape[1]} and d2={y.shape[1]}; "
                              "use linear_cka or mutual_knn for representations of different sizes")
    return float((_unit_rows(x) * _unit_rows(y)).sum(1).mean())


def linear_cka(X: Array, Y: Array, unbiased: bool = False) -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019).

    Biased: with Xc, Yc the column-centred X, Y,
        CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)
            = <Kc, Lc>_F / (||Kc||_F ||Lc||_F),  Kc = Xc Xc^T, Lc = Yc Yc^T,
    computed in feature space (d1 x d2 products) or Gram space (n x n), whichever is cheaper.

    Unbiased (Nguyen et al. 2021): CKA = HSIC_u(K, L) / sqrt(HSIC_u(K, K) HSIC_u(L, L)) with the
    unbiased HSIC estimator of Song et al. (2012) on the linear Grams (needs n >= 4; builds
    n x n Grams, so memory grows as n^2). It can be slightly negative for unrelated
    representations.

    Args:
        X: (n, d1). Y: (n, d2).
        unbiased: use the unbiased HSIC estimator.

    Raises:
        SimilarityError: n < 2 (n < 4 unbiased), different n, NaN/inf, or a constant
            representation (all rows equal up to a relative 1e-10: CKA would be 0/0).
    """
    x, y = _pair(X, Y)
    n, d1, d2 = x.shape[0], x.shape[1], y.shape[1]
    if n < (4 if unbiased else 2):
        raise SimilarityError(f"linear CKA{' (unbiased)' if unbiased else ''} needs at least "
                              f"{4 if unbiased else 2} samples, got {n}")
    xc, yc = x - x.mean(0), y - y.mean(0)  # (n, d1), (n, d2)
    check_variance(xc.pow(2).sum()[None], x.pow(2).sum()[None], what="input X")
    check_variance(yc.pow(2).sum()[None], y.pow(2).sum()[None], what="input Y")
    # CKA is scale invariant: unit Frobenius norm keeps the fourth powers far from overflow.
    xc, yc = xc / xc.norm(), yc / yc.norm()
    if unbiased:
        if d1 == d2:
            H = hsic_unbiased_matrix(torch.stack([xc, yc], 1))  # (2, 2)
        else:  # different widths: zero-pad to one width (HSIC of linear kernels is unchanged)
            d = max(d1, d2)
            pad = torch.zeros(n, 2, d, dtype=x.dtype, device=x.device)
            pad[:, 0, :d1], pad[:, 1, :d2] = xc, yc
            H = hsic_unbiased_matrix(pad)
        if not (H[0, 0] > 0 and H[1, 1] > 0):
            raise SimilarityError("unbiased self-HSIC is <= 0 (too few samples): unbiased CKA undefined")
        return float(H[0, 1] / (H[0, 0] * H[1, 1]).sqrt())
    if n * (d1 * d2 + d1 * d1 + d2 * d2) <= n * n * (d1 + d2 + 3):
        num = (yc.T @ xc).pow(2).sum()
        den = (xc.T @ xc).norm() * (yc.T @ yc).norm()
    else:
        K, L = xc @ xc.T, yc @ yc.T  # (n, n)
        num = (K * L).sum()
        den = K.norm() * L.norm()
    return float(num / den)


def mutual_knn(X: Array, Y: Array, k: int = 8, center: bool = False) -> float:
    """Mutual k-nearest-neighbour alignment (Huh et al. 2024).

    The reference definition (the platonic-representation code that Dorszewski et al. follow):
    rows are L2-normalised; N_k^X(a) is the set of the k samples b != a with the largest inner
    product <x_a, x_b> (the sample itself excluded), likewise in Y. Score:
        mKNN = (1/n) sum_a |N_k^X(a) ∩ N_k^Y(a)| / k   in [0, 1].
    A zero row has inner product 0 with every other row. With ``center=True`` the column
    mean is subtracted first (a variant: neighbours of the centred cloud, not the reference).

    Args:
        X: (n, d1). Y: (n, d2). k: neighbours per sample.
        center: subtract the column means before normalising (default False: the reference).

    Raises:
        SimilarityError: k < 1, n < k + 1, different n, NaN/inf, a constant representation.
    """
    if int(k) != k or k < 1:
        raise SimilarityError(f"k must be a positive integer, got {k}")
    x, y = _pair(X, Y)
    n = x.shape[0]
    check_knn_samples(n, int(k))
    # Neighbour lists per representation; widths may differ, so one gram_pass each.
    _, ix = gram_pass(x[:, None, :], cka=False, k=int(k), what="input X", knn_center=center)  # (1, n, k)
    _, iy = gram_pass(y[:, None, :], cka=False, k=int(k), what="input Y", knn_center=center)
    overlap = knn_overlap_matrix(torch.cat([ix, iy]))[0, 1]
    return float(overlap / (n * k))


__all__ = ["Array", "CONST_RTOL", "SimilarityError", "as_float64", "cosine", "linear_cka", "mutual_knn"]
