"""Compact save format of a `SharedEncoder`, and loading it back.

A folder with two files:

- ``model.safetensors``: every tensor of the converted Hugging Face model once. safetensors
  refuses tensors that share memory, so a tensor held under several names (a group's W_shared,
  shared biases and norms, Whisper's tied output embedding) is written under its first name
  only;
- ``stackslim_share.json``: ``format``, ``version``, the family, the adapter options, the
  Hugging Face config, the `ShareSpec`, the groups, and ``aliases`` (name → the name its
  tensor is stored under).

`load_shared(path)` rebuilds the model from the config, makes the same layers residual with
the same groups (init "empty"), checks that every stored name and shape matches, and loads.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..models.base import EncoderError
from ..results import atomic_dir
from .model import SharedEncoder

SHARE_META = "stackslim_share.json"
WEIGHTS = "model.safetensors"
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


def save_shared(enc: SharedEncoder, path: Path) -> None:
    """Write `enc` in the compact format, atomically (temp folder, then rename)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EncoderError(f"output {str(path)!r} exists and is not a folder")
    tensors, aliases = _dedup(enc.model.state_dict(keep_vars=True))
    meta = {
        "format": FORMAT, "version": VERSION, "family": enc.family, "name": enc.name,
        "num_layers": enc.num_layers, "mode": getattr(enc.inner, "mode", None),
        "do_normalize": getattr(enc.inner, "do_normalize", True),
        "share": enc.spec.to_json(), "groups": enc.groups, "aliases": aliases,
        "hf_config": enc.model.config.to_dict(),
    }
    with atomic_dir(path) as tmp:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": FORMAT})
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


def load_shared(path: str | os.PathLike) -> SharedEncoder:
    """Read a folder written by `save_shared` (or `SharedEncoder.save`)."""
    from ..models.io import wrap_model
    from .convert import to_residual

    path = Path(path)
    if not is_shared_folder(path):
        raise EncoderError(f"{path}: no {SHARE_META}; not a shared (ResidualTransformer) model folder")
    meta = json.loads((path / SHARE_META).read_text())
    if meta.get("format") != FORMAT or int(meta.get("version", 0)) > VERSION:
        raise EncoderError(f"{path}: unsupported format {meta.get('format')!r} version {meta.get('version')}")
    if not (path / WEIGHTS).is_file():
        raise EncoderError(f"{path}: {WEIGHTS} is missing")
    dense = wrap_model(_build_model(meta["hf_config"]), name=meta.get("name", path.name),
                       mode=meta.get("mode"), do_normalize=meta.get("do_normalize", True))
    s = meta["share"]
    enc = to_residual(dense, groups=meta["groups"], rank=s["rank"], diag=s["diag"],
                      share_norms=s["share_norms"], init="empty")
    enc.spec = type(enc.spec)(**{**s, "matrices": tuple(s["matrices"])})
    try:
        stored = load_file(str(path / WEIGHTS))
    except Exception as e:  # corrupt or truncated file
        raise EncoderError(f"{path / WEIGHTS}: unreadable ({type(e).__name__}: {e})") from e
    want, want_aliases = _dedup(enc.model.state_dict(keep_vars=True), clone=False)
    if want_aliases != meta["aliases"]:
        raise EncoderError(f"{path}: the stored sharing does not match the rebuilt model")
    missing = sorted(set(want) - set(stored))
    extra = sorted(set(stored) - set(want))
    if missing or extra:
        raise EncoderError(f"{path}: weights do not match the config (missing {missing[:3]}, "
                           f"unexpected {extra[:3]})")
    for k, v in want.items():
        if tuple(stored[k].shape) != tuple(v.shape):
            raise EncoderError(f"{path}: {k} has shape {tuple(stored[k].shape)}, expected {tuple(v.shape)}")
    full = {k: stored[meta["aliases"].get(k, k)] for k in enc.model.state_dict()}
    enc.model.load_state_dict(full, strict=True)
    enc.model.eval()
    return enc
