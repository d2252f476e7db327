"""Word error rate of any encoder (dense, pruned, mimic or shared) through the original Whisper
decoder: the study and `stackslim share` measure every variant with these functions.

WER: the encoder gives its last hidden state (after the final norm) on each clip; the original
Whisper model decodes it greedily (`models.transcribe.transcribe` with `encoder_states`), so
only the encoder differs between teacher and student. Every clip is padded with silence to
Whisper's own 30 s window (`WER_WINDOW_S`), the input Whisper and its runtimes decode: with the
shorter window used before (max(6 s, clip + 3.5 s)) even the uncompressed whisper-tiny.en
repeated synth-sentences until its token limit, while with 30 s the teacher's transcripts equal
`transcribe`'s padded ones (tests/evaluate/test_wer_padded.py checks the equality). Training losses that read sentences (`share.asr`) keep the shorter window for speed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..data import load_dataset
from ..models.base import Encoder, EncoderError
from ..models.transcribe import corpus_wer, load_whisper, transcribe, wer_edits, wer_interval

WER_WINDOW_S = 30.0  # Whisper's input window: every clip is padded with silence to it


def sentence_clips(data: str = "synth-sentences", n: int = 60) -> tuple[list[np.ndarray], list[str]]:
    """`n` evenly spread clips of the set's ``split=eval`` part (all clips when it has no split
    column) and their transcripts (the label column)."""
    ds = load_dataset(data)
    idx = [i for i, c in enumerate(ds.clips) if c.get("split") in (None, "", "eval")]
    if not idx:
        raise EncoderError(f"{data}: no clips with split=eval to transcribe")
    if n and n < len(idx):
        idx = [idx[int(j)] for j in np.linspace(0, len(idx) - 1, n).round()]
    return [ds.load(i) for i in idx], [ds.clips[i].label for i in idx]


def encoder_outputs(enc: Encoder, waves: Sequence[np.ndarray], batch_size: int = 8) -> list[torch.Tensor]:
    """Last hidden state (after the final norm) of every clip, unpadded: (T_i, D) each."""
    out = []
    for s in range(0, len(waves), batch_size):
        hs = enc.hidden_states(list(waves[s : s + batch_size]))
        out += [hs.states[-1][b, :n].clone() for b, n in enumerate(hs.lengths.tolist())]
    return out


def pad_silence(waves: Sequence[np.ndarray], min_s: float = 6.0, tail_s: float = 3.5,
                sr: int = 16000) -> list[np.ndarray]:
    """Each clip followed by zeros up to max(min_s, clip + tail_s) seconds (at most 30 s)."""
    out = []
    for w in waves:
        n = int(min(30.0 * sr, max(min_s * sr, len(w) + tail_s * sr)))
        out.append(np.concatenate([w, np.zeros(max(0, n - len(w)), np.float32)]))
    return out


def whisper_wer(enc: Encoder, whisper_model, tokenizer, waves: Sequence[np.ndarray],
                refs: Sequence[str], batch_size: int = 8, max_new_tokens: int = 64) -> dict:
    """Corpus WER of `whisper_model`'s decoder reading `enc`'s states, its bootstrap 95%
    interval over sentences (``interval``: [low, high]), and the transcripts."""
    states = encoder_outputs(enc, pad_silence(waves, min_s=WER_WINDOW_S), batch_size)
    hyps = transcribe(whisper_model, tokenizer, encoder_states=states, batch_size=batch_size,
                      max_new_tokens=max_new_tokens)
    edits, words = wer_edits(list(refs), hyps)
    return {"wer": corpus_wer(edits, words), "interval": list(wer_interval(edits, words)),
            "clips": len(refs), "hypotheses": hyps}


def load_tokenizer(spec: str):
    """The Whisper model and tokenizer of a model spec, or (None, reason) when there is none."""
    try:
        return load_whisper(spec)
    except (EncoderError, ImportError, OSError) as e:
        return None, f"no Whisper tokenizer for {spec!r}: {e}"
