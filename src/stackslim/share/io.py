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

`load_shared(path)` (`load.py`) builds the model from the config on the meta device, makes the
same layers residual with the same groups (structure only), checks that every stored name, shape
and dtype matches, and puts the stored tensors in place without copying: each shared tensor is
one Parameter, allocated once, and no dense copy of the stack is ever built. Without a stored
decoder the decoder is zeros (`enc.has_decoder` False): the encoder is complete, transcription
needs the original model's decoder.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..models.base import Encoder, EncoderError
from ..results import atomic_dir

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


def module_prefix(root, target) -> str:
    """Name prefix of submodule `target`'s tensors in `root.state_dict()` ('': root itself)."""
    for name, m in root.named_modules():
        if m is target:
            return f"{name}." if name else ""
    return ""


def save_shared(enc: Encoder, path: Path, decoder: bool = True) -> None:
    """Write the `SharedEncoder` `enc` in the compact format, atomically (temp folder, then
    rename).

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
