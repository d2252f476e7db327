"""Whisper transcription and word error rate: the downstream check of a (compressed) encoder.

The decoder is always the original one; what changes is where its cross-attention input comes
from. `transcribe` computes it with the model's own encoder, or takes `encoder_states`
precomputed elsewhere (a pruned, mimicked or shared encoder), so WER measures the encoder alone.

Decoding is greedy, without timestamps, with our own loop over the HF decoder and its KV cache
(no `generate`: its Whisper path cannot take encoder states of any length and moves between
transformers releases). Prompt: ``<|startoftranscript|> <|notimestamps|>`` for English-only
models, ``<|startoftranscript|> <|LANG|> <|TASK|> <|notimestamps|>`` for multilingual ones, with
LANG the spoken language (default ``en``) and TASK ``transcribe`` (same-language text, the
default) or ``translate`` (English text).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.audio import clip_name
from .base import SAMPLE_RATE, EncoderError, as_waves
from .bundled import BUNDLED, bundled_model_dir
from .ctranslate2 import ct2_files, ct2_to_hf_whisper
from .safety import pickle_is_allowed
from .whisper_config import MAX_NEW_TOKENS, SPECIAL_TOKENS, feature_extractor

def load_whisper(spec: str | Path):
    """Load a Whisper model and its tokenizer, offline.

    Args:
        spec: a bundled name (``whisper-tiny.en``, ``whisper-base``, see `bundled.BUNDLED`), a
            Hugging Face Whisper folder, or a CTranslate2 / faster-whisper folder.

    Returns:
        (WhisperForConditionalGeneration in eval mode, float32; its tokenizer).
    """
    import json

    from transformers import AutoTokenizer, WhisperForConditionalGeneration, WhisperTokenizer

    folder = bundled_model_dir(str(spec)) if str(spec) in BUNDLED else Path(spec)
    if not folder.is_dir():
        raise EncoderError(f"{spec}: not a bundled Whisper name ({', '.join(BUNDLED)}) nor a "
                           "local model folder (nothing is downloaded)")
    if any(folder.glob("model.bin*")):  # CTranslate2 / faster-whisper
        _, side, _ = ct2_files(folder)
        if "tokenizer.json" not in side:
            raise EncoderError(f"{folder}: CTranslate2 folder without tokenizer.json")
        return (ct2_to_hf_whisper(folder),
                WhisperTokenizer(tokenizer_file=str(side["tokenizer.json"])))
    try:
        mtype = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        raise EncoderError(f"{folder}: neither a Hugging Face model folder (readable "
                           "config.json) nor a CTranslate2 one (model.bin)") from None
    if mtype != "whisper":
        raise EncoderError(f"{folder}: a {mtype!r} model, not Whisper")
    try:
        # safetensors only unless pickled weights are allowed (see io.pickle_allowed)
        model = WhisperForConditionalGeneration.from_pretrained(
            folder, dtype=torch.float32, use_safetensors=None if pickle_is_allowed() else True)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EncoderError(f"{folder}: cannot load a Whisper model ({first})") from None
    return model.eval(), tokenizer


def log_mel(model, waves: Sequence[np.ndarray], pad_to_30s: bool = True) -> torch.Tensor:
    """(B, n_mels, 3000) log-mel features, 30 s padded; or (B, n_mels, N) padded to the longest.

    Refuses clips over 30 s rather than let the extractor cut them silently.
    """
    for i, w in enumerate(waves):
        if len(w) > 30 * SAMPLE_RATE:
            raise EncoderError(f"{clip_name(w, i)}: clip is {len(w) / SAMPLE_RATE:.2f} s long; Whisper "
                               "takes clips of at most 30 s: cut it into shorter clips")
    fe = feature_extractor(int(model.config.num_mel_bins))
    pad = "max_length" if pad_to_30s else "longest"
    feats = fe(list(waves), sampling_rate=SAMPLE_RATE, return_tensors="pt", padding=pad)
    p = next(model.parameters())
    return feats.input_features.to(p.device, p.dtype)


@torch.inference_mode()
def encode_audio(model, waves: Sequence[np.ndarray], pad_to_30s: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Whisper encoder output after its final norm, and valid frames per clip.

    Padded mode is what Whisper was trained on: every clip is padded to 30 s and gives 1500
    frames. Unpadded mode runs each clip alone at its own length (conv -> embed_positions[:T]
    -> layers -> final norm): much faster on short clips, but not the same states
    (bench/whisper_unpadded.py measures how far they are).

    Returns:
        states (B, T, D) (zeros past each clip's length in unpadded mode) and lengths (B,).
    """
    waves = as_waves(waves)
    enc = model.model.encoder
    # n // 160 mel frames (the extractor drops the last STFT frame), halved by conv2 (k3 s2 p1)
    lengths = torch.tensor([min((max(len(w) // 160, 1) + 1) // 2, enc.config.max_source_positions)
                            for w in waves])
    if pad_to_30s:
        return enc(log_mel(model, waves)).last_hidden_state, lengths  # (B, 1500, D)
    outs = []
    for w in waves:
        x = log_mel(model, [w], pad_to_30s=False)  # (1, n_mels, N)
        h = torch.nn.functional.gelu(enc.conv1(x))
        h = torch.nn.functional.gelu(enc.conv2(h)).transpose(1, 2)  # (1, T, D)
        h = h + enc.embed_positions.weight[: h.shape[1]]
        for layer in enc.layers:
            h = layer(h, None)
            h = h[0] if isinstance(h, tuple) else h
        outs.append(enc.layer_norm(h)[0])  # (T, D)
    lengths = torch.tensor([o.shape[0] for o in outs])
    states = outs[0].new_zeros(len(outs), int(lengths.max()), outs[0].shape[-1])
    for i, o in enumerate(outs):
        states[i, : o.shape[0]] = o
    return states, lengths


TASKS = ("transcribe", "translate")


def is_multilingual(model) -> bool:
    """Whether a Whisper model has language and task tokens (it can translate and transcribe
    other languages than English): its generation config says so, else its vocabulary's size."""
    multilingual = getattr(model.generation_config, "is_multilingual", None)
    if multilingual is None:
        multilingual = model.config.vocab_size >= 51865  # English-only models have 51864
    return bool(multilingual)


def prompt_ids(model, tokenizer, language: str | None = None, task: str = "transcribe"
               ) -> tuple[list[int], int]:
    """Decoder prompt and end-of-text id, from the tokenizer's own vocabulary.

    Args:
        language: the spoken language's Whisper code (``de``, ``fr``, ...); None means ``en``.
        task: ``transcribe`` (text in the spoken language) or ``translate`` (English text).

    Raises:
        EncoderError: an unknown task or language, or a language other than English or the
            translate task asked of an English-only model (it has no such tokens).
    """
    if task not in TASKS:
        raise EncoderError(f"unknown task {task!r} (choose {' or '.join(TASKS)})")

    def tid(key: str) -> int | None:
        return tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS[key])

    sot, eot, nts = tid("sot"), tid("eot"), tid("notimestamps")
    lang = language or "en"
    if not is_multilingual(model):
        if task != "transcribe" or lang != "en":
            raise EncoderError(f"an English-only Whisper model cannot {task} {lang!r} speech: "
                               "use a multilingual one (e.g. whisper-base)")
        prompt = [sot, nts]
    else:
        lang_id = tokenizer.convert_tokens_to_ids(f"<|{lang}|>")
        if lang_id is None or lang_id == eot or lang_id == tokenizer.unk_token_id:
            raise EncoderError(f"unknown language {lang!r}: not a Whisper language code")
        prompt = [sot, lang_id, tid(task), nts]
    if eot is None or any(i is None or i == eot for i in prompt):  # unknown tokens map to eot
        raise EncoderError("the tokenizer lacks Whisper's special tokens")
    return prompt, eot


@torch.inference_mode()
def greedy_decode(model, states: torch.Tensor, prompt: list[int], eot: int,
                  max_new_tokens: int = MAX_NEW_TOKENS) -> list[list[int]]:
    """Greedy token ids (prompt and eot excluded) for encoder states (B, T, D)."""
    B = states.shape[0]
    V = model.config.vocab_size
    max_new_tokens = min(max_new_tokens, model.config.max_target_positions - len(prompt))
    # Text tokens all sit below <|endoftext|> in both vocabularies: mask every special and
    # timestamp token above it, plus Whisper's usual non-speech symbols.
    mask = torch.zeros(V, dtype=torch.bool)
    mask[eot + 1:] = True
    sup = [t for t in (model.generation_config.suppress_tokens or []) if 0 <= t < V]
    mask[sup] = True
    first = mask.clone()  # at the first step also no blank and no immediate end
    begin = [t for t in (model.generation_config.begin_suppress_tokens or []) if 0 <= t < V]
    first[begin] = True
    dec = model.model.decoder
    ids = torch.tensor([prompt] * B, device=states.device)  # (B, P)
    done = torch.zeros(B, dtype=torch.bool, device=states.device)
    out, cache = [], None
    for step in range(max_new_tokens):
        o = dec(input_ids=ids, encoder_hidden_states=states, past_key_values=cache,
                use_cache=True)
        cache = o.past_key_values
        logits = model.proj_out(o.last_hidden_state[:, -1]).float()  # (B, V)
        logits[:, (first if step == 0 else mask).to(logits.device)] = -torch.inf
        nxt = logits.argmax(-1)  # (B,)
        nxt = torch.where(done, torch.full_like(nxt, eot), nxt)
        out.append(nxt)
        done |= nxt == eot
        if bool(done.all()):
            break
        ids = nxt[:, None]  # (B, 1): the cache holds the rest
    toks = torch.stack(out, 1).tolist() if out else [[] for _ in range(B)]
    return [t[: t.index(eot)] if eot in t else t for t in toks]


@torch.inference_mode()
def transcribe(model, tokenizer, waves: Sequence[np.ndarray] | None = None,
               encoder_states: torch.Tensor | Sequence[torch.Tensor] | None = None,
               batch_size: int = 8, max_new_tokens: int = MAX_NEW_TOKENS,
               language: str | Sequence[str] | None = None, task: str = "transcribe") -> list[str]:
    """Greedy transcripts (or English translations) of 16 kHz clips, or of encoder outputs.

    Args:
        model: WhisperForConditionalGeneration (its decoder is used; its encoder too unless
            `encoder_states` is given).
        tokenizer: the model's tokenizer (see `load_whisper`).
        waves: 1-D float 16 kHz clips, each up to 30 s (padded to 30 s, like Whisper's training).
        encoder_states: instead of waves, (B, T, D) encoder outputs after the final norm, or a
            list of (T_i, D) tensors of any lengths (decoded in groups of equal length).
        batch_size: clips decoded together.
        language: the spoken language (a Whisper code), one for all clips or one per clip;
            None: English.
        task: ``transcribe`` (default) or ``translate`` (into English; multilingual models).

    Returns:
        One stripped transcript per clip.
    """
    model.eval()
    if (waves is None) == (encoder_states is None):
        raise EncoderError("transcribe: give either waves or encoder_states")
    given = encoder_states is not None
    if given:
        d = model.config.d_model
        if torch.is_tensor(encoder_states) and (encoder_states.ndim != 3
                                                or encoder_states.shape[-1] != d):
            raise EncoderError(f"encoder_states: expected (B, T, {d}), got "
                               f"{tuple(encoder_states.shape)}")
        items = list(encoder_states)  # (T_i, D) each
        if any(s.ndim != 2 or s.shape[-1] != d for s in items):
            raise EncoderError(f"encoder_states: expected (T, {d}) per clip")
    else:
        items = as_waves(waves)
    langs = [language] * len(items) if language is None or isinstance(language, str) \
        else list(language)
    if len(langs) != len(items):
        raise EncoderError(f"transcribe: {len(langs)} languages for {len(items)} clips")
    prompts = {lang: prompt_ids(model, tokenizer, lang, task) for lang in dict.fromkeys(langs)}
    p = next(model.parameters())
    texts = [""] * len(items)
    # Group equal lengths (a batch then needs no padding: the decoder has no cross-attn mask)
    # and equal languages (one prompt per batch).
    groups: dict[tuple, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault((it.shape[0] if given else 0, langs[i]), []).append(i)
    for (_, lang), idx in groups.items():
        prompt, eot = prompts[lang]
        for b in range(0, len(idx), batch_size):
            chunk = idx[b: b + batch_size]
            if given:
                states = torch.stack([items[i] for i in chunk]).to(p.device, p.dtype)  # (b, T, D)
            else:
                feats = log_mel(model, [items[i] for i in chunk])  # (b, n_mels, 3000)
                states = model.model.encoder(feats).last_hidden_state  # (b, 1500, D)
            for i, toks in zip(chunk, greedy_decode(model, states, prompt, eot, max_new_tokens)):
                texts[i] = tokenizer.decode(toks, skip_special_tokens=True).strip()
    return texts


# -- text normalisation and WER ------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _english_normalizer():
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    # the British-to-American spelling map lives in a model repo's normalizer.json, which the
    # bundled models do not ship: the rest of Whisper's normaliser (numbers, contractions,
    # titles, symbols, fillers) is what its papers report WER with
    return EnglishTextNormalizer({})


def normalize_text(s: str) -> str:
    """Whisper's own English normaliser (transformers' `EnglishTextNormalizer`).

    Lowercase, punctuation and fillers dropped, contractions and titles expanded, spelled
    numbers written as digits: "the thirteenth" and "the 13th" both read "the 13th",
    "I'm gonna pay twenty dollars" reads "i am going to pay $20".
    """
    return _english_normalizer()(s)


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance between two word lists (substitutions, insertions, deletions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer_edits(refs: Sequence[str], hyps: Sequence[str], normalize: bool = True
              ) -> tuple[np.ndarray, np.ndarray]:
    """Per sentence: word edits (substitutions, insertions, deletions) and reference words,
    after normalising both texts (by default): (N,), (N,) int arrays."""
    if len(refs) != len(hyps):
        raise ValueError(f"word_error_rate: {len(refs)} references but {len(hyps)} hypotheses")
    norm = normalize_text if normalize else (lambda t: t)
    edits, words = np.zeros(len(refs), np.int64), np.zeros(len(refs), np.int64)
    for k, (r, h) in enumerate(zip(refs, hyps)):
        rw, hw = norm(r).split(), norm(h).split()
        edits[k], words[k] = edit_distance(rw, hw), len(rw)
    return edits, words


def corpus_wer(edits: np.ndarray, words: np.ndarray) -> float:
    """Σ edits / Σ reference words; with no reference words, the number of edits (jiwer >= 4:
    every hypothesis word is then an insertion)."""
    total = int(words.sum())
    return float(edits.sum()) / total if total else float(edits.sum())


def word_error_rate(refs: Sequence[str], hyps: Sequence[str], normalize: bool = True) -> float:
    """Corpus WER: total word edits / total reference words (texts normalized by default)."""
    return corpus_wer(*wer_edits(refs, hyps, normalize))


def wer_interval(edits: np.ndarray, words: np.ndarray, n: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the corpus WER, resampling sentences with replacement
    (their edit and word counts: no text is re-scored)."""
    rng = np.random.default_rng(seed)
    k = len(edits)
    if k == 0:
        return 0.0, 0.0
    idx = rng.integers(0, k, (n, k))  # (n, k) resampled sentences
    e, w = edits[idx].sum(1), words[idx].sum(1)
    vals = np.where(w > 0, e / np.maximum(w, 1), e)
    a = (1.0 - level) / 2
    lo, hi = np.quantile(vals, [a, 1.0 - a])
    return float(lo), float(hi)