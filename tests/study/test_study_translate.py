"""The study's translation step and how its numbers reach the side-by-side table, results.json
and the report: a random encoder and a scorer monkeypatched in (the real whisper-base decoder is
measured by bench/translate.py; tests/evaluate/test_bleu.py checks the real decoding)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from stackslim.cli import main
from stackslim.evaluate.bleu import TranslationClips, score_table
from stackslim.models import load_encoder
from stackslim.study import StudyConfig, StudyError
from stackslim.study import translate as tr
from stackslim.study.compare import row_key, translation_columns
from stackslim.study.config import QUICK, preset, step_names
from stackslim.study.report import findings, translation_rows, write_report

REFS = ["Where is the nearest bus stop", "The children are playing in the garden",
        "I would like a glass of water", "My mother cooks every Sunday"]
LANGS = ["de", "de", "fr", "fr"]
SOURCES = ["Wo ist die nächste Bushaltestelle", "Die Kinder spielen im Garten",
           "Je voudrais un verre d'eau", "Ma mère cuisine chaque dimanche"]
PRUNE = {"strategies": {"bi": {"order": [2, 3, 4], "no_refit": {"max_deletable_val": 1}}}}


class FakeWhisper:
    """Stands for the decoder's model; `multilingual` is what `is_multilingual` answers."""

    def __init__(self, multilingual: bool):
        self.multilingual = multilingual


@pytest.fixture
def fake(monkeypatch):
    """Clips and scorer monkeypatched: the teacher translates and transcribes perfectly, every
    other encoder outputs only each reference's first word. Returns the calls made."""
    calls = []
    clips = TranslationClips([np.zeros(1600, np.float32)] * 4, LANGS, SOURCES, REFS)

    def fake_clips(data, split, n_per_language, spread):
        calls.append(("clips", data, split, n_per_language, spread))
        return clips

    def fake_scores(enc, whisper, tok, waves, langs, refs, sources=None):
        calls.append(("scores", enc))
        good = enc is fake.teacher
        return {"hypotheses": list(refs) if good else [r.split()[0] for r in refs],
                "transcripts": list(sources) if good else [s.split()[0] for s in sources],
                "bleu_signature": "BLEU-sig", "chrf_signature": "chrF-sig"}

    monkeypatch.setattr(tr, "translation_clips", fake_clips)
    monkeypatch.setattr(tr, "translation_scores", fake_scores)
    monkeypatch.setattr(tr, "is_multilingual", lambda m: m.multilingual)
    fake.teacher = load_encoder("random:wav2vec2")
    fake.calls = calls
    return fake


def _tokenizer(monkeypatch, multilingual=True, missing=False):
    monkeypatch.setattr(tr, "load_tokenizer", lambda spec: (None, "no tokenizer") if missing
                        else (FakeWhisper(multilingual), object()))


def test_step_scores_teacher_and_every_variant_per_language_with_intervals(fake, monkeypatch, tmp_path):
    _tokenizer(monkeypatch)
    s = tr.translate_step("whisper-base", fake.teacher, "synth-translate", 2, PRUNE, {}, {})(tmp_path)
    assert ("clips", "synth-translate", "eval", 2, True) in fake.calls
    assert set(s["scores"]) == {"teacher", "pruned:bi"}  # every variant with a decoder path
    assert s["languages"] == ["de", "fr"] and s["clips"] == 4 and s["clips_per_language"] == 2
    t, p = s["scores"]["teacher"], s["scores"]["pruned:bi"]
    assert list(t) == ["de", "fr", "all"]
    for lang in ("de", "fr", "all"):
        assert t[lang]["bleu"] == pytest.approx(100) and t[lang]["wer_pct"] == 0.0
        assert p[lang]["bleu"] < 20 and p[lang]["wer_pct"] > 50
        lo, hi = p[lang]["chrf_ci95"]
        assert lo <= p[lang]["chrf"] <= hi
    assert p == score_table([r.split()[0] for r in REFS], REFS, LANGS,
                            [x.split()[0] for x in SOURCES], SOURCES, n=tr.BOOTSTRAP)
    assert s["signatures"] == {"bleu": "BLEU-sig", "chrf": "chrF-sig"}
    assert s["examples"]["pruned:bi"] == {"de": "Where", "fr": "I"}
    saved = json.loads((tmp_path / "translate.json").read_text())
    assert saved["outputs"]["teacher"]["translations"] == REFS
    assert saved["scores"] == json.loads(json.dumps(s["scores"]))


@pytest.mark.parametrize("multilingual, missing, why", [(False, False, "English-only"),
                                                         (True, True, "no Whisper decoder")])
def test_step_without_a_multilingual_decoder_says_why_and_scores_nothing(
        fake, monkeypatch, tmp_path, multilingual, missing, why):
    _tokenizer(monkeypatch, multilingual, missing)
    s = tr.translate_step("whisper-tiny.en", fake.teacher, "synth-translate", 2, PRUNE, {}, {})(tmp_path)
    assert why in s["skipped"] and "scores" not in s
    assert not [c for c in fake.calls if c[0] == "scores"]
    r = {"translate": s, "config": {}}
    assert any(why in f for f in findings(r)) and translation_rows(r) == []


def _results(fake, monkeypatch, tmp_path) -> dict:
    _tokenizer(monkeypatch)
    s = tr.translate_step("whisper-base", fake.teacher, "synth-translate", 2, PRUNE, {}, {})(tmp_path)
    common = {"params": 10, "stack_params": 8, "bytes": 40, "batch1_ms": 1.0, "batched_ms": 0.5,
              "speedup": 1.0, "accuracy": 0.9}
    rows = [{"variant": "teacher", "kind": "teacher", "layers": 4, "stack_ratio": 1.0, "capacity": 1.0,
             **common},
            {"variant": "pruned: bi (−1)", "kind": "pruned", "layers": 3, "stack_ratio": 0.75,
             "capacity": 0.9, **common}]
    for r in rows:
        r.update(translation_columns(s["scores"].get(row_key(r["variant"]))))
    return {"translate": s, "config": {"task": "word", "max_clips": 10, "mimic_epochs": 1,
                                       "recover_epochs": 0}, "compare": {"rows": rows}}


def test_side_by_side_rows_and_findings_carry_the_scores(fake, monkeypatch, tmp_path):
    r = _results(fake, monkeypatch, tmp_path)
    teacher, pruned = r["compare"]["rows"]
    assert teacher["bleu"] == pytest.approx(100) and teacher["wer_other"] == 0.0
    assert pruned["translation"] == r["translate"]["scores"]["pruned:bi"]
    assert pruned["bleu"] == pruned["translation"]["all"]["bleu"] < 20
    assert translation_columns(None) == {}
    f = [x for x in findings(r) if x.startswith("Speech translation")]
    assert len(f) == 1 and "BLEU 100.0 (de 100.0, fr 100.0)" in f[0]
    assert f"pruned:bi: BLEU {pruned['bleu']:.1f} ({pruned['bleu']:.0f}% of the teacher's)" in f[0]
    shown = {(x["variant"], x["language"]): x for x in translation_rows(r)}
    lo, hi = pruned["translation"]["fr"]["bleu_ci95"]
    assert shown[("pruned:bi", "fr")]["bleu"] == f"{pruned['translation']['fr']['bleu']:.1f} ({lo:.1f}–{hi:.1f})"
    assert shown[("teacher", "all")]["all"] and len(shown) == 6


def test_report_shows_the_columns_and_the_section(fake, monkeypatch, tmp_path):
    r = _results(fake, monkeypatch, tmp_path)
    r.update(model="whisper-base", data="d", family="whisper", num_layers=6, clips_in_data=10,
             versions={"stackslim": "0", "torch": "0", "cpus": 2}, steps_run=[], steps_skipped=[])
    page = write_report(r, tmp_path).read_text()
    assert "BLEU → en" in page and "WER % other languages" in page
    assert "Speech translation and other languages" in page and "BLEU-sig" in page
    r["translate"] = {"skipped": "whisper-tiny.en is an English-only Whisper model"}
    for row in r["compare"]["rows"]:
        for k in ("bleu", "chrf", "wer_other", "translation"):
            row.pop(k)
    page = write_report(r, tmp_path).read_text()
    assert "BLEU → en" not in page and "Not measured: whisper-tiny.en is an English-only" in page


def test_option_on_by_default_off_with_a_flag_and_recorded(monkeypatch, tmp_path):
    cfg = StudyConfig()
    assert cfg.translate and cfg.translate_data == "synth-translate" and cfg.translate_clips == 6
    assert preset(StudyConfig(quick=True)).translate_clips == QUICK["translate_clips"]
    names = step_names(cfg, whisper=True)
    assert names.index("wer") < names.index("translate") < names.index("compare")
    assert "translate" not in step_names(cfg, whisper=False)
    assert "translate" not in step_names(StudyConfig(translate=False), whisper=True)
    with pytest.raises(StudyError, match="--translate-clips"):
        StudyConfig(translate_clips=0)
    with pytest.raises(StudyError, match="--stop-after"):
        StudyConfig(translate=False, stop_after="translate")
    seen = []
    monkeypatch.setattr("stackslim.study.command.run_study", lambda model, data, out, c, **kw:
                        seen.append(c) or SimpleNamespace(stopped_after="prune"))
    assert main(["study", "--no-translate", "--translate-clips", "2", "--out", str(tmp_path / "o")]) == 0
    assert main(["study", "--out", str(tmp_path / "o")]) == 0
    assert (seen[0].translate, seen[0].translate_clips, seen[1].translate) == (False, 2, True)
    # recorded in results.json with the rest of the config
    from stackslim.study.pipeline import StudyResult
    d = StudyResult("m", "whisper", 6, "d", 1, seen[0], translate={"skipped": "x"}).to_json()
    assert d["config"]["translate"] is False and d["translate"] == {"skipped": "x"}
    assert "translate" not in StudyResult("m", "whisper", 6, "d", 1, seen[1]).to_json()


def test_study_runs_the_step_and_its_scores_reach_every_output(fake, monkeypatch, tone_data, tmp_path):
    """The whole study on a tiny random Whisper encoder: the step runs after `wer`, its scores
    land on the side-by-side rows, in results.json and in the report; --no-translate drops it."""
    _tokenizer(monkeypatch)
    fake.teacher = None  # the study loads its own teacher: every encoder scores as a variant
    out = tmp_path / "s"
    args = ["study", "random:whisper", str(tone_data), "--quick", "--out", str(out), "--max-clips", "24",
            "--analyze-clips", "12", "--strategies", "backward", "--mimic-grid", "linear-1-16",
            "--share-grid", "K2-r2", "--mimic-epochs", "1", "--recover-epochs", "0",
            "--latency-clips", "1", "--share-init", "svd", "--translate-clips", "2", "--quiet"]
    assert main(args) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["config"]["translate"] is True and r["config"]["translate_clips"] == 2
    assert ("clips", "synth-translate", "eval", 2, True) in fake.calls
    assert r["steps_run"].index("translate") == r["steps_run"].index("wer") + 1
    rows = r["compare"]["rows"]
    assert set(r["translate"]["scores"]) == {row_key(x["variant"]) for x in rows}
    for row in rows:
        assert row["bleu"] == r["translate"]["scores"][row_key(row["variant"])]["all"]["bleu"]
        assert set(row["translation"]) == {"de", "fr", "all"}
    assert "Speech translation and other languages" in (out / "report.html").read_text()
    assert main([*args, "--no-translate"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert "translate" not in r and "translate" not in r["steps_run"] + r["steps_skipped"]
    assert "bleu" not in r["compare"]["rows"][0] and r["steps_skipped"][:2] == ["analyze", "prune"]
