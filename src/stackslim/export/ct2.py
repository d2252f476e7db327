"""CTranslate2 export of a Whisper model (pruned, teacher, or shared materialised) with
ctranslate2's own converter, and its encoder / greedy decoding for parity checks.

    hf_whisper_folder(enc, source, tmp / "hf")          # plain HF folder with the tokenizer
    convert_ct2(tmp / "hf", out, int8=False)            # out/model.bin, config.json, tokenizer.json, ...
    states = ct2_encode(out, features)                  # (B, 1500, D) from (B, n_mels, 3000)
    texts = ct2_transcribe(out, features, prompt, tokenizer)

The folder loads in CTranslate2 (`ctranslate2.models.Whisper`) and faster-whisper. Its input
is Hugging Face's 30 s log-mel; compare runtimes on the same features (faster-whisper pads the
spectrogram, not the audio, so its own front end differs on padded frames).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from ..models.base import Encoder, save_encoder
from ..models.bundled import bundled_model_dir
from ..models.io import BUNDLED_NAMES
from .config import ExportError

COPY_FILES = ("tokenizer.json", "preprocessor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "added_tokens.json", "normalizer.json",
                   "preprocessor_config.json", "generation_config.json")


def _tokenizer_source(enc: Encoder, source: Path | None) -> Path | None:
    """A folder holding the model's tokenizer.json: the source folder, or the bundled model the
    encoder was made from."""
    if source is not None and (source / "tokenizer.json").is_file():
        return source
    if enc.name in BUNDLED_NAMES:
        return bundled_model_dir(enc.name)
    return None


def hf_whisper_folder(enc: Encoder, source: Path | None, folder: Path) -> Path:
    """Write `enc` (a dense Whisper adapter with its decoder) as a plain HF folder with its
    tokenizer, generation and feature-extractor configs, ready for the converter."""

    tok = _tokenizer_source(enc, source)
    if tok is None:
        raise ExportError(f"{enc.name}: no tokenizer.json in the model folder, and not made from a "
                          f"bundled Whisper: CTranslate2 needs the tokenizer's vocabulary")
    save_encoder(enc, folder)
    for name in TOKENIZER_FILES:
        if (tok / name).is_file() and not (folder / name).is_file():
            shutil.copyfile(tok / name, folder / name)
    return folder


def convert_ct2(hf_dir: Path, out: Path, int8: bool = False) -> dict:
    """`ctranslate2.converters.TransformersConverter` of `hf_dir` into `out` (float32 or int8)."""
    from ctranslate2.converters import TransformersConverter

    quant = "int8" if int8 else None
    TransformersConverter(str(hf_dir), copy_files=list(COPY_FILES)).convert(
        str(out), quantization=quant, force=True)
    return {"converter": "ctranslate2.converters.TransformersConverter",
            "quantization": quant or "float32 (as stored)"}


def _model(path: str | os.PathLike, compute_type: str = "default"):
    import ctranslate2

    return ctranslate2.models.Whisper(str(path), device="cpu", compute_type=compute_type,
                                      intra_threads=1)


def ct2_encode(path: str | os.PathLike, features: np.ndarray) -> np.ndarray:
    """CTranslate2's encoder output (B, 1500, D) for HF log-mel features (B, n_mels, 3000)."""
    import ctranslate2

    model = _model(path)
    out = model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features, np.float32)),
                       to_cpu=True)
    return np.array(out)


def ct2_transcribe(path: str | os.PathLike, features: np.ndarray, prompt: Sequence[int], tokenizer,
                   max_length: int = 128) -> list[str]:
    """Greedy transcripts of HF log-mel features (B, n_mels, 3000) with CTranslate2's Whisper."""
    import ctranslate2

    model = _model(path)
    feats = ctranslate2.StorageView.from_array(np.ascontiguousarray(features, np.float32))
    res = model.generate(feats, [list(prompt)] * features.shape[0], beam_size=1,
                         max_length=max_length)
    return [tokenizer.decode(r.sequences_ids[0], skip_special_tokens=True).strip() for r in res]
