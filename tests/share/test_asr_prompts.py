"""Per-row decoder prompts of `share.asr` (a translate row of another language reads
``<|LANG|><|translate|>``, an English row ``<|en|><|transcribe|>``): the prompts from manifest
rows, the teacher's tokens decoded with each row's prompt (batched), and every loss and score
teacher-forced with it. A random tiny Whisper made multilingual, with a stand-in tokenizer."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
import torch

from stackslim.data import Clip
from stackslim.models import load_encoder
from stackslim.models.base import EncoderError
from stackslim.models.transcribe import greedy_decode
from stackslim.share.asr import (
    AsrTargets,
    clip_task,
    decode_rows,
    decoded_wer,
    row_prompts,
    soft_targets,
    teacher_tokens,
    token_agreement,
)
from stackslim.share.recover import distill_cache

SOT, NTS, EOT, EN, DE, TRANSCRIBE, TRANSLATE = 125, 126, 127, 120, 121, 122, 123


class _Tokenizer:
    """Whisper's special tokens at the top of the random model's 128 ids; every other id a word."""

    ids: ClassVar[dict[str, int]] = {"<|startoftranscript|>": SOT, "<|notimestamps|>": NTS, "<|endoftext|>": EOT,
           "<|en|>": EN, "<|de|>": DE, "<|transcribe|>": TRANSCRIBE, "<|translate|>": TRANSLATE}
    unk_token_id = None

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self.ids.get(token)

    def decode(self, toks, skip_special_tokens: bool = True) -> str:
        return " ".join(f"w{t}" for t in toks if t < EN)


def _clip(name: str, **extra: str) -> Clip:
    return Clip(path=Path(f"/data/{name}.wav"), label="x", extra=extra)


GERMAN = _clip("de", language="de", reference_en="the weather is nice")
ENGLISH = _clip("en")  # a synth-sentences row: no language column


@pytest.fixture(scope="module")
def multilingual():
    """(a random tiny Whisper teacher whose model is multilingual, 4 noise clips, two of one
    length so that decoding batches them, and their states)."""
    torch.manual_seed(0)
    teacher = load_encoder("random:whisper")
    teacher.model.generation_config.is_multilingual = True
    waves = [0.1 * torch.randn(n).numpy() for n in (16000, 16000, 9600, 4800)]
    cache = distill_cache(teacher, [(waves, list(range(4)))], states="last", progress=False)
    return teacher, cache


def test_prompts_come_from_each_manifest_row(multilingual):
    model = multilingual[0].model
    assert clip_task(GERMAN) == ("de", "translate") and clip_task(ENGLISH) == (None, "transcribe")
    said = _clip("de2", language="de", reference_en="hi", task="transcribe")  # a task column wins
    english_ref = _clip("en2", language="en", reference_en="hi")  # English speech: transcribed
    assert row_prompts(model, _Tokenizer(), [GERMAN, ENGLISH, said, english_ref]) == [
        [SOT, DE, TRANSLATE, NTS], [SOT, EN, TRANSCRIBE, NTS], [SOT, DE, TRANSCRIBE, NTS],
        [SOT, EN, TRANSCRIBE, NTS]]


def test_english_only_model_keeps_its_prompt_and_names_a_foreign_row():
    model = load_encoder("random:whisper").model  # vocabulary of 128: English-only
    assert row_prompts(model, _Tokenizer(), [ENGLISH, ENGLISH]) == [[SOT, NTS], [SOT, NTS]]
    with pytest.raises(EncoderError, match=r"^/data/de.wav: an English-only Whisper model cannot translate 'de'"):
        row_prompts(model, _Tokenizer(), [ENGLISH, GERMAN])
    bad = _clip("bad", task="summarise")
    with pytest.raises(EncoderError, match=r"^/data/bad.wav: unknown task 'summarise'"):
        row_prompts(model, _Tokenizer(), [bad])


@pytest.fixture(scope="module")
def targets(multilingual):
    """The teacher's tokens of rows 0 and 3 (German, translate) and 1 and 2 (English)."""
    teacher, cache = multilingual
    prompts = row_prompts(teacher.model, _Tokenizer(), [GERMAN, ENGLISH, ENGLISH, GERMAN])
    return teacher, cache, prompts, teacher_tokens(teacher.model, _Tokenizer(), cache,
                                                   progress=False, prompts=prompts)


def test_teacher_decodes_each_row_with_its_own_prompt(targets):
    teacher, cache, prompts, tg = targets
    assert tg.prompt_of(0) == [SOT, DE, TRANSLATE, NTS] and tg.prompt_of(1) == [SOT, EN, TRANSCRIBE, NTS]
    assert DE in tg.prompt_of(3) and TRANSLATE in tg.prompt_of(3)
    for r in range(4):  # the batched decoding equals each row alone with its prompt
        alone = greedy_decode(teacher.model, cache.states[-1][r][None], prompts[r], EOT, 64)[0]
        assert tg.tokens[r] == alone
    english = teacher_tokens(teacher.model, _Tokenizer(), cache, progress=False)  # one prompt
    assert english.prompts is None and english.prompt_of(0) == [SOT, EN, TRANSCRIBE, NTS]
    assert english.tokens[0] != tg.tokens[0]  # the German row read as English speech
    assert english.tokens[1] == tg.tokens[1] and english.tokens[2] == tg.tokens[2]


def test_losses_and_scores_are_teacher_forced_with_the_rows_prompt(targets):
    teacher, cache, _, tg = targets
    # every target is the teacher's own argmax, but the eot of a row cut at the token limit
    total = sum(len(t) + 1 for t in tg.tokens.values())
    cut = sum(len(t) == 64 - len(tg.prompt_of(r)) for r, t in tg.tokens.items())
    right = token_agreement(teacher, tg, cache)
    assert right == pytest.approx(1.0 - cut / total)
    # the same tokens forced after one English prompt for every row: no longer all the teacher's
    one = AsrTargets(tg.model, tg.prompt, tg.eot, tg.tokens)
    assert token_agreement(teacher, one, cache) < right
    rows = [0, 1, 2, 3]
    states, n = cache.batch(-1, rows)
    with torch.no_grad():
        s, c = tg.loss_sum(states, n, rows)
        s1, _ = one.loss_sum(states, n, rows)
        ref = sum(torch.nn.functional.cross_entropy(
            *tg.logits(cache.states[-1][r], tg.tokens[r], tg.prompt_of(r)), reduction="sum") for r in rows)
    torch.testing.assert_close(s, ref)
    assert c == sum(len(tg.tokens[r]) + 1 for r in rows) and float(s) < float(s1)
    assert decoded_wer(teacher, tg, cache, _Tokenizer()) == 0.0
    assert decoded_wer(teacher, one, cache, _Tokenizer()) > 0.0


def test_shifted_and_soft_targets_keep_the_prompts(targets):
    _, cache, _, tg = targets
    moved = tg.shifted(5)
    assert moved.prompt_of(5) == tg.prompt_of(0) and moved.prompt_of(6) == tg.prompt_of(1)
    soft = soft_targets(tg, cache, 2)
    for r in (0, 3):  # the top-2 distribution after the row's own prompt
        logits, _ = tg.logits(cache.states[-1][r], tg.tokens[r], tg.prompt_of(r))
        assert torch.equal(soft.soft[r][1], logits.softmax(-1).topk(2, -1).indices)


def test_decode_rows_batches_rows_of_one_prompt_and_length(multilingual):
    teacher, cache = multilingual
    calls = []
    real = teacher.model.model.decoder.forward

    def spy(*a, **k):
        calls.append(k["encoder_hidden_states"].shape[0])
        return real(*a, **k)

    states = {r: cache.states[-1][r] for r in range(4)}
    prompts = {0: [SOT, NTS], 1: [SOT, NTS], 2: [SOT, NTS], 3: [SOT, DE, NTS]}
    teacher.model.model.decoder.forward = spy
    try:
        out = decode_rows(teacher.model, states, prompts, EOT, max_new_tokens=1)
    finally:
        del teacher.model.model.decoder.forward
    assert sorted(out) == [0, 1, 2, 3] and sorted(calls) == [1, 1, 2]  # rows 0 and 1 together


def test_held_out_clips_cover_every_prompt():
    from stackslim.data import AudioDataset
    from stackslim.share.pipeline import held_out

    english = AudioDataset([_clip(f"en{i}") for i in range(10)])
    assert held_out(english, list(range(10)), 2) == (list(range(8)), [8, 9])  # one prompt: the last
    mixed = AudioDataset([GERMAN] * 10 + [ENGLISH] * 10)  # one language after the other
    fit, val = held_out(mixed, list(range(20)), 3)
    assert val == [0, 10, 19] and sorted(fit + val) == list(range(20))
    assert {clip_task(mixed.clips[i]) for i in val} == {("de", "translate"), (None, "transcribe")}
