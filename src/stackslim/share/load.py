"""`load_shared(path)`: read back a folder written by `save_shared` (the format: `io.py`)."""
from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import load_file

from ..models.base import EncoderError, read_meta
from ..models.io import wrap_model
from .convert import to_residual
from .io import DECODER, FORMAT, SHARE_META, VERSION, WEIGHTS, _dedup, is_shared_folder, module_prefix
from .model import SharedEncoder


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
    path = Path(path)
    if not is_shared_folder(path):
        raise EncoderError(f"{path}: no {SHARE_META}; not a shared (ResidualTransformer) model folder")
    meta = read_meta(path / SHARE_META)
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
