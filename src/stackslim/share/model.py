"""`SharedEncoder`: an encoder whose layers hold `ResidualLinear` maps, behind the `Encoder` interface.

It wraps a converted copy of a family adapter (`inner`); the adapter's forward only calls its
layers, so hidden states, heads, pruning and the Whisper decoder work unchanged. Which layers
share is read from the tensors themselves (layers holding the same W_shared object form a
group), so the groups stay right after `without_layers`.

    shared.hidden_states(waves)   # as any encoder
    shared.save(path)             # compact: each shared tensor once (see share/io.py)
    dense = shared.materialize()  # plain adapter of the original family, same outputs
    shared.size_report()          # unique parameters, dense vs shared, by kind
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..models.base import Encoder
from .io import save_shared
from .layer import ResidualLinear


@dataclass(frozen=True)
class ShareSpec:
    """How the layers were made residual (everything needed to rebuild the structure)."""

    rank: int | str  # r, "full" (min(d_in, d_out) per matrix), or "allocated" (see ranks)
    diag: bool
    share_norms: bool
    init: str
    matrices: tuple[str, ...]  # the shared linear maps, names inside a layer (six by default)
    ranks: dict[str, int] | None = None  # "layer.map" → r of that map, when ranks differ

    def rank_of(self, layer: int, name: str, shape: tuple[int, int]) -> int:
        """r of map `name` in `layer`, whose dense weight has `shape` (d_out, d_in)."""
        if self.ranks is not None:
            return int(self.ranks[f"{layer}.{name}"])
        return min(shape) if self.rank == "full" else int(self.rank)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["matrices"] = list(self.matrices)
        return d


class SharedEncoder(Encoder):
    """A family adapter whose six linear maps per layer are `ResidualLinear`s.

    Attributes:
        inner: the converted adapter (its `model` is the converted Hugging Face module).
        spec: the `ShareSpec`.
        conversion: one dict per (layer, matrix): layer, group, matrix, rel_error, and with
            calibration out_error (and the aware init's choice of the shared weight, shared).
        alignment: with `to_residual(..., align=True)`, the group weight spread per matrix
            before and after the permutations (`align.align_groups`); else None.
    """

    def __init__(self, inner: Encoder, spec: ShareSpec, conversion: list[dict] | None = None):
        super().__init__(inner.model, name=inner.name)
        self.inner = inner
        self.family = inner.family
        self.spec = spec
        self.conversion = list(conversion or [])
        self.alignment: dict | None = None
        self.allocation: dict | None = None  # with to_residual(..., size=): `ranks.Allocation`
        self.has_decoder = True  # False when loaded from a folder saved without the decoder

    # -- delegation to the family adapter ----------------------------------------------
    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            # anything else the family adapter offers: mode, do_normalize, features, ...
            inner = self.__dict__.get("_modules", {}).get("inner")
            if inner is None or name.startswith("_"):
                raise
            return getattr(inner, name)

    @property
    def layers(self) -> nn.ModuleList:
        return self.inner.layers

    @property
    def final_norm_module(self) -> nn.Module | None:
        return self.inner.final_norm_module

    @property
    def encoder_module(self) -> nn.Module:
        return self.inner.encoder_module

    def front_end(self, waves):
        return self.inner.front_end(waves)

    def stack_context(self, x0: torch.Tensor, lengths: torch.Tensor) -> dict:
        return self.inner.stack_context(x0, lengths)

    def run_layer(self, i: int, x: torch.Tensor, ctx: dict) -> torch.Tensor:
        return self.inner.run_layer(i, x, ctx)

    def _set_num_layers(self, n: int) -> None:
        self.inner._set_num_layers(n)

    def _replace_layers(self, layers: nn.ModuleList, dropped: list[int]) -> None:
        self.inner._replace_layers(layers, dropped)

    # -- structure -----------------------------------------------------------------------
    def residual(self, i: int, name: str) -> ResidualLinear:
        """The ResidualLinear `name` (e.g. "fc1") of layer i."""
        return self.layers[i].get_submodule(name)

    @property
    def groups(self) -> list[list[int]]:
        """Lists of 0-based layers that hold the same W_shared (read from the tensors)."""
        first = self.spec.matrices[0]
        by_id: dict[int, list[int]] = {}
        for i in range(self.num_layers):
            by_id.setdefault(id(self.residual(i, first).shared), []).append(i)
        return sorted(by_id.values())

    def shared_parameters(self) -> list[nn.Parameter]:
        """Every W_shared, once."""
        seen: dict[int, nn.Parameter] = {}
        for layer in self.layers:
            for m in layer.modules():
                if isinstance(m, ResidualLinear):
                    seen.setdefault(id(m.shared), m.shared)
        return list(seen.values())

    def conversion_summary(self) -> dict[str, dict[str, float]]:
        """Per matrix name: mean and max over layers of the relative weight error (mean, max)
        and, when calibrated, of the relative output error (out_mean, out_max)."""
        out: dict[str, dict[str, float]] = {}
        for name in self.spec.matrices:
            rows = [c for c in self.conversion if c["matrix"] == name]
            if rows:
                e = [c["rel_error"] for c in rows]
                out[name] = {"mean": float(np.mean(e)), "max": float(np.max(e))}
                o = [c["out_error"] for c in rows if "out_error" in c]
                if o:
                    out[name].update(out_mean=float(np.mean(o)), out_max=float(np.max(o)))
        return out

    # -- conversion back and saving ------------------------------------------------------
    @torch.no_grad()
    def materialize(self) -> Encoder:
        """A plain dense adapter of the original family computing the same function.

        Every ResidualLinear becomes an nn.Linear with W_shared + A B + diag_k(d); shared biases
        and norms are copied per layer, so nothing is shared and the result saves and loads
        with plain `transformers` (`Encoder.save`).
        """
        dense = copy.deepcopy(self.inner)
        seen: set[int] = set()
        for layer in dense.layers:
            for name, m in list(layer.named_modules()):
                if not name:
                    continue
                parent, _, leaf = name.rpartition(".")
                owner = layer.get_submodule(parent) if parent else layer
                if isinstance(m, ResidualLinear):
                    setattr(owner, leaf, m.to_linear())
                elif isinstance(m, nn.LayerNorm):
                    if id(m) in seen:  # a group's shared norm: each layer gets its own copy
                        setattr(owner, leaf, copy.deepcopy(m))
                    seen.add(id(m))
        return dense

    def save(self, path: str | Path, decoder: bool = True) -> None:
        """Compact format: safetensors with each shared tensor once + a JSON config; Whisper's
        decoder in its own file (`decoder=False`: the encoder alone)."""
        save_shared(self, Path(path), decoder=decoder)

    # -- size ------------------------------------------------------------------------------
    def size_report(self) -> dict[str, Any]:
        """Unique parameters of the stack and the encoder, shared vs. the dense equivalent.

        Stack parameters are split by kind: shared_weights (W_shared), low_rank (A, B), diag (d),
        bias (of the residual maps), norm (LayerNorms) and other (the rest of the layers).
        """
        kinds = {"shared_weights": 0, "low_rank": 0, "diag": 0, "bias": 0, "norm": 0, "other": 0}
        seen: set[int] = set()

        def add(kind: str, params: Sequence[nn.Parameter | None]) -> None:
            for p in params:
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    kinds[kind] += p.numel()

        for layer in self.layers:
            for m in layer.modules():
                if isinstance(m, ResidualLinear):
                    add("shared_weights", [m.shared])
                    add("low_rank", [m.A, m.B])
                    add("diag", [m.d])
                    add("bias", [m.bias])
                elif isinstance(m, nn.LayerNorm):
                    add("norm", list(m.parameters(recurse=False)))
        for layer in self.layers:
            add("other", list(layer.parameters()))
        stack = sum(kinds.values())
        dense_stack = sum(_dense_params(layer) for layer in self.layers)
        enc_params = self.num_params()
        rest = enc_params - stack
        return {"stack_params": stack, "dense_stack_params": dense_stack,
                "stack_ratio": stack / dense_stack, "encoder_params": enc_params,
                "dense_encoder_params": dense_stack + rest,
                "encoder_ratio": enc_params / (dense_stack + rest), "by_kind": kinds,
                "groups": self.groups, **self.spec.to_json()}


def _dense_params(layer: nn.Module) -> int:
    """Parameters `layer` would have dense: d_in·d_out (+ bias) per ResidualLinear, the rest as is."""
    n = 0
    for m in layer.modules():
        if isinstance(m, ResidualLinear):
            n += m.in_features * m.out_features + (m.bias.numel() if m.bias is not None else 0)
        else:
            n += sum(p.numel() for p in m.parameters(recurse=False))
    return n
