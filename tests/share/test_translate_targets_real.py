"""Translation targets of the decoder loss on the real whisper-base: a German synth-translate row
is decoded by the teacher after ``<|de|><|translate|>`` (English words, not the German source),
and the teacher's states predict those targets better after that prompt than after
``<|de|><|transcribe|>``: a wrong task token would make the loss teach the wrong task."""
from __future__ import annotations

import shutil

import pytest
import torch

from stackslim.data import load_dataset
from stackslim.data.synth import build
from stackslim.evaluate.wer import load_tokenizer
from stackslim.models import load_encoder
from stackslim.models.transcribe import prompt_ids
from stackslim.share.asr import AsrTargets, padded_batches, row_prompts, teacher_tokens
from stackslim.share.recover import distill_cache

pytestmark = [pytest.mark.real, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def tiny_translate(tmp_path_factory):
    """A synth-translate of the first sentence only: 3 voices per language, 9 clips."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    out = tmp_path_factory.mktemp("st") / "synth-translate"
    build("synth-translate", out, n_clips=1, workers=1)
    return out


@pytest.fixture(scope="module")
def german(tiny_translate, one_thread):
    """whisper-base's teacher tokens of one German translate row, its states and tokenizer."""
    ds = load_dataset(tiny_translate)
    rows = [i for i, c in enumerate(ds.clips) if c.get("language") == "de"][:1]
    whisper, tok = load_tokenizer("whisper-base")
    assert whisper is not None, tok
    cache = distill_cache(load_encoder("whisper-base"), padded_batches(ds.batches(rows, 1)),
                          states="last", progress=False)
    prompts = row_prompts(whisper, tok, [ds.clips[i] for i in rows])
    return whisper, tok, cache, teacher_tokens(whisper, tok, cache, progress=False, prompts=prompts), ds.clips[rows[0]]


def test_german_row_is_translated_and_its_prompt_forces_the_loss(german):
    whisper, tok, cache, tg, clip = german
    translate, _ = prompt_ids(whisper, tok, "de", "translate")
    transcribe, _ = prompt_ids(whisper, tok, "de", "transcribe")
    assert tg.prompt_of(0) == translate
    text = tok.decode(tg.tokens[0], skip_special_tokens=True).strip().lower()
    assert text and text != clip.get("source_text").lower()  # English words, not the source
    states, n = cache.batch(-1, [0])
    with torch.no_grad():
        own, count = tg.loss_sum(states, n, [0])
        wrong = AsrTargets(whisper, transcribe, tg.eot, tg.tokens).loss_sum(states, n, [0])[0]
    assert count == len(tg.tokens[0]) + 1
    assert float(own) / count < float(wrong) / count - 0.5  # nats per token


def test_english_only_teacher_refuses_translate_rows_in_one_line(tiny_translate, tone_data,
                                                                 tmp_path, capsys):
    from stackslim.cli import main

    rc = main(["share", "whisper-tiny.en", str(tone_data), "--out", str(tmp_path / "o"),
               "--unlabelled", str(tiny_translate), "--asr-weight", "1", "--epochs", "1",
               "--calib", "0", "--latency-clips", "0", "--wer-clips", "0"])
    # (transformers' own "Loading weights" bars also go to stderr)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and not ln.startswith("Loading")]
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("stackslim share: error: --unlabelled ")
    assert ".wav: an English-only Whisper model cannot translate 'de'" in err[0]
    assert not (tmp_path / "o" / "share.json").exists()
