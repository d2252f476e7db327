"""Turn a dense encoder into the ResidualTransformer form.

    shared = to_residual(enc, groups=3, rank=16, diag=True, share_norms=False)

All six linear maps of every layer (Q, K, V, attention output, feed-forward in and out) become
`ResidualLinear`s; the layers of a group hold one W_shared per map. How the new tensors are
filled is an *init method* (`INITS`, extend with `register_init`):

- ``svd`` (the plain conversion): W_shared = mean of the group's W_l; R_l = W_l − W_shared;
  d_l = the first k = min(d_in, d_out) diagonal entries of R_l (when diag is on) and
  R_l ← R_l − diag_k(d_l); A_l B_l = the best rank-r approximation of R_l (truncated SVD,
  balanced between A and B). At r = k the reconstruction is exact.
- ``scratch`` (the paper's from-scratch setting): W_shared = the first layer's weight of the
  group (its fresh initialisation), A = 0, B ~ U(−1/√d_in, 1/√d_in), d = 0, so that every
  layer starts as the shared map and A gets gradients at once.
- ``aware`` (`aware.py`): keeps each map's outputs on calibration clips (whitened SVD, shared
  weight fitted in the output metric, chosen among mean / member / fitted).
- ``empty``: zeros; the structure only (`load_shared` fills it).

An init method gets the group's dense weights and returns W_shared and the per-layer
(A, B, d), using the `info` it receives (layers, matrix name, group, the dense encoder, the
calibration second moments ``cov`` when `calib` is given, and whatever
`to_residual(..., init_options=...)` passes).

With ``align=True`` the FFN neurons and attention heads of every layer are first permuted to
match a reference layer of its group (`align.py`; the function is unchanged). With ``calib``
(clips), every map's input second moment is collected (`calibrate.py`) and the conversion
reports the output error ‖(W − Ŵ) C^{1/2}‖_F / ‖W C^{1/2}‖_F beside the weight error.

Biases and norms stay per layer by default (so that full rank is exact); with
``share_norms=True`` (the paper's accounting) each group holds one bias per map (the mean of
its layers') and one copy of each LayerNorm (the mean of the weights and biases).
"""
from __future__ import annotations

import copy
from typing import Mapping, Sequence

import torch
from torch import nn

from ..models.base import Encoder, EncoderError
from ..models.io import wrap_model
from .align import align_groups
from .aware import output_error
from .calibrate import CalibStats, collect_calibration
from .grouping import GroupSpec, resolve_groups
from .inits import (INITS, MATRICES, GroupInit, InitFn, diag_k,  # noqa: F401 (re-exported)
                    init_empty, init_scratch, init_svd, layer_matrices, register_init,
                    truncated_svd)
from .layer import ResidualLinear
from .model import SharedEncoder, ShareSpec
from .ranks import allocate_ranks


def set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _dense(layer: nn.Module, name: str, i: int) -> nn.Linear:
    try:
        lin = layer.get_submodule(name)
    except AttributeError:
        raise EncoderError(f"layer {i} has no linear map {name!r}") from None
    if isinstance(lin, ResidualLinear):
        raise EncoderError(f"layer {i} {name} is already residual: convert a dense encoder")
    if not isinstance(lin, nn.Linear):
        raise EncoderError(f"layer {i} {name} is a {type(lin).__name__}, not a Linear")
    return lin


def check_rank(enc: Encoder, matrices: Sequence[str], rank: int | str) -> None:
    """Raise naming the first matrix whose min(d_in, d_out) is below `rank`."""
    if rank == "full":
        return
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
        raise EncoderError(f"rank must be an integer >= 0 or 'full', got {rank!r}")
    for i, layer in enumerate(enc.layers):
        for name in matrices:
            d_out, d_in = _dense(layer, name, i).weight.shape
            if rank > min(d_in, d_out):
                raise EncoderError(f"rank {rank} is above min(d_in, d_out) = {min(d_in, d_out)} of "
                                   f"{name} ({d_out}x{d_in}) in layer {i}; choose rank <= {min(d_in, d_out)}")


def _share_norms(layers: list[nn.Module]) -> None:
    """One LayerNorm object per name for the group: the mean of the layers' norms."""
    names = [n for n, m in layers[0].named_modules() if isinstance(m, nn.LayerNorm)]
    for name in names:
        mods = [layer.get_submodule(name) for layer in layers]
        norm = copy.deepcopy(mods[0])
        with torch.no_grad():
            for pname, p in norm.named_parameters():
                p.copy_(torch.stack([getattr(m, pname) for m in mods]).mean(0))
        for layer in layers:
            set_submodule(layer, name, norm)


@torch.no_grad()
def to_residual(enc: Encoder, groups: GroupSpec = 3, rank: int | str = 16, diag: bool = True,
                share_norms: bool = False, init: str = "svd", max_size: int | None = None,
                blocks=None, waves=None, seed: int = 0, init_options: dict | None = None,
                calib=None, align: bool = False, calib_batch: int = 8,
                matrices: Sequence[str] | None = None,
                ranks: Mapping[tuple[int, str], int] | None = None,
                size: float | None = None) -> SharedEncoder:
    """A ResidualTransformer copy of `enc` (`enc` itself is left untouched).

    Args:
        enc: a dense encoder of a supported family.
        groups: K (runs of K adjacent layers), "blocks", or lists of 0-based layer indices.
        rank: r of every layer's A B (at most min(d_in, d_out) of each matrix), or "full".
        diag: give every layer its own diagonal d.
        share_norms: one bias per map and one copy of each LayerNorm per group (the paper's
            size accounting); False keeps them per layer, so that full rank is exact.
        init: how to fill the new tensors: "svd" (plain conversion), "scratch", "empty", or a
            method added with `register_init`.
        max_size: with groups="blocks": cut blocks into runs of at most this many layers.
        blocks, waves: with groups="blocks": the measured blocks, or clips to measure them on.
        seed: random seed of init methods that draw (scratch).
        init_options: extra entries of the `info` dict every init call receives (e.g.
            ``aware_damp``, ``aware_shared`` of the aware method).
        calib: calibration clips (list of 16 kHz arrays) or `CalibStats` already collected on
            the (aligned) encoder: needed by init "aware"; with any init, the output errors.
        align: permute FFN neurons and attention heads to match within each group first.
        calib_batch: clips per forward while collecting the calibration statistics.
        matrices: the maps to share, names inside a layer (default: all six of the family,
            `layer_matrices`); the others stay dense (e.g. only the feed-forward maps).
        ranks: (layer, map name) → r_l of that map's A B, for every shared map (a size budget's
            allocation, `ranks.allocate_ranks`); overrides `rank`.
        size: a budget instead of `rank`: the shared stack's parameters as a fraction of the
            dense stack's, ranks chosen per layer and map by `ranks.allocate_ranks` (in the
            calibrated output metric with init "aware", else in weight space), after `align`.

    Returns:
        A `SharedEncoder` with the same interface as `enc`; `.conversion` holds, per matrix, the
        relative weight error ‖W_l − Ŵ_l‖_F / ‖W_l‖_F (``rel_error``), with `calib` the
        relative output error (``out_error``), and with init "aware" the shared weight's
        ``choice``; `.alignment` the group weight spread before and after `align`.
    """
    if isinstance(enc, SharedEncoder):
        raise EncoderError("the encoder is already shared; materialize() it first")
    if init not in INITS:
        raise EncoderError(f"unknown init {init!r}: choose from {', '.join(INITS)}")
    family_maps = layer_matrices(enc.family)
    matrices = tuple(matrices) if matrices else family_maps
    unknown = [m for m in matrices if m not in family_maps]
    if unknown:
        raise EncoderError(f"{enc.family} layers have no shareable map {unknown[0]!r} "
                           f"(maps: {', '.join(family_maps)})")
    matrices = tuple(m for m in family_maps if m in matrices)  # the family's order
    if ranks is not None:
        ranks = {(int(i), str(n)): int(r) for (i, n), r in ranks.items()}
        need = {(i, n) for i in range(enc.num_layers) for n in matrices}
        if set(ranks) != need:
            bad = sorted(need ^ set(ranks))[0]
            raise EncoderError(f"ranks must give one rank per (layer, map) of the shared maps; "
                               f"{'missing' if bad in need else 'unexpected'} {bad}")
        for (i, n), r in ranks.items():
            d_out, d_in = _dense(enc.layers[i], n, i).weight.shape
            if not 0 <= r <= min(d_in, d_out):
                raise EncoderError(f"rank {r} of {n} in layer {i} is outside 0..{min(d_in, d_out)}")
    else:
        check_rank(enc, matrices, rank)
    part = resolve_groups(enc, groups, max_size=max_size, blocks=blocks, waves=waves)
    inner = copy.deepcopy(enc)
    layers = list(inner.layers)
    alignment = None
    if align:
        alignment = align_groups(inner, part)  # in place, function unchanged
    stats = None
    if calib is not None:
        stats = calib if isinstance(calib, CalibStats) else collect_calibration(
            inner, calib, matrices, batch_size=calib_batch)
    elif init == "aware":
        raise EncoderError("init='aware' needs calibration clips: to_residual(..., calib=waves)")
    allocation = None
    if size is not None:
        if ranks is not None:
            raise EncoderError("give ranks or size, not both")
        allocation = allocate_ranks(layers, part, matrices, size, diag, share_norms,
                                    stats if init == "aware" else None)
        ranks = allocation.ranks
    gen = torch.Generator().manual_seed(seed)
    errors: list[dict] = []
    for g, members in enumerate(part):
        for name in matrices:
            dense = [_dense(layers[i], name, i) for i in members]
            W0 = dense[0].weight
            rs = [ranks[(i, name)] if ranks is not None else
                  (min(W0.shape) if rank == "full" else int(rank)) for i in members]
            covs = [stats.cov(i, name) for i in members] if stats is not None else None
            info = {"encoder": enc, "layers": members, "matrix": name, "group": g, "generator": gen,
                    "cov": covs, **(init_options or {})}
            out = INITS[init]([lin.weight.detach().cpu() for lin in dense], rs, diag, info)
            shared = nn.Parameter(out.shared.to(W0.dtype).to(W0.device))
            group_bias = None
            if share_norms and dense[0].bias is not None:
                group_bias = nn.Parameter(torch.stack([lin.bias for lin in dense]).mean(0))
            for i, lin, r, (A, B, d) in zip(members, dense, rs, out.factors):
                bias = group_bias if share_norms else (
                    nn.Parameter(lin.bias.detach().clone()) if lin.bias is not None else None)
                res = ResidualLinear(shared, r, diag=diag, bias=bias)
                res.A.copy_(A)
                res.B.copy_(B)
                if diag:
                    res.d.copy_(d)
                if init != "empty":
                    errors.append(_errors(lin.weight, res.weight, i, g, name, out.choice,
                                          covs[members.index(i)] if covs else None))
                set_submodule(layers[i], name, res)
        if share_norms:
            _share_norms([layers[i] for i in members])
    spec = ShareSpec(rank="allocated" if ranks is not None else rank, diag=diag,
                     share_norms=share_norms, init=init, matrices=matrices,
                     ranks=None if ranks is None else {f"{i}.{n}": r for (i, n), r in sorted(ranks.items())})
    shared = SharedEncoder(inner, spec, errors)
    shared.alignment = alignment
    shared.allocation = allocation.to_json() if allocation is not None else None
    return shared


def _errors(W: torch.Tensor, W_hat: torch.Tensor, layer: int, group: int, name: str, choice: str,
            C: torch.Tensor | None) -> dict:
    """One conversion row: relative weight error, and output error when C (d_in, d_in) is known."""
    W, W_hat = W.detach().double(), W_hat.detach().double()
    row = {"layer": layer, "group": group, "matrix": name,
           "rel_error": float((W - W_hat).norm() / W.norm().clamp_min(1e-30))}
    if C is not None:
        row["out_error"] = output_error(W, W_hat, C)
    if choice:
        row["shared"] = choice
    return row


def from_config(hf_config, groups: GroupSpec = 3, rank: int = 16, diag: bool = True,
                share_norms: bool = True, seed: int = 0, name: str = "") -> SharedEncoder:
    """A freshly initialised ResidualTransformer encoder of a Hugging Face config (from scratch).

    `hf_config` is a config of a supported family (e.g. `transformers.WhisperConfig(...)`); the
    model is built with random weights, then every layer becomes residual with init "scratch".
    """
    torch.manual_seed(seed)
    if getattr(hf_config, "model_type", None) == "whisper":
        from transformers import WhisperForConditionalGeneration

        model = WhisperForConditionalGeneration(hf_config)
    else:
        from transformers import AutoModel

        model = AutoModel.from_config(hf_config)
    enc = wrap_model(model, name=name or f"scratch-{hf_config.model_type}")
    return to_residual(enc, groups=groups, rank=rank, diag=diag, share_norms=share_norms,
                       init="scratch", seed=seed)
