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

`load_shared(path)` rebuilds the model from the config, makes the same layers residual with
the same groups (init "empty"), checks that every stored name and shape matches, and loads.
Without a stored decoder the decoder keeps its fresh random weights (`enc.has_decoder` False):
the encoder is complete, transcription needs the original model's decoder.
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
    if not enc.has_decoder:  # encoder only: the rest keeps its fresh weights
        prefix = module_prefix(enc.model, enc.encoder_module)
        fresh = enc.model.state_dict()
        stored.update({k: fresh[k] for k in want if not k.startswith(prefix)})
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
