"""`stackslim prune --task asr` on the real bundled whisper-tiny.en, a few clips of a tiny
synth-sentences: the unpruned stack agrees with the teacher (WER 0), deletions raise the WER,
the eval WER is `whisper_wer`'s, and the saved folder transcribes as reported."""
from __future__ import annotations

import json

import pytest

from stackslim.cli import main
from stackslim.evaluate.wer import whisper_wer
from stackslim.models import load_encoder
from stackslim.models.transcribe import load_whisper, transcribe
from stackslim.prune.asr import asr_clips

pytestmark = [pytest.mark.real, pytest.mark.usefixtures("one_thread")]


def test_tiny_en_agreement_is_zero_unpruned_and_rises_with_deletions(sentences_env, tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["prune", "whisper-tiny.en", "synth-sentences", "--task", "asr", "--strategies", "backward",
               "--asr-clips", "2", "--eval-clips", "2", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "eval WER" in capsys.readouterr().out
    d = json.loads((out / "pruning.json").read_text())
    for s in d["strategies"].values():
        w = s["curve"]["agreement_wer"]
        assert w[0] == 0.0 and len(w) == 4
        assert max(w) > 0.2  # whisper-tiny.en transcribes far worse with a layer gone
    clips = asr_clips("synth-sentences", 2, 2)
    enc = load_encoder("whisper-tiny.en")
    model, tok = load_whisper("whisper-tiny.en")
    want = whisper_wer(enc, model, tok, clips.eval, clips.references)
    assert d["teacher"]["eval_wer"] == pytest.approx(want["wer"], abs=1e-6)
    assert d["teacher"]["eval_transcripts"]["teacher"] == want["hypotheses"]
    saved, saved_tok = load_whisper(out / "model")  # a plain Whisper folder with its tokenizer
    assert saved.config.encoder_layers == d["best"]["num_layers"]
    assert transcribe(saved, saved_tok, clips.eval[:1]) == d["teacher"]["eval_transcripts"]["best"][:1]
