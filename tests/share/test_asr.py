"""The decoder loss of `share.asr` (sequence-level distillation through the frozen Whisper
decoder), the length-grouped batches of `distill_loss`, whole unlabelled clips, and the
`--asr-weight` option's errors."""
from __future__ import annotations

import pytest
import torch
from asrhelpers import WordTokenizer

from stackslim.cli import main
from stackslim.models import load_encoder
from stackslim.models.cache import StateCache
from stackslim.share import to_residual
from stackslim.share.asr import AsrTargets, frozen, soft_targets, token_agreement
from stackslim.share.recover import distill_cache, distill_loss, length_groups, recovery_set
from stackslim.train import TrainConfig, train


def _cache(enc, waves) -> StateCache:
    return distill_cache(enc, [(waves, list(range(len(waves))))], states="all", progress=False)


def _argmax_tokens(model, h: torch.Tensor, prompt: list[int], n: int) -> list[int]:
    """Reference: n tokens chosen by the decoder's unmasked argmax, one full pass per token."""
    ids = list(prompt)
    for _ in range(n):
        out = model.model.decoder(input_ids=torch.tensor([ids]), encoder_hidden_states=h[None])
        ids.append(int(model.proj_out(out.last_hidden_state[0, -1]).argmax()))
    return ids[len(prompt):]


@pytest.fixture(scope="module")
def whisper_setup():
    """A random tiny Whisper teacher, 3 noise clips of different lengths and their states, and
    targets = the teacher decoder's own argmax tokens (eot = the token that followed them)."""
    torch.manual_seed(0)
    teacher = load_encoder("random:whisper")
    waves = [0.1 * torch.randn(n).numpy() for n in (16000, 9600, 4800)]
    cache = _cache(teacher, waves)
    prompt = [1, 3]
    tokens, eot = {}, None
    for r in range(len(waves)):
        seq = _argmax_tokens(teacher.model, cache.states[-1][r], prompt, 4)
        tokens[r], eot = seq[:3], seq[3]
    # one eot for every clip: keep the clips whose 4th token agrees (clip 0 at least)
    tokens = {r: t for r, t in tokens.items()
              if _argmax_tokens(teacher.model, cache.states[-1][r], prompt, 4)[3] == eot}
    return teacher, cache, AsrTargets(teacher.model, prompt, eot, tokens)


def test_length_groups_partition_rows_without_long_padding():
    lengths = torch.tensor([50, 50, 400, 48, 350, 20, 300])
    groups = length_groups(lengths, list(range(7)))
    assert sorted(r for g in groups for r in g) == list(range(7))
    for g in groups:  # nobody padded to more than twice its length
        assert all(2 * int(lengths[r]) >= int(lengths[g[0]]) for r in g)
    assert {2, 4, 6} in [set(g) for g in groups]


def test_grouped_loss_equals_the_whole_batch_formula(whisper_setup):
    teacher, cache, _ = whisper_setup
    student = to_residual(teacher, groups=2, rank=2, diag=True)
    rows, targets = [0, 1, 2], list(range(1, teacher.num_layers + 1))
    got = distill_loss(student, cache, rows, targets)
    # reference: one padded batch, every term over all rows at once
    x0, n = cache.batch(0, rows)
    hs = student.stack_forward(x0, n, final_norm=True, keep=True)
    m = hs.mask().unsqueeze(-1).float()
    ref = sum(((((hs.states[i] - cache.batch(i, rows)[0]) ** 2) * m).sum()
               / ((cache.batch(i, rows)[0] ** 2) * m).sum()) for i in targets) / len(targets)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-7)


def test_teacher_agrees_with_its_own_tokens_and_the_student_less(whisper_setup):
    teacher, cache, asr = whisper_setup
    assert token_agreement(teacher, asr, cache) == 1.0
    s, c = asr.loss_sum(cache.batch(-1, [0])[0], cache.lengths[:1], [0])
    assert c == len(asr.tokens[0]) + 1 and float(s.detach()) > 0  # text tokens and eot
    # this random decoder mostly repeats its prompt's last token whatever it reads: targets of
    # clip 0 after prompts [1, p] (its 5 greedy tokens, the 6th as eot) vary more
    student = to_residual(teacher, groups=4, rank=1, diag=False)
    with torch.no_grad():
        x0, n = cache.batch(0, [0])
        h_student = student.stack_forward(x0, n, keep=False).states[-1][0, : int(n[0])]  # (T, D)
    scores = []
    for p in range(2, 12):
        seq = _argmax_tokens(teacher.model, cache.states[-1][0], [1, p], 6)
        one = AsrTargets(teacher.model, [1, p], seq[5], {0: seq[:5]})
        assert token_agreement(teacher, one, cache) == 1.0
        # reference: the student's own argmax after each teacher-forced prefix, from its states
        want = [_argmax_tokens(teacher.model, h_student, [1, p] + seq[:j], 1)[0] for j in range(6)]
        ref = sum(a == b for a, b in zip(want, seq)) / 6
        scores.append(token_agreement(student, one, cache))
        assert scores[-1] == pytest.approx(ref)
    assert min(scores) < 1.0  # the converted student loses some of the teacher's tokens


def test_decoder_loss_trains_the_stack_and_leaves_the_decoder(whisper_setup):
    teacher, cache, asr = whisper_setup
    student = to_residual(teacher, groups=4, rank=1, diag=False)
    dec = [p.detach().clone() for p in teacher.model.model.decoder.parameters()]
    rows = sorted(asr.tokens)
    flags = [p.requires_grad for p in teacher.model.parameters()]

    def loss_now() -> float:
        with torch.no_grad():
            s, c = asr.loss_sum(student.stack_forward(*cache.batch(0, rows)).states[-1],
                                cache.lengths[rows], rows)
        return float(s) / c

    before = loss_now()
    with frozen(teacher.model):
        log = train(student.layers, len(cache),
                    lambda r: distill_loss(student, cache, r, [teacher.num_layers], asr=asr,
                                           asr_weight=1.0),
                    TrainConfig(epochs=15, batch_size=3, lr=3e-3, weight_decay=0.0),
                    progress=False)
        assert all(not p.requires_grad for p in teacher.model.parameters())
    assert [p.requires_grad for p in teacher.model.parameters()] == flags  # given back
    assert log.train_loss[-1] < log.train_loss[0] and loss_now() < before
    assert all(torch.equal(a, b) for a, b in zip(dec, teacher.model.model.decoder.parameters()))
    assert all(p.grad is None for p in teacher.model.model.decoder.parameters())


def test_targets_shift_with_their_rows(whisper_setup):
    _, cache, asr = whisper_setup
    moved = asr.shifted(10)
    assert moved.tokens == {r + 10: t for r, t in asr.tokens.items()}
    soft = soft_targets(asr, cache, 3).shifted(10)
    assert sorted(soft.soft) == sorted(moved.tokens)


def _loss(asr: AsrTargets, states: torch.Tensor, cache: StateCache) -> float:
    rows = sorted(asr.tokens)
    with torch.no_grad():
        s, c = asr.loss_sum(states[rows], cache.lengths[rows], rows)
    return float(s) / c


def test_top_1_soft_targets_are_the_greedy_token_loss(whisper_setup):
    teacher, cache, asr = whisper_setup  # its tokens are the teacher decoder's argmax
    student = to_residual(teacher, groups=4, rank=1, diag=False)
    h = student.stack_forward(*cache.batch(0, list(range(len(cache))))).states[-1].detach()
    assert _loss(soft_targets(asr, cache, 1), h, cache) == pytest.approx(_loss(asr, h, cache), rel=1e-5)


def test_full_soft_targets_are_cross_entropy_to_the_teacher_decoder(whisper_setup):
    # K = V: L = (1/S) Σ_t H(q_t, p_t), least (the entropy of q) where p = q: the teacher's states
    teacher, cache, asr = whisper_setup
    full = soft_targets(asr, cache, teacher.model.config.vocab_size)
    rows = sorted(asr.tokens)
    entropy = sum(float(-(q * q.clamp_min(1e-30).log()).sum()) for q, _ in full.soft.values())
    entropy /= sum(len(asr.tokens[r]) + 1 for r in rows)
    h_teacher = cache.batch(-1, list(range(len(cache))))[0]
    assert _loss(full, h_teacher, cache) == pytest.approx(entropy, rel=1e-4)
    student = to_residual(teacher, groups=4, rank=1, diag=False)
    h = student.stack_forward(*cache.batch(0, list(range(len(cache))))).states[-1].detach()
    assert _loss(full, h, cache) > entropy


def test_recovery_set_keeps_unlabelled_clips_whole(whisper_setup):
    _, cache, _ = whisper_setup
    train_part = StateCache({k: v[2:] for k, v in cache.states.items()}, cache.lengths[2:], [2])
    pool = StateCache({k: v[:2] for k, v in cache.states.items()}, cache.lengths[:2], [0, 1])
    labels = torch.tensor([0])
    whole, y, counts = recovery_set(train_part, labels, pool, whole=True)
    cut, _, cut_counts = recovery_set(train_part, labels, pool)
    assert len(whole) == 3 and whole.lengths.tolist() == cache.lengths[[2, 0, 1]].tolist()
    assert y.tolist() == [0, -1, -1] and counts["unlabelled_windows"] == 2
    assert cut_counts["unlabelled_windows"] > 2  # the default cuts them to the train clip's length


@pytest.mark.parametrize("model,extra,needle", [
    ("random:whisper", [], "--unlabelled"),
    ("random:wav2vec2", ["--unlabelled", "POOL"], "Whisper"),
    ("random:whisper", ["--unlabelled", "POOL", "--asr-top-k", "0"], "--asr-top-k"),
])
def test_asr_weight_errors_are_one_line(tone_data, tmp_path, capsys, model, extra, needle):
    extra = [str(tone_data) if e == "POOL" else e for e in extra]
    rc = main(["share", model, str(tone_data), "--out", str(tmp_path / "o"), "--asr-weight", "1",
               "--group", "2", "--rank", "2", "--head-epochs", "1", "--latency-clips", "0",
               "--calib", "0", "--epochs", "1", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o" / "share.json").exists()


@pytest.fixture(scope="module")
def greedy_setup(whisper_setup):
    """(teacher, cache, targets = the teacher's greedy transcripts (64 tokens at most), tokenizer)."""
    from stackslim.models.transcribe import greedy_decode, prompt_ids

    teacher, cache, _ = whisper_setup
    tok = WordTokenizer()
    prompt, eot = prompt_ids(teacher.model, tok)
    tokens = {r: greedy_decode(teacher.model, cache.states[-1][r][None], prompt, eot, 64)[0]
              for r in range(len(cache))}
    return teacher, cache, AsrTargets(teacher.model, prompt, eot, tokens), tok


def test_decoded_wer_is_zero_for_the_teacher_and_scores_the_student(greedy_setup):
    from stackslim.share.asr import AsrRecovery, decoded_wer

    teacher, cache, targets, tok = greedy_setup
    assert any(targets.tokens.values())  # something to compare
    assert decoded_wer(teacher, targets, cache, tok) == 0.0  # the teacher reproduces its own words
    student = to_residual(teacher, groups=4, rank=1, diag=False)
    wer = decoded_wer(student, targets, cache, tok)
    asr = AsrRecovery(targets, val_cache=cache, val=targets, select="wer", tokenizer=tok)
    assert asr.score(student) == pytest.approx(1.0 - min(wer, 1.0))
    assert asr.score(teacher) == 1.0
    assert decoded_wer(teacher, targets, cache, tok, max_new_tokens=6) > 0  # cut short: words lost


@pytest.mark.parametrize("bad", [dict(select="bleu"), dict(select="wer")])
def test_asr_recovery_refuses_a_bad_selection(whisper_setup, bad):
    from stackslim.share.asr import AsrRecovery

    with pytest.raises(ValueError, match="select"):
        AsrRecovery(whisper_setup[2], **bad)


def test_recover_selects_epochs_by_decoded_wer(greedy_setup):
    """With select="wer" the recovery's validation score is 1 − WER of the held-out clips."""
    from stackslim.share.asr import AsrRecovery
    from stackslim.share.recover import recover

    teacher, cache, targets, tok = greedy_setup
    student = to_residual(teacher, groups=4, rank=1, diag=False)
    asr = AsrRecovery(targets, 1.0, cache, targets, select="wer", tokenizer=tok)
    start = asr.score(student)
    log = recover(student, cache, TrainConfig(epochs=2, batch_size=3, lr=1e-3), states="last",
                  val_cache=cache, progress=False, asr=asr)
    assert log.initial_score == pytest.approx(start)
    assert len(log.train.val_score) == 2
    assert max(log.train.val_score[log.train.best_epoch], start) == pytest.approx(asr.score(student))
    # every score's parts, the converted student's first: here (no head) the decoded score alone
    assert [p["asr"] for p in log.val_parts] == pytest.approx([start, *log.train.val_score])
