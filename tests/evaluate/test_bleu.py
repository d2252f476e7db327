"""BLEU/chrF equal sacrebleu's command line; the decoder's language and task tokens; German speech
translated into English by the real whisper-base (and not by a broken task token)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stackslim.evaluate.bleu import (
    bootstrap_interval,
    corpus_bleu,
    corpus_chrf,
    multilingual_wer,
    normalize_multilingual,
    score_table,
)
from stackslim.models.base import EncoderError

HYPS = ["The children are playing in the garden.", "Where is the next bus stop?",
        "I would like a glass of water", "My mother is cooking every Sunday.",
        "the weather is beautiful today", "Can you help me, please?"]
REFS = ["The children are playing in the garden", "Where is the nearest bus stop",
        "I would like a glass of water", "My mother cooks every Sunday",
        "The weather is nice today", "Can you help me please"]


def test_bleu_and_chrf_equal_sacrebleu_command_line(tmp_path):
    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("\n".join(HYPS) + "\n", encoding="utf-8")
    ref.write_text("\n".join(REFS) + "\n", encoding="utf-8")
    exe = Path(sys.executable).with_name("sacrebleu")
    out = subprocess.run([str(exe), str(ref), "-i", str(hyp), "-m", "bleu", "chrf", "-w", "6"],
                         capture_output=True, text=True, check=True).stdout
    cli = {d["name"]: d for d in json.loads(out)}
    bleu, chrf = corpus_bleu(HYPS, REFS), corpus_chrf(HYPS, REFS)
    assert bleu["score"] == pytest.approx(cli["BLEU"]["score"], abs=1e-5)
    assert chrf["score"] == pytest.approx(cli["chrF2"]["score"], abs=1e-5)
    assert bleu["signature"] == cli["BLEU"]["signature"]
    assert chrf["signature"] == cli["chrF2"]["signature"]
    assert 0 < bleu["score"] < 100 and 0 < chrf["score"] < 100


def test_perfect_and_length_mismatch():
    assert corpus_bleu(REFS, REFS)["score"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="5 hypotheses"):
        corpus_bleu(HYPS[:5], REFS)


def test_multilingual_wer_normalisation_keeps_accents():
    assert normalize_multilingual("Où est l’arrêt de bus, s'il vous plaît?") == \
        "où est l arrêt de bus s il vous plaît"
    assert multilingual_wer(["Die Straße ist ruhig"], ["die straße ist ruhig."]) == 0.0
    assert multilingual_wer(["Die Straße ist ruhig"], ["die strasse ist ruhig"]) == 0.25


def test_bootstrap_interval_brackets_the_score():
    score = lambda h, r: corpus_chrf(h, r)["score"]
    lo, hi = bootstrap_interval(score, HYPS, REFS, n=200)
    assert lo <= score(HYPS, REFS) <= hi and lo < hi
    assert bootstrap_interval(score, HYPS, REFS, n=200) == (lo, hi)  # seeded


def test_score_table_per_language_and_overall_equals_rescoring():
    langs = ["de", "de", "fr", "fr", "es", "es"]
    texts = [h.lower() for h in HYPS[::-1]]  # same-language transcripts, against REFS as sources
    t = score_table(HYPS, REFS, langs, texts, REFS, n=200)
    assert list(t) == ["de", "fr", "es", "all"]
    for lang in t:
        ix = [i for i, x in enumerate(langs) if lang in ("all", x)]
        h, r, x = [HYPS[i] for i in ix], [REFS[i] for i in ix], [texts[i] for i in ix]
        assert t[lang]["clips"] == len(ix)
        assert t[lang]["bleu"] == pytest.approx(corpus_bleu(h, r)["score"])
        assert t[lang]["chrf"] == pytest.approx(corpus_chrf(h, r)["score"])
        assert t[lang]["wer_pct"] == pytest.approx(100 * multilingual_wer(r, x))
        # resampling summed sentence statistics = rescoring resampled sentences, same draws
        for name, fn in (("bleu", lambda a, b: corpus_bleu(a, b)["score"]),
                         ("chrf", lambda a, b: corpus_chrf(a, b)["score"])):
            assert t[lang][f"{name}_ci95"] == pytest.approx(list(bootstrap_interval(fn, h, r, n=200)))
        assert t[lang]["wer_ci95"] == pytest.approx(
            list(bootstrap_interval(lambda a, b: 100 * multilingual_wer(b, a), x, r, n=200)))
    assert "wer_pct" not in score_table(HYPS, REFS, langs, n=10)["all"]


# -- the decoder prompt and real translation ------------------------------------------------
@pytest.fixture(scope="module")
def base():
    from stackslim.models.transcribe import load_whisper
    return load_whisper("whisper-base")


@pytest.mark.real
def test_prompt_language_and_task_tokens(base):
    from stackslim.models.transcribe import load_whisper, prompt_ids
    model, tok = base
    ids = tok.convert_tokens_to_ids
    sot, nts = ids("<|startoftranscript|>"), ids("<|notimestamps|>")
    assert prompt_ids(model, tok)[0] == [sot, ids("<|en|>"), ids("<|transcribe|>"), nts]  # default
    assert prompt_ids(model, tok, "de", "translate")[0] == [sot, ids("<|de|>"),
                                                            ids("<|translate|>"), nts]
    with pytest.raises(EncoderError, match="unknown language 'xx'"):
        prompt_ids(model, tok, "xx")
    with pytest.raises(EncoderError, match="unknown task"):
        prompt_ids(model, tok, "de", "summarize")
    tiny, ttok = load_whisper("whisper-tiny.en")
    tids = ttok.convert_tokens_to_ids  # English-only ids differ (sot 50257, not 50258)
    assert prompt_ids(tiny, ttok)[0] == [tids("<|startoftranscript|>"), tids("<|notimestamps|>")]
    with pytest.raises(EncoderError, match="English-only"):
        prompt_ids(tiny, ttok, task="translate")
    with pytest.raises(EncoderError, match="English-only"):
        prompt_ids(tiny, ttok, language="de")


@pytest.fixture(scope="module")
def german(base):
    """10 German eval clips (one voice, 10 sentences), encoded once, 30 s padded."""
    from stackslim.data import load_dataset
    from stackslim.models.transcribe import encode_audio
    ds = load_dataset("synth-translate")
    idx = [i for i, c in enumerate(ds.clips)
           if c.speaker == "espeak-de-m1" and c.get("split") == "eval"][:10]
    states, _ = encode_audio(base[0], [ds.load(i) for i in idx])  # (10, 1500, D)
    return states, [ds.clips[i].get("reference_en") for i in idx]


def _decode(base, states, task):
    from stackslim.models.transcribe import transcribe
    return transcribe(*base, encoder_states=states, batch_size=10, max_new_tokens=24,
                      language="de", task=task)


@pytest.fixture(scope="module")
def translated(base, german):
    return _decode(base, german[0], "translate")


@pytest.mark.real
def test_translate_gives_english_for_german_speech(german, translated):
    assert corpus_bleu(translated, german[1])["score"] > 10


@pytest.mark.real
def test_broken_task_token_scores_lower(base, german, translated):
    states, refs = german
    good = corpus_bleu(translated, refs)["score"]
    broken = corpus_bleu(_decode(base, states, "transcribe"), refs)["score"]  # German text
    assert broken < good / 2


def test_translation_clips_first_or_spread_over_sentences(tmp_path):
    import wave

    import numpy as np

    from stackslim.evaluate.bleu import translation_clips

    tone = (np.sin(np.arange(1600) / 3) * 8000).astype("<i2").tobytes()
    lines = ["path,label,language,source_text,reference_en,speaker,split"]
    for lang in ("de", "fr"):
        for k in range(5):  # sentence k in voices a and b, sentence 4 in train
            for v in "ab":
                name = f"{lang}{k}{v}.wav"
                with wave.open(str(tmp_path / name), "wb") as w:
                    w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(tone)
                split = "train" if k == 4 else "eval"
                lines.append(f"{name},s{k},{lang},{lang} s{k},en s{k},{v},{split}")
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    first = translation_clips(str(tmp_path), n_per_language=3)
    assert first.sources == ["de s0", "de s0", "de s1", "fr s0", "fr s0", "fr s1"]
    spread = translation_clips(str(tmp_path), n_per_language=3, spread=True)
    assert spread.sources == ["de s0", "de s2", "de s3", "fr s0", "fr s2", "fr s3"]  # of 8 each
    assert spread.references[2] == "en s3" and spread.languages == ["de"] * 3 + ["fr"] * 3
    assert len(translation_clips(str(tmp_path), n_per_language=99, spread=True).waves) == 16
