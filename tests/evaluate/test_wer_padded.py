"""WER of any encoder through the original decoder is measured the way Whisper is used: the
teacher read through the variant path (`whisper_wer`) transcribes exactly as Whisper's own
padded 30 s input does (`transcribe` on the waves)."""
from __future__ import annotations

import pytest

from stackslim.evaluate.wer import sentence_clips, whisper_wer
from stackslim.models import load_encoder
from stackslim.models.transcribe import load_whisper, transcribe, word_error_rate

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def tiny():
    enc = load_encoder("whisper-tiny.en")
    model, tok = load_whisper("whisper-tiny.en")
    waves, refs = sentence_clips("synth-sentences", 6)
    return enc, model, tok, waves, refs


def test_variant_path_equals_padded_transcribe(tiny):
    enc, model, tok, waves, refs = tiny
    got = whisper_wer(enc, model, tok, waves, refs)
    want = transcribe(model, tok, waves)
    assert got["hypotheses"] == want
    assert got["wer"] == pytest.approx(word_error_rate(refs, want))
    assert got["wer"] <= 0.15  # whisper-tiny.en reads these synthetic sentences nearly right
