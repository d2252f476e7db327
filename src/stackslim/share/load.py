"""`load_shared(path)`: read back a folder written by `save_shared` (the format: `io.py`)."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..models.base import EncoderError, read_meta
from ..models.compact import assign_tensors, fill_meta
from ..models.io import register_folder_reader, wrap_model
from .convert import _share_norms, set_submodule
from .io import DECODER, FORMAT, SHARE_META, VERSION, WEIGHTS, _dedup, is_shared_folder, module_prefix
from .layer import ResidualLinear
from .model import SharedEncoder, ShareSpec


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


def _residual_skeleton(enc, groups: list[list[int]], spec: ShareSpec) -> None:
    """Make the layers of `enc` (built on the meta device) residual in place, with the stored
    groups and spec: the structure only, no values (`to_residual`'s without a dense copy)."""
    s = spec.to_json()
    layers = list(enc.layers)
    meta = lambda t: nn.Parameter(torch.empty(t.shape, dtype=t.dtype, device="meta"))  # noqa: E731
    for members in groups:
        for name in s["matrices"]:
            dense = [layers[i].get_submodule(name) for i in members]
            W0 = dense[0].weight  # (d_out, d_in), on meta
            shared = meta(W0)  # one Parameter object for the whole group
            group_bias = meta(dense[0].bias) if s["share_norms"] and dense[0].bias is not None else None
            for i, lin in zip(members, dense):
                bias = group_bias if s["share_norms"] else (meta(lin.bias) if lin.bias is not None else None)
                r = spec.rank_of(i, name, tuple(W0.shape))
                set_submodule(layers[i], name, ResidualLinear(shared, r, diag=s["diag"], bias=bias))
        if s["share_norms"]:
            with torch.no_grad():
                _share_norms([layers[i] for i in members])


def load_shared(path: str | os.PathLike, decoder: bool = True) -> SharedEncoder:
    """Read a folder written by `save_shared` (or `SharedEncoder.save`), compactly.

    The Hugging Face model is built on the meta device (no weights allocated), its layers are
    made residual with the stored groups, and every stored tensor becomes the model's
    Parameter as read from the file: each shared tensor is allocated once, and no dense copy of
    the stack ever exists. Without a stored decoder the decoder is zeros (`enc.has_decoder`
    False): the encoder is complete, transcription needs the original model's decoder.

    `decoder=False` leaves a stored decoder unread (zeros, `has_decoder` False) for work that
    runs the encoder only (ONNX export, timing, a device): whisper-base's decoder is stored in
    float16 and widened to float32 on reading, about 200 MiB of memory that the encoder never
    uses (a shared K3-r16 whisper-base peaked at 307 MiB with it, 2.2x the dense teacher).
    """
    path = Path(path)
    if not is_shared_folder(path):
        raise EncoderError(f"{path}: no {SHARE_META}; not a shared (ResidualTransformer) model folder")
    meta = read_meta(path / SHARE_META)
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
        spec = ShareSpec(**{**s, "matrices": tuple(s["matrices"])})
        _residual_skeleton(dense, groups, spec)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise EncoderError(f"{path}: the stored sharing does not fit the config ({e})") from e
    enc = SharedEncoder(dense, spec)
    stored = {}
    read_decoder = bool(meta.get("decoder")) and decoder
    for f in [WEIGHTS] + ([DECODER] if read_decoder else []):
        try:
            stored.update(load_file(str(path / f)))
        except Exception as e:  # missing, corrupt or truncated file
            raise EncoderError(f"{path / f}: unreadable ({type(e).__name__}: {e})") from e
    for k in meta.get("widen", []):
        if k in stored:
            stored[k] = stored[k].float()
    want, want_aliases = _dedup(enc.model.state_dict(keep_vars=True), clone=False)
    if want_aliases != meta["aliases"]:
        raise EncoderError(f"{path}: the stored sharing does not match the rebuilt model")
    enc.has_decoder = ("decoder" not in meta or bool(meta["decoder"])) and decoder
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


register_folder_reader(SHARE_META, load_shared)
