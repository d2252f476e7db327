"""Align FFN neurons and attention heads across the layers of a sharing group.

Inside one layer, the hidden neurons of the feed-forward block and the heads of the attention
can be renumbered without changing what the layer computes:

- FFN neuron j is row j of fc1 (with its bias) and column j of fc2; the activation acts
  elementwise, so a permutation π applied to fc1's rows, fc1's bias and fc2's columns leaves
  y = fc2(act(fc1 x)) unchanged.
- Head h is the block of rows [h·d_h, (h+1)·d_h) of Q, K and V (and their biases) and the same
  block of columns of the output projection; attention is computed per head and the heads are
  concatenated before the output projection, so permuting the blocks together changes nothing.

Two layers trained separately number their neurons and heads arbitrarily, so their weights
look unrelated even when they compute similar things. For each group, every other layer is
permuted to match the group's reference layer (its middle one): π maximises
Σ_i ⟨u_i, v_π(i)⟩ over the units' concatenated weights (a unit's fc1 row, bias and fc2
column; a head's Q, K, V rows and output columns), i.e. minimises Σ_i ‖u_i − v_π(i)‖² since
the norms do not depend on π (linear assignment, Hungarian: `scipy.optimize.linear_sum_assignment`).

The group's weight spread of map m, Σ_l ‖W_l − W̄‖²_F / Σ_l ‖W_l‖²_F (W̄ the group mean), is what
a shared weight has to cover. Alignment minimises each layer's distance to the reference summed
over the maps permuted together (fc1 + fc2; Q + K + V + output), so that sum can only fall; the
spread of one map alone usually falls too, but is not guaranteed to.

WavLM's heads carry a relative position bias computed once in layer 0 and reused by every
layer, so its heads are not permuted (its FFN neurons are).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..models.base import Encoder
from .inits import layer_matrices

NO_HEAD_PERMUTATION = ("wavlm",)


def weight_spread(weights: Sequence[torch.Tensor]) -> float:
    """Σ_l ‖W_l − W̄‖²_F / Σ_l ‖W_l‖²_F over a group's weights of one map (0: all equal)."""
    Ws = torch.stack([w.detach().double() for w in weights])  # (K, d_out, d_in)
    return float(((Ws - Ws.mean(0)) ** 2).sum() / (Ws ** 2).sum().clamp_min(1e-300))


def match(reference: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """π (n,) with other[π] closest to reference row by row: max Σ_i ⟨ref_i, other_π(i)⟩.

    reference, other: (n, f) unit features (one row per neuron or head).
    """
    from scipy.optimize import linear_sum_assignment

    score = (reference.double() @ other.double().T).numpy()  # (n, n)
    rows, cols = linear_sum_assignment(score, maximize=True)
    return torch.as_tensor(cols[rows.argsort()], dtype=torch.long)


def _lin(layer: nn.Module, name: str) -> nn.Linear:
    return layer.get_submodule(name)


def ffn_features(layer: nn.Module, fc1: str, fc2: str) -> torch.Tensor:
    """(f, 2 d + 1): per hidden neuron, its fc1 row, fc1 bias and fc2 column."""
    a, b = _lin(layer, fc1), _lin(layer, fc2)
    parts = [a.weight, b.weight.T] + ([a.bias[:, None]] if a.bias is not None else [])
    return torch.cat([p.detach() for p in parts], 1)


@torch.no_grad()
def permute_ffn(layer: nn.Module, perm: torch.Tensor, fc1: str, fc2: str) -> None:
    """Renumber the FFN neurons: new neuron i is old neuron perm[i] (function unchanged)."""
    a, b = _lin(layer, fc1), _lin(layer, fc2)
    a.weight.copy_(a.weight[perm])
    if a.bias is not None:
        a.bias.copy_(a.bias[perm])
    b.weight.copy_(b.weight[:, perm])


def _heads(layer: nn.Module, q: str) -> int:
    attn = layer.get_submodule(q.rpartition(".")[0]) if "." in q else layer
    return int(getattr(attn, "num_heads"))


def head_features(layer: nn.Module, names: Sequence[str], heads: int) -> torch.Tensor:
    """(H, 4 d_h d + 3 d_h): per head, its rows of Q, K, V (with their biases) and its columns of
    the output projection."""
    q, k, v, o = (_lin(layer, n) for n in names)
    rows = [m.weight.detach().reshape(heads, -1) for m in (q, k, v)]  # (H, d_h·d) each
    rows += [m.bias.detach().reshape(heads, -1) for m in (q, k, v) if m.bias is not None]  # (H, d_h)
    cols = o.weight.detach().T.reshape(heads, -1)  # (H, d_h·d)
    return torch.cat(rows + [cols], 1)


@torch.no_grad()
def permute_heads(layer: nn.Module, perm: torch.Tensor, names: Sequence[str], heads: int) -> None:
    """Renumber the heads: new head i is old head perm[i] (function unchanged)."""
    q, k, v, o = (_lin(layer, n) for n in names)
    d_h = q.weight.shape[0] // heads
    idx = (perm[:, None] * d_h + torch.arange(d_h)).reshape(-1)  # (d,) channel order
    for m in (q, k, v):
        m.weight.copy_(m.weight[idx])
        if m.bias is not None:
            m.bias.copy_(m.bias[idx])
    o.weight.copy_(o.weight[:, idx])


def align_groups(enc: Encoder, groups: Sequence[Sequence[int]]) -> dict:
    """Permute, in place, every layer of each group to match the group's middle layer.

    Args:
        enc: a dense encoder of a family in `inits.MATRICES` (its layers are changed).
        groups: lists of 0-based layer indices.

    Returns:
        {"spread_before": {map: mean over groups}, "spread_after": {...}, "heads": bool,
         "reference": [layer per group]}: the group weight spread of each map (module docstring).
    """
    names = layer_matrices(enc.family)
    attn, (fc1, fc2) = names[:4], names[4:]
    layers = enc.layers
    with_heads = enc.family not in NO_HEAD_PERMUTATION

    def spreads() -> dict[str, float]:
        out = {}
        for n in names:
            vals = [weight_spread([_lin(layers[i], n).weight for i in g]) for g in groups if len(g) > 1]
            out[n] = float(sum(vals) / len(vals)) if vals else 0.0
        return out

    before = spreads()
    refs = []
    for g in groups:
        ref = g[len(g) // 2]
        refs.append(ref)
        H = _heads(layers[ref], attn[0]) if with_heads else 0
        for i in g:
            if i == ref:
                continue
            permute_ffn(layers[i], match(ffn_features(layers[ref], fc1, fc2),
                                         ffn_features(layers[i], fc1, fc2)), fc1, fc2)
            if with_heads:
                permute_heads(layers[i], match(head_features(layers[ref], attn, H),
                                               head_features(layers[i], attn, H)), attn, H)
    return {"spread_before": before, "spread_after": spreads(), "heads": with_heads,
            "reference": refs}
