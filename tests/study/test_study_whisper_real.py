"""A quick study on the real whisper-tiny.en, from the command line, with the smallest budget:
its `wer` step scores every variant, and the --share-* options reach the shared variant's run
(nothing monkeypatched). Sentences: the tiny `synth-sentences` of `sentence_cache`."""
from __future__ import annotations

import json

import pytest

from stackslim.cli import main

MODEL = "whisper-tiny.en"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def whisper_study(one_thread, tone_data, sentence_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("study-tiny-en")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STACKSLIM_CACHE", str(sentence_cache))
        rc = main(["study", MODEL, str(tone_data), "--quick", "--out", str(out),
                   "--max-clips", "24", "--analyze-clips", "12", "--strategies", "backward",
                   "--mimic-grid", "linear-1-32", "--share-grid", "K2-r4", "--mimic-epochs", "1", "--recover-epochs", "1",
                   "--wer-clips", "1", "--latency-clips", "1", "--share-init", "svd",
                   "--share-unlabelled", "synth-sentences", "--share-max-unlabelled", "3",
                   "--share-asr-weight", "1", "--share-recover-states", "last",
                   "--share-local-epochs", "1", "--share-augment", "0"])
    assert rc == 0
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.real
def test_every_variant_has_a_wer(whisper_study, sentence_cache, monkeypatch):
    from stackslim.models import load_encoder
    from stackslim.evaluate.wer import load_tokenizer, sentence_clips, whisper_wer

    out, r = whisper_study
    wer = r["wer"]["wer"]
    rows = r["compare"]["rows"]
    kinds = [row["kind"] for row in rows]
    assert kinds[0] == "teacher" and {"pruned", "mimic", "shared"} <= set(kinds)
    assert set(wer) == {row["variant"].split(" (")[0].replace(": ", ":") for row in rows}
    for row in rows:
        assert isinstance(row["wer"], float) and row["wer"] >= 0.0, row
        lo, hi = row["wer_ci95"]  # the bootstrap interval reaches every row
        assert lo <= row["wer"] <= hi, row
    assert r["wer"]["clips"] == 1
    # the teacher's number is whisper_wer of the teacher on the same sentence
    monkeypatch.setenv("STACKSLIM_CACHE", str(sentence_cache))
    whisper, tok = load_tokenizer(MODEL)
    waves, refs = sentence_clips("synth-sentences", 1)
    assert wer["teacher"] == whisper_wer(load_encoder(MODEL), whisper, tok, waves, refs)["wer"]
    # a mimic layer trained for about a second transcribes worse than the teacher
    assert wer["mimic:linear-1-32"] > wer["teacher"]
    saved = json.loads((out / "wer" / "wer.json").read_text())
    assert {k: v["wer"] for k, v in saved.items()} == wer
    assert {k: v["interval"] for k, v in saved.items()} == r["wer"]["interval"]
    assert "WER 95% interval" in (out / "report.html").read_text()
    # English-only: the translation step (on by default) says why it measured nothing
    assert "English-only" in r["translate"]["skipped"] and "bleu" not in rows[0]


@pytest.mark.real
def test_share_options_reach_the_shared_variant(whisper_study):
    out, _ = whisper_study
    cfg = json.loads((out / "share-K2-r4" / "config.json").read_text())["config"]
    assert (cfg["group"], cfg["rank"], cfg["unlabelled"], cfg["max_unlabelled"], cfg["asr_weight"],
            cfg["recover_states"]) == (2, 4, "synth-sentences", 3, 1.0, "last")
    data = json.loads((out / "share-K2-r4" / "share.json").read_text())["recovery"]["data"]
    # 3 unlabelled sentences: 2 distilled on whole with the decoder loss, 1 held out
    assert data["unlabelled_clips"] == 2 and data["asr"]["clips"] == 2
    assert data["asr"]["validation_clips"] == 1 and data["asr"]["weight"] == 1.0
