"""synth-translate: the sentence list, its split, the build, and one-line errors on bad rows."""
from __future__ import annotations

import csv
import shutil

import pytest

from stackslim.data import DataError, build, load_dataset
from stackslim.data.sentences import EVAL_SENTENCES, pool_sentences
from stackslim.data.synth import HEADERS, MANIFEST, TRANSLATE_VOICES
from stackslim.data.translate_sentences import (
    LANGUAGES,
    english_references,
    split_of,
    translation_pairs,
)
from stackslim.evaluate.bleu import translation_clips


def test_sentences_parallel_distinct_and_apart_from_training_pool():
    refs = english_references()
    assert len(refs) >= 150 and len(set(refs)) == len(refs)
    for lang in LANGUAGES:
        pairs = translation_pairs(lang)
        assert len(pairs) == len(refs)
        assert len({p.source_text for p in pairs}) == len(pairs)  # no repeated source sentence
        assert all(p.source_text and p.reference_en == refs[p.index] for p in pairs)
    training = set(EVAL_SENTENCES) | set(pool_sentences(4000))
    assert not training & set(refs)


def test_split_by_sentence_every_fifth_is_eval():
    assert [split_of(i) for i in range(10)] == ["train"] * 4 + ["eval"] + ["train"] * 4 + ["eval"]
    for lang in LANGUAGES:
        assert sum(p.split == "eval" for p in translation_pairs(lang)) >= 30


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    out = tmp_path_factory.mktemp("st") / "synth-translate"
    build("synth-translate", out, n_clips=5)  # the first 5 sentences of each language
    return out


def test_tiny_build_manifest(tiny_set):
    with open(tiny_set / MANIFEST, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == HEADERS["synth-translate"]
    assert len(rows) == 5 * sum(len(TRANSLATE_VOICES[lang]) for lang in LANGUAGES)
    assert {r["language"] for r in rows} == set(LANGUAGES)
    assert all(r["label"] == r["source_text"] and r["reference_en"] for r in rows)
    assert {r["split"] for r in rows} == {"train", "eval"}  # sentence 4 is eval
    # one sentence has one split in every language and voice
    by_ref = {}
    for r in rows:
        by_ref.setdefault(r["reference_en"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_ref.values())
    ds = load_dataset(tiny_set)
    w = ds.load(0)
    assert w.ndim == 1 and len(w) > 16000 * 0.5  # 16 kHz, a sentence plus padding
    clips = translation_clips(str(tiny_set), split="eval")
    assert sorted(clips.languages) == sorted(
        lang for lang in LANGUAGES for _ in TRANSLATE_VOICES[lang])


def _bad_copy(src, dst, line, column, value):
    """A copy of the manifest with one cell changed (line counts the header as 1)."""
    shutil.copytree(src, dst)
    with open(dst / MANIFEST, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rows[line - 2][column] = value
    with open(dst / MANIFEST, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dst


@pytest.mark.parametrize("column,value,words", [
    ("language", "xx", "unknown language 'xx'"),
    ("language", "", "unknown language ''"),
    ("reference_en", "", "missing reference_en"),
])
def test_bad_rows_one_line_error(tiny_set, tmp_path, column, value, words):
    bad = _bad_copy(tiny_set, tmp_path / "bad", 4, column, value)
    with pytest.raises(DataError) as e:
        translation_clips(str(bad))
    msg = str(e.value)
    assert "\n" not in msg
    assert str(bad / MANIFEST) in msg and "line 4" in msg and words in msg


def test_unknown_set_lists_translate():
    with pytest.raises(DataError, match="synth-translate"):
        build("synth-nothing", "/nonexistent/x")
