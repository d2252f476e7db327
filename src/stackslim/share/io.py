"""Compact save format of a `SharedEncoder`, and loading it back.

A folder with two or three files:

- ``model.safetensors``: every tensor of the *encoder* once. safetensors refuses tensors that
  share memory, so a tensor held under several names (a group's W_shared, shared biases and
  norms) is written under its first name only;
- ``decoder.safetensors`` (Whisper, unless ``decoder=False``): the rest of the Hugging Face
  model (decoder and tied output projection), which the encoder does not need but WER does.
  Each of its float32 tensors is written in float16 when every value survives the round trip
  exactly (true of the bundled Whisper models, which ship in float16), so it costs half and
  loads back bit for bit;
- ``stackslim_share.json``: ``format``, ``version``, the family, the adapter options, the
  Hugging Face config, the `ShareSpec`, the groups, ``aliases`` (name → the name its tensor
  is stored under), ``decoder`` (stored or not) and ``widen`` (the float16-stored names).

Keeping the two files apart is what makes the size account honest: whisper-base's decoder
(52M parameters, 208 MB in float32) used to sit in ``model.safetensors`` beside a 34 MB shared
encoder, and the folder (244 MB) was compared with the 82 MB dense encoder.

`load_shared(path)` builds the model from the config on the meta device, makes the same layers
residual with the same groups (structure only), checks that every stored name, shape and dtype
matches, and puts the stored tensors in place without copying: each shared tensor is one
Parameter, allocated once, and no dense copy of the stack is ever built. Without a stored
decoder the decoder is zeros (`enc.has_decoder` False): the encoder is complete, transcription
needs the original model's decoder.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn
from safetensors.torch import load_file, save_file

from ..models.base import EncoderError
from ..results import atomic_dir
from .layer import ResidualLinear
from .model import SharedEncoder, ShareSpec
from .size import module_prefix

SHARE_META = "stackslim_share.json"
WEIGHTS = "model.safetensors"
DECODER = "decoder.safetensors"
FORMAT = "stackslim-share"
VERSION = 1


def is_shared_folder(path: str | os.PathLike) -> bool:
    """True when `path` is a folder written by `save_shared`."""
    return (Path(path) / SHARE_META).is_file()


def _dedup(state: dict[str, torch.Tensor], clone: bool = True
           ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors stored once, alias → stored name) for a state dict with shared entries."""
    first: dict[int, str] = {}
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for k, v in state.items():
        if id(v) in first:
            aliases[k] = first[id(v)]
        else:
            first[id(v)] = k
            tensors[k] = v.detach().cpu().clone().contiguous() if clone else v
    return tensors, aliases


def _narrow(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """float32 tensors whose values are all float16 values, as float16; and their names."""
    out, widen = {}, []
    for k, v in tensors.items():
        if v.dtype == torch.float32 and torch.equal(v.half().float(), v):
            out[k] = v.half()
            widen.append(k)
        else:
            out[k] = v
    return out, widen


def save_shared(enc: SharedEncoder, path: Path, decoder: bool = True) -> None:
    """Write `enc` in the compact format, atomically (temp folder, then rename).

    decoder: also write the model's non-encoder tensors (Whisper's decoder) to DECODER.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EncoderError(f"output {str(path)!r} exists and is not a folder")
    tensors, aliases = _dedup(enc.model.state_dict(keep_vars=True))
    prefix = module_prefix(enc.model, enc.encoder_module)
    rest = {k: v for k, v in tensors.items() if not k.startswith(prefix)}
    rest, widen = _narrow(rest) if decoder else ({}, [])
    meta = {
        "format": FORMAT, "version": VERSION, "family": enc.family, "name": enc.name,
        "num_layers": enc.num_layers, "mode": getattr(enc.inner, "mode", None),
        "do_normalize": getattr(enc.inner, "do_normalize", True),
        "share": enc.spec.to_json(), "groups": enc.groups, "aliases": aliases,
        "decoder": bool(rest), "widen": widen, "hf_config": enc.model.config.to_dict(),
    }
    with atomic_dir(path) as tmp:
        save_file({k: v for k, v in tensors.items() if k.startswith(prefix)}, str(tmp / WEIGHTS),
                  metadata={"format": FORMAT})
        if rest:
            save_file(rest, str(tmp / DECODER), metadata={"format": FORMAT})
        (tmp / SHARE_META).write_text(json.dumps(meta, indent=2))


def _build_model(hf_config: dict):
    from transformers import AutoConfig, AutoModel, WhisperForConditionalGeneration

    cfg = dict(hf_config)
    mtype = cfg.pop("model_type", None)
    try:
        config = AutoConfig.for_model(mtype, **cfg)
    except (ValueError, KeyError) as e:
        raise EncoderError(f"stored config of model type {mtype!r} is unreadable ({e})") from e
    if mtype == "whisper":
        return WhisperForConditionalGeneration(config)
    return AutoModel.from_config(config)


def _residual_skeleton(enc, groups: list[list[int]], s: dict) -> None:
    """Make the layers of `enc` (built on the meta device) residual in place, with the stored
    groups and spec: the structure only, no values (`to_residual`'s without a dense copy)."""
    from .convert import _share_norms, set_submodule

    layers = list(enc.layers)
    meta = lambda t: nn.Parameter(torch.empty(t.shape, dtype=t.dtype, device="meta"))  # noqa: E731
    for members in groups:
        for name in s["matrices"]:
            dense = [layers[i].get_submodule(name) for i in members]
            W0 = dense[0].weight  # (d_out, d_in), on meta
            r = min(W0.shape) if s["rank"] == "full" else int(s["rank"])
            shared = meta(W0)  # one Parameter object for the whole group
            group_bias = meta(dense[0].bias) if s["share_norms"] and dense[0].bias is not None else None
            for i, lin in zip(members, dense):
                bias = group_bias if s["share_norms"] else (meta(lin.bias) if lin.bias is not None else None)
                set_submodule(layers[i], name, ResidualLinear(shared, r, diag=s["diag"], bias=bias))
        if s["share_norms"]:
            with torch.no_grad():
                _share_norms([layers[i] for i in members])


def load_shared(path: str | os.PathLike) -> SharedEncoder:
    """Read a folder written by `save_shared` (or `SharedEncoder.save`), compactly.

    The Hugging Face model is built on the meta device (no weights allocated), its layers are
    made residual with the stored groups, and every stored tensor becomes the model's
    Parameter as read from the file: each shared tensor is allocated once, and no dense copy of
    the stack ever exists. Without a stored decoder the decoder is zeros (`enc.has_decoder`
    False): the encoder is complete, transcription needs the original model's decoder.
    """
    from ..models.io import assign_tensors, fill_meta, wrap_model

    path = Path(path)
    if not is_shared_folder(path):
        raise EncoderError(f"{path}: no {SHARE_META}; not a shared (ResidualTransformer) model folder")
    meta = json.loads((path / SHARE_META).read_text())
    if meta.get("format") != FORMAT or int(meta.get("version", 0)) > VERSION:
        raise EncoderError(f"{path}: unsupported format {meta.get('format')!r} version {meta.get('version')}")
    if not (path / WEIGHTS).is_file():
        raise EncoderError(f"{path}: {WEIGHTS} is missing")
    with torch.device("meta"):
        dense = wrap_model(_build_model(meta["hf_config"]), name=meta.get("name", path.name),
                           mode=meta.get("mode"), do_normalize=meta.get("do_normalize", True))
    s = meta["share"]
    groups = meta["groups"]
    if sorted(i for g in groups for i in g) != list(range(dense.num_layers)):
        raise EncoderError(f"{path}: groups {groups} do not cover the {dense.num_layers} layers once")
    try:
        _residual_skeleton(dense, groups, s)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise EncoderError(f"{path}: the stored sharing does not fit the config ({e})") from e
    enc = SharedEncoder(dense, ShareSpec(**{**s, "matrices": tuple(s["matrices"])}))
    stored = {}
    for f in [WEIGHTS] + ([DECODER] if meta.get("decoder") else []):
        try:
            stored.update(load_file(str(path / f)))
        except Exception as e:  # missing, corrupt or truncated file
            raise EncoderError(f"{path / f}: unreadable ({type(e).__name__}: {e})") from e
    for k in meta.get("widen", []):
        stored[k] = stored[k].float()
    want, want_aliases = _dedup(enc.model.state_dict(keep_vars=True), clone=False)
    if want_aliases != meta["aliases"]:
        raise EncoderError(f"{path}: the stored sharing does not match the rebuilt model")
    enc.has_decoder = "decoder" not in meta or bool(meta["decoder"])
    prefix = module_prefix(enc.model, enc.encoder_module)
    need = {k for k in want if enc.has_decoder or k.startswith(prefix)}
    missing = sorted(need - set(stored))
    extra = sorted(set(stored) - set(want))
    if missing or extra:
        raise EncoderError(f"{path}: weights do not match the config (missing {missing[:3]}, "
                           f"unexpected {extra[:3]})")
    for k in need:
        if tuple(stored[k].shape) != tuple(want[k].shape) or stored[k].dtype != want[k].dtype:
            raise EncoderError(f"{path}: {k} is {tuple(stored[k].shape)} {stored[k].dtype}, expected "
                               f"{tuple(want[k].shape)} {want[k].dtype}")
    assign_tensors(enc.model, stored, meta["aliases"])
    fill_meta(enc.model)  # the decoder when it was not stored: zeros
    enc.model.eval()
    return enc
