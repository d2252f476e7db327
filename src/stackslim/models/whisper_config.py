"""Whisper's special tokens, generation config and feature extractor, from the model's own
vocabulary: what the decoder (`transcribe`), the CTranslate2 reader and the bundled models share.
"""
from __future__ import annotations

import functools
from typing import Sequence

from ..errors import EncoderError
from .base import SAMPLE_RATE

MAX_NEW_TOKENS = 128
SPECIAL_TOKENS = {"sot": "<|startoftranscript|>", "eot": "<|endoftext|>", "en": "<|en|>",
                  "transcribe": "<|transcribe|>", "translate": "<|translate|>",
                  "notimestamps": "<|notimestamps|>", "startofprev": "<|startofprev|>"}


def whisper_special_ids(vocab: dict[str, int], multilingual: bool, label: str) -> dict[str, int]:
    """Ids of Whisper's special tokens (the keys of SPECIAL_TOKENS that `vocab` has)."""
    ids = {k: vocab[t] for k, t in SPECIAL_TOKENS.items() if t in vocab}
    need = ["sot", "eot", "notimestamps"] + (["en", "transcribe"] if multilingual else [])
    missing = [SPECIAL_TOKENS[k] for k in need if k not in ids]
    if missing:
        raise EncoderError(f"{label}: vocabulary lacks Whisper special token(s) {missing}")
    return ids


def whisper_generation_config(ids: dict[str, int], multilingual: bool, max_length: int,
                              vocab: dict[str, int], suppress: Sequence[int] = (),
                              begin_suppress: Sequence[int] = (), lang_ids: Sequence[int] = (),
                              alignment_heads: Sequence[Sequence[int]] = ()):
    """The GenerationConfig that HF's Whisper `generate` expects, from the model's own ids.

    English-only and multilingual models number their special tokens differently (tiny.en:
    sot 50257, notimestamps 50362; base: sot 50258, en 50259, transcribe 50359, notimestamps
    50363); a wrong id makes the decoder loop on one word.
    """
    from transformers import GenerationConfig

    gen = GenerationConfig(
        decoder_start_token_id=ids["sot"], bos_token_id=ids["eot"], eos_token_id=ids["eot"],
        pad_token_id=ids["eot"], max_length=max_length,
        no_timestamps_token_id=ids["notimestamps"], prev_sot_token_id=ids.get("startofprev"),
        is_multilingual=multilingual, return_timestamps=False, max_initial_timestamp_index=50,
        suppress_tokens=list(suppress), begin_suppress_tokens=list(begin_suppress),
        alignment_heads=[list(h) for h in alignment_heads])
    if multilingual:
        id_to_tok = {i: t for t, i in vocab.items()}
        gen.lang_to_id = {id_to_tok[i]: i for i in lang_ids if i in id_to_tok}
        gen.lang_to_id.setdefault(SPECIAL_TOKENS["en"], ids["en"])
        gen.task_to_id = {k: ids[k] for k in ("transcribe", "translate") if k in ids}
    return gen


@functools.lru_cache(maxsize=4)
def feature_extractor(n_mels: int = 80):
    """`WhisperFeatureExtractor` for n_mels bins (80, or 128 for large-v3); built offline."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=SAMPLE_RATE)
