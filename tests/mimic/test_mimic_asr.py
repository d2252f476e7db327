"""The ASR mimic (`stackslim mimic --task asr`): its decoder loss is the teacher-forced
cross-entropy of the frozen Whisper decoder, stage 2 lowers it on its training clips, a mimic
without a classifier head saves and loads, and the refusals come before anything is written."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from asrhelpers import make_decoder_listen

from stackslim.cli import main
from stackslim.mimic import MimicConfig, MimicError, MimicModel
from stackslim.mimic.asr import (
    AsrData,
    asr_loss,
    decoder_loss,
    fit_asr,
    sentence_splits,
    spread,
    wer_with_interval,
)
from stackslim.mimic.data import FEATURES, LAST, cache_targets
from stackslim.mimic.fit import masked_mse
from stackslim.models import load_encoder
from stackslim.models.transcribe import word_error_rate
from stackslim.share.asr import AsrTargets
from stackslim.train import TrainConfig

PROMPT, EOT = [1, 3], 2


@pytest.fixture(scope="module")
def setup():
    """A random tiny Whisper teacher, 4 noise clips (two lengths), their cached features and
    last states, and fixed target tokens per clip. The random decoder is made to listen: its
    cross-attention values and its final norm are scaled up (at init its logits are near uniform
    whatever it reads, so no encoder could move its loss)."""
    torch.manual_seed(0)
    enc = load_encoder("random:whisper")
    make_decoder_listen(enc)
    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 9600, 16000, 9600)]
    cache = cache_targets(enc, [(waves, list(range(4)))], progress=False)
    tokens = {r: [int(t) for t in rng.integers(4, 128, 3 + r)] for r in range(4)}
    return enc, cache, AsrTargets(enc.model, PROMPT, EOT, tokens)


def _student(enc, seed: int = 0) -> MimicModel:
    return MimicModel.from_teacher(enc, None, "transformer", 1, 32, positions=True, seed=seed)


def _direct_ce(enc, model: MimicModel, cache, targets: AsrTargets) -> float:
    """Reference: −log p of every text token and eot, one decoder pass per clip over
    prompt + tokens, summed over clips and divided by the number of predicted tokens."""
    total, count = 0.0, 0
    for r, toks in targets.tokens.items():
        x, n = cache.batch(FEATURES, [r])
        h = model.mimic_states(x, n)[-1][0, : int(n[0])]  # (T, d)
        ids = PROMPT + toks + [EOT]
        out = enc.model.model.decoder(input_ids=torch.tensor([ids[:-1]]), encoder_hidden_states=h[None])
        logp = F.log_softmax(enc.model.proj_out(out.last_hidden_state[0]), -1)  # (len - 1, V)
        for t in range(len(PROMPT), len(ids)):  # position t - 1 predicts token t
            total -= float(logp[t - 1, ids[t]])
            count += 1
    return total / count


def test_decoder_loss_is_the_teacher_forced_cross_entropy(setup):
    enc, cache, targets = setup
    model = _student(enc)
    with torch.no_grad():
        assert decoder_loss(model, cache, targets) == pytest.approx(_direct_ce(enc, model, cache, targets),
                                                                    rel=1e-5)
        # L_2 on a batch = MSE / v + μ · the same cross-entropy over the batch's tokens
        rows = [0, 1, 2, 3]
        x, n = cache.batch(FEATURES, rows)
        mse = masked_mse(model.mimic_states(x, n)[-1], cache.batch(LAST, rows)[0], n)
        got = asr_loss(model, cache, targets, rows, scale=2.0, weight=0.5)
        ref = mse / 2.0 + 0.5 * _direct_ce(enc, model, cache, targets)
        assert float(got) == pytest.approx(float(ref), rel=1e-5)
        assert float(asr_loss(model, cache, targets, rows, scale=2.0)) == pytest.approx(float(mse) / 2.0)


def test_stage2_lowers_the_decoder_loss_on_its_training_clips(setup):
    enc, cache, targets = setup
    model = _student(enc)
    data = AsrData(cache, cache, targets, targets, scale=1.0)
    before = decoder_loss(model, cache, targets)
    decoder_grads = [p.requires_grad for p in enc.model.parameters()]
    cfg = MimicConfig(task="asr", task_epochs=8, task_lr=1e-2, asr_weight=1.0,
                      train=TrainConfig(epochs=0, batch_size=2, patience=8))
    log = fit_asr(model, data, cfg, stage=2, progress=False)
    after = decoder_loss(model, cache, targets)
    assert log.epochs_run == 8
    assert after < 0.5 * before  # about 14.7 -> 4.1
    # the decoder stayed frozen and is unchanged in its flags afterwards
    assert [p.requires_grad for p in enc.model.parameters()] == decoder_grads
    assert all(p.grad is None for p in enc.model.parameters())


def test_a_mimic_without_a_head_saves_loads_and_refuses_logits(setup, tmp_path):
    enc, cache, _ = setup
    model = _student(enc, seed=1)
    path = model.save(tmp_path / "m")
    back = MimicModel.load(path)
    assert back.head is None and back.num_params("head") == 0
    x, n = cache.batch(FEATURES, [0, 1])
    with torch.no_grad():
        torch.testing.assert_close(back.mimic_states(x, n)[-1], model.mimic_states(x, n)[-1])
    with pytest.raises(MimicError, match="no classifier head"):
        back.logits_from_features(x, n)
    hs = back.as_encoder().hidden_states([np.zeros(8000, np.float32)])  # what whisper_wer reads
    assert len(hs.states) == 2 and hs.states[-1].shape[-1] == model.hidden_size


def test_sentence_splits_and_spread(tone_dataset):
    with pytest.raises(MimicError, match="split=pool"):
        sentence_splits(tone_dataset, "tones")
    assert spread(list(range(10)), 0) == list(range(10))
    assert spread(list(range(10)), 3) == [0, 4, 9] or spread(list(range(10)), 3) == [0, 5, 9]


@pytest.mark.parametrize("model", ["random:wav2vec2", "random:whisper"])
def test_task_asr_refuses_before_writing(model, tone_data, tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["mimic", model, str(tone_data), "--out", str(out), "--task", "asr", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    # a non-Whisper model is named as such; a random Whisper has no tokenizer to score WER with
    assert ("needs a Whisper model" in err) if "wav2vec2" in model else ("tokenizer" in err)
    assert not out.exists()


def test_wer_interval_bootstraps_the_corpus_wer_of_whisper_wer(monkeypatch):
    """The WER is `whisper_wer`'s; the interval resamples sentences of the same normalised score
    (spelled and written numbers agree: Whisper's normaliser), and contains it."""
    from stackslim.mimic import asr

    refs = ["the thirteenth door is open", "close it", "one two three", "good night"] * 5
    hyps = ["the 13th door is open", "close", "one two three four", "good night"] * 5
    monkeypatch.setattr(asr, "whisper_wer", lambda enc, w, t, waves, r: {
        "wer": word_error_rate(r, hyps), "clips": len(r), "hypotheses": hyps})
    got = wer_with_interval(None, None, None, [None] * len(refs), refs, resamples=300)
    # normalised: 13th = thirteenth, "one two three" = "123"; 2 edits ("it", 123 → 1234) in 10 words
    assert got["wer"] == pytest.approx(0.2)
    lo, hi = got["interval95"]
    assert 0 < lo < got["wer"] < hi < 0.5
    # a resample scores its sentences' edits over their words: never beyond every sentence's worst
    assert hi <= 0.5 and got["clips"] == 20
    same = wer_with_interval(None, None, None, [None] * len(refs), hyps, resamples=50)
    assert same["wer"] == 0 and same["interval95"] == [0.0, 0.0]
