"""Speech translation (BLEU, chrF) and non-English transcription (WER) of any encoder through the
original multilingual Whisper decoder.

States are read exactly as `wer.whisper_wer` reads them (every clip padded with silence to
Whisper's 30 s window, the encoder's last hidden state after its final norm), then decoded
greedily with the clip's language token and the ``translate`` task (English text) or the
``transcribe`` task (text in the spoken language). Only the encoder differs between variants.

- BLEU and chrF are sacrebleu's corpus scores (defaults: BLEU 13a tokenisation, mixed case,
  exponential smoothing; chrF2 with character 6-grams), each with sacrebleu's signature, so a
  number here equals ``sacrebleu REF -i HYP -m bleu chrf`` on the same lines.
- WER of same-language transcription normalises both sides with Whisper's own
  ``BasicTextNormalizer`` (lowercase; text in brackets removed; every punctuation mark and symbol,
  apostrophes included, becomes a space; accents kept; digits kept as digits), then counts word
  edits over reference words (`models.transcribe.word_error_rate`).

    from stackslim.evaluate.bleu import translation_clips, translation_scores
    clips = translation_clips("synth-translate", n_per_language=30)
    res = translation_scores(enc, whisper, tok, clips.waves, clips.languages, clips.references,
                             sources=clips.sources)
    res["bleu"], res["languages"]["de"]["chrf"], res["languages"]["fr"]["wer"]
    table = score_table(res["hypotheses"], clips.references, clips.languages,
                        res["transcripts"], clips.sources)   # with bootstrap intervals
    table["de"]["bleu_ci95"], table["all"]["wer_pct"]
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
from transformers.models.whisper.english_normalizer import BasicTextNormalizer

from ..data import check_translation_rows, load_dataset
from ..data.synth import MANIFEST
from ..models.base import Encoder, EncoderError
from ..models.transcribe import edit_distance, transcribe, word_error_rate
from .wer import WER_WINDOW_S, encoder_outputs, pad_silence

_NORMALIZE = BasicTextNormalizer()


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str]) -> dict:
    """sacrebleu corpus BLEU (0–100) of one hypothesis per reference, and its signature."""
    _same_length(hyps, refs)
    metric = BLEU()
    return {"score": metric.corpus_score(list(hyps), [list(refs)]).score,
            "signature": str(metric.get_signature())}


def corpus_chrf(hyps: Sequence[str], refs: Sequence[str]) -> dict:
    """sacrebleu corpus chrF2 (0–100) of one hypothesis per reference, and its signature."""
    _same_length(hyps, refs)
    metric = CHRF()
    return {"score": metric.corpus_score(list(hyps), [list(refs)]).score,
            "signature": str(metric.get_signature())}


def normalize_multilingual(text: str) -> str:
    """Whisper's BasicTextNormalizer, whitespace collapsed: the WER normalisation of any language."""
    return " ".join(_NORMALIZE(text).split())


def multilingual_wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus WER after :func:`normalize_multilingual` on both sides."""
    return word_error_rate([normalize_multilingual(r) for r in refs],
                           [normalize_multilingual(h) for h in hyps], normalize=False)


def bootstrap_interval(score: Callable[[list[str], list[str]], float], hyps: Sequence[str],
                       refs: Sequence[str], n: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of a corpus score, resampling sentences with replacement.

    Args:
        score: ``score(hyps, refs)`` on lists, e.g. ``lambda h, r: corpus_bleu(h, r)["score"]``.
        n: resamples.
        level: coverage of the interval (0.95: the 2.5th and 97.5th percentiles).
    """
    _same_length(hyps, refs)
    rng = np.random.default_rng(seed)
    k = len(refs)
    vals = []
    for _ in range(n):
        idx = rng.integers(0, k, k)
        vals.append(score([hyps[i] for i in idx], [refs[i] for i in idx]))
    a = (1.0 - level) / 2
    lo, hi = np.quantile(vals, [a, 1.0 - a])
    return float(lo), float(hi)


def _sentence_stats(metric: str, hyps: Sequence[str], refs: Sequence[str]
                    ) -> tuple[np.ndarray, Callable[[np.ndarray], float]]:
    """Per-sentence sufficient statistics (N, S) of a corpus score, and the score of their sum.

    A corpus score is a function of summed sentence statistics (BLEU: n-gram matches and
    totals, lengths; chrF: character and word n-gram counts; WER: edits and reference words),
    so a bootstrap resample only sums rows: the same numbers as rescoring the resampled
    sentences (as :func:`bootstrap_interval` does), hundreds of times faster.
    """
    _same_length(hyps, refs)
    if metric == "wer":
        rows = []
        for r, h in zip(refs, hyps):
            rw, hw = normalize_multilingual(r).split(), normalize_multilingual(h).split()
            rows.append([edit_distance(rw, hw), len(rw)])
        stats = np.array(rows, dtype=np.int64).reshape(-1, 2)
        # no reference words at all: every hypothesis word is an insertion (word_error_rate)
        return stats, lambda t: float(100.0 * (t[0] / t[1] if t[1] else t[0]))
    m = {"bleu": BLEU, "chrf": CHRF}[metric]()
    stats = np.array(m._extract_corpus_statistics(list(hyps), [list(refs)]), dtype=np.int64)
    return stats, lambda t: float(m._compute_score_from_stats(t.tolist()).score)


def score_table(hyps: Sequence[str], refs: Sequence[str], langs: Sequence[str],
                transcripts: Sequence[str] | None = None, sources: Sequence[str] | None = None,
                n: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, dict]:
    """BLEU and chrF into English (and same-language WER) per language and over all clips, each
    with a percentile bootstrap interval over sentences.

    Args:
        hyps, refs, langs: each clip's English output, English reference and spoken language.
        transcripts, sources: each clip's same-language transcript and source text (then
            ``wer_pct`` is added: 100 × word edits / reference words, after
            :func:`normalize_multilingual`).
        n: bootstrap resamples (the same resampled clips for every score of a group).
        level: coverage of each interval.

    Returns:
        ``{lang | "all": {"clips", "bleu", "bleu_ci95", "chrf", "chrf_ci95"[, "wer_pct",
        "wer_ci95"]}}`` (scores 0–100, intervals ``[lo, hi]``), languages in order of first
        appearance, then "all".
    """
    metrics = [("bleu", hyps, refs), ("chrf", hyps, refs)]
    if transcripts is not None and sources is not None:
        metrics.append(("wer", transcripts, sources))
    stats = {name: _sentence_stats(name, h, r) for name, h, r in metrics}
    _same_length(langs, refs)
    a = (1.0 - level) / 2
    out: dict[str, dict] = {}
    for lang in [*dict.fromkeys(langs), "all"]:
        ix = np.array([i for i, x in enumerate(langs) if lang in ("all", x)])
        draws = np.random.default_rng(seed).integers(0, len(ix), (n, len(ix)))  # (n, k)
        row: dict = {"clips": int(len(ix))}
        for name, (st, fn) in stats.items():
            s = st[ix]  # (k, S)
            vals = [fn(s[d].sum(0)) for d in draws]
            key = "wer_pct" if name == "wer" else name
            row[key] = fn(s.sum(0))
            row[f"{name}_ci95"] = [float(v) for v in np.quantile(vals, [a, 1.0 - a])]
        out[lang] = row
    return out


class TranslationClips(NamedTuple):
    """Clips of a translation set: audio, language code, source text, English reference."""

    waves: list[np.ndarray]
    languages: list[str]
    sources: list[str]
    references: list[str]


def translation_clips(data: str = "synth-translate", split: str | None = "eval",
                      n_per_language: int | None = None,
                      languages: Sequence[str] | None = None, spread: bool = False) -> TranslationClips:
    """The clips of a translation data set (manifest with ``language`` and ``reference_en``).

    Args:
        data: ``synth-translate``, a folder with a manifest, or a CSV manifest.
        split: keep rows with this ``split`` value (None: all rows).
        n_per_language: ``n`` clips of each language (default all): the first ones, or with
            `spread` ``n`` evenly spaced over the language's clips in manifest order (in
            synth-translate, sentence by sentence in 3 voices: ``n`` different sentences in
            every voice instead of ``n / 3`` sentences).
        languages: keep these languages only (default all in the manifest).

    Raises:
        DataError: a row with an unknown language or no English reference (file and line named).
        EncoderError: no clip is left.
    """
    ds = load_dataset(data)
    p = Path(data)
    source = str(p / MANIFEST if p.is_dir() else p)
    check_translation_rows(ds.clips, source)
    by_lang: dict[str, list[int]] = {}
    for i, c in enumerate(ds.clips):
        lang = c.get("language")
        if (split is None or c.get("split") == split) and (not languages or lang in languages):
            by_lang.setdefault(lang, []).append(i)
    idx = []
    for rows in by_lang.values():
        n = len(rows) if n_per_language is None else min(n_per_language, len(rows))
        pick = np.linspace(0, len(rows) - 1, n).round().astype(int) if spread else range(n)
        idx += [rows[j] for j in pick]
    if not idx:
        raise EncoderError(f"{data}: no clips with split={split} to translate")
    clips = [ds.clips[i] for i in idx]
    return TranslationClips([ds.load(i) for i in idx], [c.get("language") for c in clips],
                            [c.get("source_text") or c.label for c in clips],
                            [c.get("reference_en") for c in clips])


def translation_scores(enc: Encoder, whisper_model, tokenizer, waves: Sequence[np.ndarray],
                       langs: Sequence[str], refs: Sequence[str],
                       sources: Sequence[str] | None = None, task: str = "translate",
                       batch_size: int = 8, max_new_tokens: int = 64) -> dict:
    """BLEU and chrF into English (overall and per language) of `enc` read by Whisper's decoder.

    Args:
        enc: any encoder variant (dense, pruned, mimic, shared) of the multilingual Whisper.
        whisper_model, tokenizer: the original multilingual Whisper (its decoder decodes).
        waves: 16 kHz clips (each padded with silence to 30 s, as `whisper_wer` does).
        langs: each clip's spoken language (Whisper code): its language token.
        refs: each clip's English reference.
        sources: each clip's source-language text: then the same states are also transcribed
            (``transcribe`` task) and the WER per language is added.
        task: the task token of the translation pass (``translate``; ``transcribe`` gives the
            score of untranslated output, a floor).

    Returns:
        ``{"bleu", "chrf", "bleu_signature", "chrf_signature", "clips", "hypotheses",
        "languages": {lang: {"bleu", "chrf", "clips"[, "wer"]}}[, "wer", "transcripts"]}``.
    """
    if not (len(waves) == len(langs) == len(refs)) or (sources is not None
                                                        and len(sources) != len(refs)):
        raise EncoderError("translation_scores: waves, langs, refs (and sources) differ in length")
    states = encoder_outputs(enc, pad_silence(waves, min_s=WER_WINDOW_S), batch_size)
    hyps = transcribe(whisper_model, tokenizer, encoder_states=states, batch_size=batch_size,
                      max_new_tokens=max_new_tokens, language=list(langs), task=task)
    bleu, chrf = corpus_bleu(hyps, refs), corpus_chrf(hyps, refs)
    out = {"bleu": bleu["score"], "chrf": chrf["score"], "bleu_signature": bleu["signature"],
           "chrf_signature": chrf["signature"], "clips": len(refs), "task": task,
           "hypotheses": hyps, "languages": {}}
    texts = None
    if sources is not None:
        texts = transcribe(whisper_model, tokenizer, encoder_states=states,
                           batch_size=batch_size, max_new_tokens=max_new_tokens,
                           language=list(langs), task="transcribe")
        out["wer"], out["transcripts"] = multilingual_wer(sources, texts), texts
    for lang in dict.fromkeys(langs):
        ix = [i for i, x in enumerate(langs) if x == lang]
        h, r = [hyps[i] for i in ix], [refs[i] for i in ix]
        row = {"bleu": corpus_bleu(h, r)["score"], "chrf": corpus_chrf(h, r)["score"],
               "clips": len(ix)}
        if texts is not None:
            row["wer"] = multilingual_wer([sources[i] for i in ix], [texts[i] for i in ix])
        out["languages"][lang] = row
    return out


def _same_length(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
