"""Activation-aware conversion (init method ``"aware"``): keep each map's *outputs*, not its weights.

For a group of layers l with weights W_l (d_out, d_in) and calibration second moments
C_l = X_lᵀX_l / n (`calibrate.collect_calibration`), the conversion chooses W (shared) and per
layer A_l (d_out, r), B_l (r, d_in), d_l (k,) to minimise the relative output error

    Σ_l  ‖X_l (W_l − Ŵ_l)ᵀ‖²_F / ‖X_l W_lᵀ‖²_F,     Ŵ_l = W + A_l B_l + diag_k(d_l)
      = Σ_l  tr(E_l Ĉ_l E_lᵀ) / tr(W_l Ĉ_l W_lᵀ),     E_l = W_l − Ŵ_l,

with Ĉ = C + λ·mean(diag C)·I (damping λ, so that directions the calibration clips never excite
still cost a little and Ĉ is positive definite). Block by block, each step exact:

- residual of one layer, R = W_l − W (`fit_residual`): with Ĉ = L Lᵀ (Cholesky),
  tr(E Ĉ Eᵀ) = ‖E L‖²_F, so the best rank-r A B of R − D is the truncated SVD of the *whitened*
  (R − D) L, un-whitened: A B' ≈ (R − D) L → B = B' L⁻¹. The diagonal given A B is, row by row,
  d_i = ((R − A B) Ĉ)_ii / Ĉ_ii (i < k). Alternating the two never raises the error.
- shared weight given the residuals (``fitted``): setting the gradient to zero,
  W = (Σ_l w_l (W_l − A_l B_l − D_l) Ĉ_l)(Σ_l w_l Ĉ_l)⁻¹ with w_l = 1 / tr(W_l Ĉ_l W_lᵀ).

The shared weight is chosen among the group mean, the middle member's own weight, and the
fitted one (two rounds of shared/residual updates), by the total output error; the choice is
recorded.
Without a calibrated map (no statistics: see `calibrate`) Ĉ = I, i.e. the weight-space metric.
"""
from __future__ import annotations

import torch

from ..models.base import EncoderError
from .inits import GroupInit, diag_k, register_init, truncated_svd

DAMP = 1e-2  # λ: relative damping of the calibration second moment


def damped(C: torch.Tensor | None, d_in: int, damp: float = DAMP) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ĉ, L): Ĉ = C + λ·mean(diag C)·I (d_in, d_in) float64 and its lower Cholesky factor.

    C None gives the identity (weight-space metric). The damping grows ×10 until Ĉ factors.
    """
    if C is None:
        eye = torch.eye(d_in, dtype=torch.float64)
        return eye, eye
    C = C.double()
    mu = float(C.diagonal().mean().clamp_min(1e-12))
    lam = damp
    for _ in range(8):
        Ch = C + (lam * mu) * torch.eye(d_in, dtype=torch.float64)
        L, info = torch.linalg.cholesky_ex(Ch)
        if int(info) == 0:
            return Ch, L
        lam *= 10
    raise EncoderError("a calibration second moment is not positive semi-definite (NaN activations?)")


def weighted_sq(E: torch.Tensor, C: torch.Tensor) -> float:
    """tr(E C Eᵀ) = ‖X Eᵀ‖²_F / n for E (d_out, d_in), C (d_in, d_in)."""
    return float(((E @ C) * E).sum())


def output_error(W: torch.Tensor, W_hat: torch.Tensor, C: torch.Tensor) -> float:
    """Relative output error ‖(W − Ŵ) C^{1/2}‖_F / ‖W C^{1/2}‖_F on calibration statistics C."""
    W, W_hat = W.detach().double(), W_hat.detach().double()
    return (weighted_sq(W - W_hat, C.double()) / max(weighted_sq(W, C.double()), 1e-300)) ** 0.5


def fit_residual(R: torch.Tensor, Ch: torch.Tensor, L: torch.Tensor, rank: int, diag: bool,
                 iters: int = 2, RL: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, float]:
    """A (d_out, r), B (r, d_in), d (k,) or None minimising ‖(R − A B − diag_k(d)) L‖²_F; and
    that minimum.

    Alternates the diagonal (closed form per row) and the whitened truncated SVD, `iters` times
    (one is exact without a diagonal). Everything happens in whitened space: with RL = R L
    (given, or computed), diag_k(d) L is d times the first k rows of L, and the error is
    ‖RL − diag_k(d) L − A B'‖², so no further (d_in × d_in) product is needed. All float64.
    """
    d_out, d_in = R.shape
    k = min(d_out, d_in)
    RL = R @ L if RL is None else RL  # (d_out, d_in)
    A, B, Bw = R.new_zeros(d_out, rank), R.new_zeros(rank, d_in), R.new_zeros(rank, d_in)
    d = None
    DL = torch.zeros_like(RL)

    def refit_d() -> torch.Tensor:
        # d_i = ((R − A B) Ĉ)_ii / Ĉ_ii = Σ_j (R − A B)_ij Ĉ_ij / Ĉ_ii (Ĉ symmetric), i < k
        return ((R[:k] - A[:k] @ B) * Ch[:k]).sum(1) / Ch.diagonal()[:k]  # (k,)

    for _ in range(iters if diag else 1):
        if diag:
            d = refit_d()
            DL[:k] = d[:, None] * L[:k]  # diag_k(d) L
        if rank == 0:
            break
        A, Bw = truncated_svd(RL - DL, rank)  # whitened: (d_out, r), (r, d_in)
        B = torch.linalg.solve_triangular(L, Bw, upper=False, left=False)  # B' L⁻¹
    if diag and rank > 0 and iters > 1:  # the last SVD moved A B: refit d once more
        d = refit_d()
        DL[:k] = d[:, None] * L[:k]
    err = float(((RL - DL - A @ Bw) ** 2).sum())
    return A, B, d, err


def _fit_group(Ws, WLs, Chs, Ls, W, ranks, diag, iters):
    """Residuals of every layer (rank r_l each) for shared W, and Σ_l relative output error²
    (whitened)."""
    factors, total = [], 0.0
    for Wl, WL, Ch, L, rank in zip(Ws, WLs, Chs, Ls, ranks):
        A, B, d, err = fit_residual(Wl - W, Ch, L, rank, diag, iters, RL=WL - W @ L)
        factors.append((A, B, d))
        total += err / max(float((WL ** 2).sum()), 1e-300)
    return factors, total


def _residual_weight(A, B, d, shape) -> torch.Tensor:
    R = A @ B
    return R + diag_k(d, *shape) if d is not None else R


def fitted_shared(Ws, Chs, residuals=None) -> torch.Tensor:
    """W = (Σ w_l (W_l − Res_l) Ĉ_l)(Σ w_l Ĉ_l)⁻¹, w_l = 1 / tr(W_l Ĉ_l W_lᵀ)."""
    P = torch.zeros_like(Ws[0])
    S = torch.zeros_like(Chs[0])
    for j, (Wl, Ch) in enumerate(zip(Ws, Chs)):
        w = 1.0 / max(weighted_sq(Wl, Ch), 1e-300)
        T = Wl if residuals is None else Wl - residuals[j]
        P += w * (T @ Ch)
        S += w * Ch
    return torch.linalg.solve(S, P.T).T  # P S⁻¹ (S symmetric)


@register_init("aware")
def init_aware(weights: list[torch.Tensor], ranks: list[int], diag: bool, info: dict) -> GroupInit:
    """Shared weight and residuals that keep the maps' outputs (module docstring).

    `info["cov"]`: one C_l (d_in, d_in) or None per layer of the group (from `to_residual(...,
    calib=...)`); `info["aware_damp"]` overrides λ; `info["aware_shared"]` restricts the choice
    to "mean", "member", "fitted" (default "best": all of them).
    """
    covs = info.get("cov")
    if covs is None:
        raise EncoderError("init='aware' needs calibration clips: to_residual(..., calib=waves)")
    Ws = [w.double() for w in weights]
    d_in = Ws[0].shape[1]
    damp = float(info.get("aware_damp", DAMP))
    Chs, Ls = zip(*(damped(C, d_in, damp) for C in covs))
    which = info.get("aware_shared", "best")
    if which not in ("best", "mean", "member", "fitted"):
        raise EncoderError(f"aware_shared must be best, mean, member or fitted, got {which!r}")
    WLs = [W @ L for W, L in zip(Ws, Ls)]  # whitened weights, once
    cands: dict[str, torch.Tensor] = {}
    if which in ("best", "mean"):
        cands["mean"] = torch.stack(Ws).mean(0)
    if which in ("best", "member"):  # the middle layer: the alignment's reference
        mid = len(Ws) // 2
        cands[f"member {list(info.get('layers', range(len(Ws))))[mid]}"] = Ws[mid]
    scored = {name: _fit_group(Ws, WLs, Chs, Ls, W, ranks, diag, 1) for name, W in cands.items()}
    if which in ("best", "fitted"):
        W = fitted_shared(Ws, Chs)
        factors, _ = _fit_group(Ws, WLs, Chs, Ls, W, ranks, diag, 1)
        # one more round: the shared weight given the residuals, then the residuals again
        W = fitted_shared(Ws, Chs, [_residual_weight(*f, W.shape) for f in factors])
        cands["fitted"] = W
        scored["fitted"] = _fit_group(Ws, WLs, Chs, Ls, W, ranks, diag, 1)
    best = min(scored, key=lambda n: scored[n][1])
    factors, _ = _fit_group(Ws, WLs, Chs, Ls, cands[best], ranks, diag, 2)  # refine the winner
    return GroupInit(cands[best], factors, choice=best)
