"""Init methods of the conversion (`to_residual(..., init=NAME)`), the registry `INITS`
(extend with `register_init`), and the six linear maps per layer of each family (`MATRICES`).

An init method gets the group's dense weights and returns W_shared and the per-layer (A, B, d)
as a `GroupInit`; the methods and their maths are described in `convert.py`. ``aware`` lives
in `aware.py` and registers itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..models.base import EncoderError

_W2V = ("attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.out_proj",
        "feed_forward.intermediate_dense", "feed_forward.output_dense")
MATRICES: dict[str, tuple[str, ...]] = {
    "wav2vec2": _W2V, "hubert": _W2V, "wavlm": _W2V, "data2vec-audio": _W2V,
    "whisper": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                "fc1", "fc2"),
}


SHARE_MAPS = ("all", "ffn", "attention")


def layer_matrices(family: str, which: str = "all") -> tuple[str, ...]:
    """Names (inside one layer) of the linear maps that become residual: all six, or only the
    feed-forward pair (``ffn``), or only the four attention maps (``attention``)."""
    if family not in MATRICES:
        raise EncoderError(f"sharing does not support family {family!r} (supported: "
                           f"{', '.join(MATRICES)})")
    if which not in SHARE_MAPS:
        raise EncoderError(f"share maps must be one of {', '.join(SHARE_MAPS)}, got {which!r}")
    maps = MATRICES[family]
    return maps if which == "all" else maps[4:] if which == "ffn" else maps[:4]


@dataclass
class GroupInit:
    """What an init method returns for one matrix name of one group."""

    shared: torch.Tensor  # (d_out, d_in)
    factors: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]  # per layer: A, B, d
    choice: str = ""  # how the shared weight was chosen (e.g. "mean", "fitted"), when it was


InitFn = Callable[[list[torch.Tensor], list[int], bool, dict], GroupInit]
INITS: dict[str, InitFn] = {}


def register_init(name: str):
    """Decorator: register `fn(weights, ranks, diag, info) -> GroupInit` as init method `name`.

    `weights` are the group's dense (d_out, d_in) weights, `ranks` the rank r_l of each layer's
    A_l B_l (one per weight: a size budget gives layers different ranks)."""
    def wrap(fn: InitFn) -> InitFn:
        INITS[name] = fn
        return fn
    return wrap


def diag_k(d: torch.Tensor, d_out: int, d_in: int) -> torch.Tensor:
    """(d_out, d_in) matrix with d (k,) on its main diagonal, zeros elsewhere."""
    k = d.shape[0]
    return nn.functional.pad(torch.diag(d), (0, d_in - k, 0, d_out - k))


def truncated_svd(R: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (d_out, r), B (r, d_in) with A B the best rank-r approximation of R (Frobenius).

    Through the eigendecomposition of the smaller Gram matrix (k × k, k = min(d_in, d_out)),
    about 10× faster than a full SVD on CPU: with U_r the top-r eigenvectors of R Rᵀ (or V_r of
    RᵀR) and s_r the singular values, A = U_r √s_r and B = (U_rᵀ R) / √s_r (resp. A = R V_r / √s_r,
    B = √s_r V_rᵀ). A B = U_r U_rᵀ R is the projection onto the top singular subspace, with no
    division by a small singular value in the product; at r = k it is R itself. Use float64.
    """
    d_out, d_in = R.shape
    if rank == 0:
        return R.new_zeros(d_out, 0), R.new_zeros(0, d_in)
    left = d_out <= d_in
    G = R @ R.T if left else R.T @ R  # (k, k)
    evals, evecs = torch.linalg.eigh(G)  # ascending
    Q = evecs[:, -rank:].flip(-1)  # (k, r), largest first
    s = evals[-rank:].flip(-1).clamp_min(0).sqrt()  # (r,) singular values
    root = s.clamp_min(float(s[0]) * 1e-12 + 1e-300).sqrt()  # (r,)
    if left:
        return Q * root, (Q.T @ R) / root[:, None]
    return (R @ Q) / root, root[:, None] * Q.T


@register_init("svd")
def init_svd(weights: list[torch.Tensor], ranks: list[int], diag: bool, info: dict) -> GroupInit:
    Ws = [w.double() for w in weights]
    W = torch.stack(Ws).mean(0)  # (d_out, d_in)
    d_out, d_in = W.shape
    factors = []
    for Wl, rank in zip(Ws, ranks):
        R = Wl - W
        d = None
        if diag:
            d = torch.diagonal(R)[: min(d_out, d_in)].clone()  # (k,)
            R = R - diag_k(d, d_out, d_in)
        A, B = truncated_svd(R, rank)
        factors.append((A, B, d))
    return GroupInit(W, factors)


@register_init("scratch")
def init_scratch(weights: list[torch.Tensor], ranks: list[int], diag: bool, info: dict) -> GroupInit:
    W = weights[0].clone()
    d_out, d_in = W.shape
    gen = info.get("generator")
    factors = []
    for rank in ranks:
        B = (torch.rand(rank, d_in, generator=gen, dtype=W.dtype) * 2 - 1) / d_in ** 0.5
        d = torch.zeros(min(d_out, d_in), dtype=W.dtype) if diag else None
        factors.append((torch.zeros(d_out, rank, dtype=W.dtype), B, d))
    return GroupInit(W, factors)


@register_init("empty")
def init_empty(weights: list[torch.Tensor], ranks: list[int], diag: bool, info: dict) -> GroupInit:
    d_out, d_in = weights[0].shape
    z = lambda *s: torch.zeros(*s, dtype=weights[0].dtype)  # noqa: E731
    return GroupInit(z(d_out, d_in), [(z(d_out, rank), z(rank, d_in), z(min(d_out, d_in)) if diag else None)
                                      for rank in ranks])
