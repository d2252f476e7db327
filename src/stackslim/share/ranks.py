"""Ranks under a size budget: which layers and maps get how much of the residual.

One `--rank` for every map spends as much on a map whose layers already agree with the shared
weight as on one whose layers differ. Given a budget (`size`, the shared stack's parameters as
a fraction of the dense stack's), the ranks r_{l,m} of every layer l and shared map m are
chosen to minimise the total relative output error of the conversion

    E = Σ_{l,m} ‖(R_{l,m} − D_{l,m} − A B) L_{l,m}‖²_F / ‖W_{l,m} L_{l,m}‖²_F

(`aware.py`: R = W_l − W_shared with W_shared the group mean, D the fitted diagonal,
L the Cholesky factor of the damped calibration second moment; L = I without calibration,
the weight-space error). Its rank-r minimum leaves out the singular values of the whitened
residual beyond the r-th, so the j-th rank unit of map (l, m) lowers E by

    g_{l,m,j} = σ_j² / ‖W_{l,m} L‖²_F       at a cost of c_m = d_in + d_out parameters (a column
                                           of A and a row of B).

The gains of one map fall with j, so taking rank units in decreasing order of g / c while
they fit (water-filling) is the greedy solution of this knapsack; it is exact up to the last
unit that does not fit. The fixed part of the budget (one W_shared per group and map, the
diagonals, biases, norms and everything that stays dense, e.g. attention with
``matrices=("fc1", "fc2")``) is counted first, as `SharedEncoder.size_report` counts it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..models.base import EncoderError
from .aware import damped
from .calibrate import CalibStats
from .inits import diag_k


@dataclass
class Allocation:
    """The chosen ranks and the budget's account (parameters of the stack)."""

    ranks: dict[tuple[int, str], int]  # (layer, map) → r
    dense_params: int  # the dense stack
    fixed_params: int  # the shared stack at rank 0
    budget_params: int  # floor(size × dense_params)
    params: int  # fixed_params + the chosen ranks' cost: what `size_report` counts
    error: float  # E of the module docstring at the chosen ranks (sum over maps)

    def to_json(self) -> dict:
        return {"ranks": {f"{i}.{m}": r for (i, m), r in sorted(self.ranks.items())},
                "dense_params": self.dense_params, "fixed_params": self.fixed_params,
                "budget_params": self.budget_params, "params": self.params,
                "size": self.params / self.dense_params, "error": self.error}


def _numel(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def fixed_params(layers: Sequence[nn.Module], part: list[list[int]], matrices: Sequence[str],
                 diag: bool, share_norms: bool) -> int:
    """Parameters of the shared stack at rank 0: one W_shared per group and map, diagonals,
    biases (per layer, or per group with `share_norms`), LayerNorms (likewise) and every other
    parameter of the layers (maps that stay dense included)."""
    total = 0
    for members in part:
        norms = [n for n, m in layers[members[0]].named_modules() if isinstance(m, nn.LayerNorm)]
        for j, i in enumerate(members):
            layer = layers[i]
            rest = _numel(layer)
            for name in matrices:
                lin = layer.get_submodule(name)
                rest -= _numel(lin)
                d_out, d_in = lin.weight.shape
                if j == 0:
                    total += d_out * d_in  # W_shared, once per group
                if lin.bias is not None and (j == 0 or not share_norms):
                    total += d_out
                total += min(d_in, d_out) if diag else 0
            if share_norms and j > 0:  # one copy of each norm for the group
                rest -= sum(_numel(layer.get_submodule(n)) for n in norms)
            total += rest
    return total


@torch.no_grad()
def residual_gains(layers: Sequence[nn.Module], part: list[list[int]], matrices: Sequence[str],
                   diag: bool, stats: CalibStats | None = None) -> dict[tuple[int, str], torch.Tensor]:
    """(layer, map) → g (k,): the drop of the relative output error of each rank unit, in
    decreasing order (module docstring), with the group mean as the shared weight."""
    gains: dict[tuple[int, str], torch.Tensor] = {}
    for members in part:
        for name in matrices:
            Ws = [layers[i].get_submodule(name).weight.detach().double().cpu() for i in members]
            W = torch.stack(Ws).mean(0)  # (d_out, d_in)
            d_out, d_in = W.shape
            k = min(d_out, d_in)
            for i, Wl in zip(members, Ws):
                Ch, L = damped(stats.cov(i, name) if stats is not None else None, d_in)
                R = Wl - W
                if diag:  # the best diagonal alone (rank 0), as `aware.fit_residual` starts
                    d = (R[:k] * Ch[:k]).sum(1) / Ch.diagonal()[:k]
                    R = R - diag_k(d, d_out, d_in)
                RL = R @ L  # (d_out, d_in) whitened residual
                G = RL @ RL.T if d_out <= d_in else RL.T @ RL  # (k, k)
                s2 = torch.linalg.eigvalsh(G).flip(0).clamp_min(0)  # σ_j², decreasing
                gains[(i, name)] = s2 / max(float(((Wl @ L) ** 2).sum()), 1e-300)
    return gains


def allocate_ranks(layers: Sequence[nn.Module], part: list[list[int]], matrices: Sequence[str],
                   size: float, diag: bool = True, share_norms: bool = False,
                   stats: CalibStats | None = None) -> Allocation:
    """Ranks of every (layer, shared map) that minimise the conversion's output error with the
    shared stack at most `size` × the dense stack's parameters (module docstring).

    Raises:
        EncoderError: the budget is below the stack at rank 0 (the message gives that size).
    """
    if not 0 < size <= 1:
        raise EncoderError(f"size must be in (0, 1], got {size}")
    dense = sum(_numel(layers[i]) for g in part for i in g)
    fixed = fixed_params(layers, part, matrices, diag, share_norms)
    budget = int(size * dense)
    if fixed > budget:
        raise EncoderError(f"size {size:g} is below the smallest shared stack of this grouping: "
                           f"{fixed / dense:.4f} of the dense stack at rank 0 (larger groups make it "
                           "smaller)")
    gains = residual_gains(layers, part, matrices, diag, stats)
    keys = sorted(gains)
    cost = {key: sum(layers[key[0]].get_submodule(key[1]).weight.shape) for key in keys}
    # every rank unit as (gain per parameter, key); a map's units stay in order (gains fall)
    units = [(float(g) / cost[key], key) for key in keys for g in gains[key]]
    units.sort(key=lambda u: -u[0])
    ranks = dict.fromkeys(keys, 0)
    left = budget - fixed
    for _, key in units:
        if cost[key] <= left:
            ranks[key] += 1
            left -= cost[key]
    error = sum(float(gains[key][ranks[key]:].sum()) for key in keys)
    return Allocation(ranks, dense, fixed, budget, budget - left, error)


def uniform_error(layers: Sequence[nn.Module], part: list[list[int]], matrices: Sequence[str],
                  rank: int, diag: bool = True, stats: CalibStats | None = None) -> float:
    """E of the module docstring with one rank for every map (the baseline of an allocation)."""
    gains = residual_gains(layers, part, matrices, diag, stats)
    return sum(float(g[rank:].sum()) for g in gains.values())
