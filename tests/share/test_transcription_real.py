"""The transcription path on the real whisper-tiny.en, end to end: the WER of an encoder through
the original decoder (`share.evaluate.whisper_wer`, what every WER of share and the study is),
the teacher's transcripts and the teacher-forced agreement of `share.asr`, and a whole
`share --asr-weight` run. The sentences are a tiny `synth-sentences` (`sentence_cache`)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stackslim.data import unlabelled_clips
from stackslim.data.sentences import EVAL_SENTENCES
from stackslim.models import load_encoder
from stackslim.models.transcribe import (encode_audio, greedy_decode, prompt_ids, transcribe,
                                         word_error_rate)
from stackslim.share import to_residual
from stackslim.evaluate.wer import load_tokenizer, pad_silence, sentence_clips, whisper_wer

MODEL = "whisper-tiny.en"
pytestmark = pytest.mark.usefixtures("one_thread")


def _hf_states(whisper, waves) -> list[torch.Tensor]:
    """Reference: Hugging Face's own encoder (`encode_audio`, unpadded) on the clips followed by
    silence as `whisper_wer` reads them; (T_i, D) each."""
    states, n = encode_audio(whisper, pad_silence(waves), pad_to_30s=False)
    return [states[i, : int(k)] for i, k in enumerate(n)]


@pytest.fixture(scope="module")
def tiny_en(one_thread):
    """(the encoder adapter, the Whisper model with its decoder, the tokenizer)."""
    whisper, tok = load_tokenizer(MODEL)
    assert whisper is not None, tok
    return load_encoder(MODEL), whisper, tok


def test_pad_silence_lengths():
    sr = 16000
    waves = [np.ones(n, np.float32) for n in (sr, 4 * sr, 28 * sr)]
    out = pad_silence(waves)
    # max(6 s, clip + 3.5 s), at most 30 s
    assert [len(w) for w in out] == [6 * sr, int(7.5 * sr), 30 * sr]
    for w, o in zip(waves, out):
        assert np.array_equal(o[: len(w)], w) and not o[len(w):].any()


@pytest.mark.real
def test_sentence_clips_are_the_eval_split_spread_evenly(sentences_env):
    waves, refs = sentence_clips("synth-sentences", 0)
    # the eval split only (no pool clip): each sentence by the 3 clear voices, in order
    assert refs == [EVAL_SENTENCES[0]] * 3 + [EVAL_SENTENCES[1]] * 3
    two, refs2 = sentence_clips("synth-sentences", 2)
    assert refs2 == [refs[0], refs[5]]  # the first and the last
    assert np.array_equal(two[0], waves[0]) and np.array_equal(two[1], waves[5])


@pytest.mark.real
def test_teacher_wer_through_the_variant_path_equals_transcribe(sentences_env, tiny_en):
    enc, whisper, tok = tiny_en
    waves, refs = sentence_clips("synth-sentences", 0)
    waves, refs = [waves[i] for i in (0, 1, 3, 4)], [refs[i] for i in (0, 1, 3, 4)]  # rms, slt
    got = whisper_wer(enc, whisper, tok, waves, refs)
    # the same clips through Hugging Face's own encoder and `transcribe`
    ref_hyps = transcribe(whisper, tok, encoder_states=_hf_states(whisper, waves), max_new_tokens=64)
    assert got["hypotheses"] == ref_hyps and got["clips"] == 4
    assert got["wer"] == word_error_rate(refs, ref_hyps)
    # ... and through Whisper's usual 30 s window: the same transcripts on these clips
    assert transcribe(whisper, tok, waves) == ref_hyps
    print(f"\nteacher WER {got['wer']:.3f}: {got['hypotheses']}")
    assert got["wer"] <= 0.08  # 2 of 28 words here (slt: "close it or" for "close the door")


@pytest.mark.real
def test_teacher_forced_agreement_is_one_for_the_teacher_and_less_for_a_damaged_student(
        sentences_env, tiny_en):
    from stackslim.share.asr import padded_batches, teacher_tokens, token_agreement
    from stackslim.share.recover import distill_cache

    enc, whisper, tok = tiny_en
    ds, idx = unlabelled_clips("synth-sentences", 2, seed=0)
    cache = distill_cache(enc, padded_batches(ds.batches(idx, 8)), total=len(idx), states="last",
                          progress=False)
    targets = teacher_tokens(whisper, tok, cache, progress=False)
    # the teacher's transcripts: greedy tokens of Hugging Face's encoder on the same clips
    prompt, eot = prompt_ids(whisper, tok)
    ref = [greedy_decode(whisper, h[None], prompt, eot, 64)[0]
           for h in _hf_states(whisper, [ds.load(i) for i in idx])]
    assert [targets.tokens[r] for r in range(len(idx))] == ref and all(ref)
    assert token_agreement(enc, targets, cache) == 1.0
    damaged = enc.without_layers([1])
    assert token_agreement(damaged, targets, cache) < 0.9
    shared = to_residual(enc, groups=4, rank=1, diag=False)
    assert token_agreement(shared, targets, cache) < 1.0


@pytest.mark.real
def test_share_with_the_decoder_loss_records_its_data_and_tokens(sentences_env, tiny_en, tone_data,
                                                                  tmp_path, monkeypatch):
    from stackslim.share.asr import AsrTargets
    from stackslim.share import ShareConfig
    from stackslim.share import run as share
    from stackslim.train import TrainConfig

    _, whisper, tok = tiny_en
    seen: list[tuple[int, int]] = []  # (row, its length) of every row the decoder loss reads
    loss_sum = AsrTargets.loss_sum

    def spy(self, states, lengths, rows):
        seen.extend((r, int(lengths[b])) for b, r in enumerate(rows) if r in self.tokens)
        return loss_sum(self, states, lengths, rows)

    monkeypatch.setattr(AsrTargets, "loss_sum", spy)
    cfg = ShareConfig(group=2, rank=4, unlabelled="synth-sentences", max_unlabelled=3, asr_weight=1.0,
                      train=TrainConfig(epochs=1, lr=1e-4, batch_size=32, weight_decay=0.0, patience=1),
                      recover_states="last", head_epochs=1,
                      calib=0, max_clips=12, wer_clips=0, latency_clips=0)
    share(MODEL, str(tone_data), tmp_path / "o", cfg, progress=False)
    r = json.loads((tmp_path / "o" / "share.json").read_text())
    data = r["recovery"]["data"]
    # 3 unlabelled clips: the last held out to validate, 2 distilled on whole
    assert data["unlabelled_clips"] == 2 and data["unlabelled_windows"] == 2
    n_train = data["labelled_clips"]
    assert data["rows"] == n_train + 2
    assert {k: data["asr"][k] for k in ("weight", "top_k", "select", "clips", "validation_clips")} == \
        {"weight": 1.0, "top_k": 1, "select": "agreement", "clips": 2, "validation_clips": 1}
    # the tokens: the teacher's greedy transcripts of those 2 clips, each with its eot
    ds, idx = unlabelled_clips("synth-sentences", 3, seed=0)
    prompt, eot = prompt_ids(whisper, tok)
    hf = _hf_states(whisper, [ds.load(i) for i in idx[:2]])
    assert data["asr"]["tokens"] == sum(len(greedy_decode(whisper, h[None], prompt, eot, 64)[0]) + 1
                                        for h in hf)
    # the decoder loss read exactly the unlabelled rows (after the train split's), at their
    # whole padded length: not a labelled 0.25 s clip
    assert sorted({row for row, _ in seen}) == list(range(n_train, n_train + 2))
    assert {row: n for row, n in seen} == {n_train + j: h.shape[0] for j, h in enumerate(hf)}
    # validation scored the converted student's teacher-forced agreement, below the teacher's 1
    parts = r["recovery"]["val_parts"]
    assert len(parts) == 2 and 0.0 < parts[0]["asr"] < 1.0
    assert r["teacher"]["accuracy"] > 0 and r["after"] is not None
