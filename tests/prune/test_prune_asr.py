"""`stackslim prune --task asr` on a tiny random Whisper: clips and splits, the cached
transcription path (equal to `whisper_wer`'s, prefixes re-used), greedy and beam on agreement
WER, the chosen model and its files, the WER interval, and the one-line refusals."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from asrhelpers import WordTokenizer, write_noise_sentences

from stackslim.cli import main
from stackslim.data import load_dataset
from stackslim.evaluate.wer import whisper_wer
from stackslim.models import load_encoder
from stackslim.models.transcribe import word_error_rate
from stackslim.prune import PruneConfig, PruneError
from stackslim.prune import asr
from stackslim.prune.asr import Transcripts, WerCurve, asr_clips, padded_states, wer_with_interval
from stackslim.prune.pipeline_asr import AsrStrategyResult, _choose_best, run_asr
from stackslim.prune.strategies import ScoringContext, deletion_order


SPLITS = ["pool"] * 6 + ["eval"] * 3 + ["test", ""]


@pytest.fixture(scope="module", autouse=True)
def _short_transcripts():
    """The random decoder seldom says eot: 8 tokens a clip instead of 64 keep the tests fast."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(asr, "EVAL_MAX_TOKENS", 8)
        yield


@pytest.fixture(scope="module")
def asr_dir(tmp_path_factory):
    """A transcribed set: 6 pool, 3 eval, 1 test and 1 unsplit clip of noise (0.3-0.6 s)."""
    return write_noise_sentences(tmp_path_factory.mktemp("asr"), SPLITS)


@pytest.fixture(scope="module")
def setup(asr_dir):
    torch.manual_seed(0)
    enc = load_encoder("random:whisper")  # 4 layers, d 64, a 2-layer decoder
    clips = asr_clips(asr_dir, 4, 0, seed=0)
    tr = Transcripts(enc, enc.model, WordTokenizer(), padded_states(enc, clips.score),
                     padded_states(enc, clips.eval), batch_size=2)
    return enc, clips, tr


def sign_transcribe(model, tokenizer, encoder_states, batch_size=8, max_new_tokens=64):
    """A stand-in decoder that reads the states closely (the random one writes the same words
    whatever it reads): 12 words, the signs of the first 12 dimensions of the mean state over
    the first 300 frames (6 s)."""
    return [" ".join(f"{'p' if x > 0 else 'n'}{j}" for j, x in enumerate(h[:300].mean(0)[:12].tolist()))
            for h in encoder_states]


@pytest.fixture
def graded(setup, monkeypatch):
    """The random encoder with its layers' output maps × 20 (each layer then changes the states
    enough to flip some signs: deletions cost 0 to 25% agreement WER), read by `sign_transcribe`."""
    enc, clips, _ = setup
    enc = copy.deepcopy(enc)
    with torch.no_grad():
        for layer in enc.layers:
            layer.fc2.weight.mul_(20)
            layer.self_attn.out_proj.weight.mul_(20)
    monkeypatch.setattr(asr, "transcribe", sign_transcribe)
    return enc, clips


def test_clips_score_outside_eval_and_report_on_eval(asr_dir):
    ds = load_dataset(asr_dir)
    c = asr_clips(asr_dir, 100, 0)
    pool = {i for i, s in enumerate(SPLITS) if s == "pool"}
    assert len(c.score) == len(pool) and len(c.eval) == 3  # test and unsplit clips in neither
    assert {len(w) for w in c.score} == {len(ds.load(i)) for i in pool}
    assert c.references == [ds.clips[i].label for i, s in enumerate(SPLITS) if s == "eval"]
    assert len(asr_clips(asr_dir, 2, 2).score) == 2 and len(asr_clips(asr_dir, 2, 2).eval) == 2


def test_clips_refuse_a_set_without_eval_and_other_clips(tones_dir):
    with pytest.raises(PruneError, match="split column"):
        asr_clips(tones_dir, 4, 0)


def test_cached_path_transcribes_as_whisper_wer_and_reuses_prefixes(setup):
    enc, clips, tr = setup
    full = tr.all
    assert tr.agreement(full) == 0.0 and any(tr.teacher)
    before = tr.runner.layer_runs
    kept = [0, 1, 3]  # layer 3 (1-based) deleted: prefix (0, 1) of the teacher's run is cached
    got = tr.texts("score", kept)
    assert tr.runner.layer_runs - before == len(clips.score)  # one layer run per clip, not three
    want = whisper_wer(enc.without_layers([2]), enc.model, WordTokenizer(), clips.score, tr.teacher,
                       max_new_tokens=tr.max_tokens)["hypotheses"]
    assert got == want
    assert tr.agreement(kept) == pytest.approx(word_error_rate(tr.teacher, got))
    ev = tr.eval_wer(full, clips.references)
    assert ev["hypotheses"] == whisper_wer(enc, enc.model, WordTokenizer(), clips.eval, clips.references,
                                           max_new_tokens=asr.EVAL_MAX_TOKENS)["hypotheses"]


def test_greedy_and_beam_maximise_the_transcription_score(graded):
    enc, clips = graded
    tr = Transcripts(enc, enc.model, None, padded_states(enc, clips.score), {}, batch_size=2)
    ctx = ScoringContext(tr.runner, None, enc.num_layers, split="score", quality=tr.quality,
                         quality_names=("-agreement_wer", "-state_distance"), margin=0.5)
    order, info = deletion_order("greedy", ctx)
    first = {c: tr.quality([i for i in tr.all if i != c]) for c in range(1, enc.num_layers)}
    assert len({v[0] for v in first.values()}) > 1  # the WERs differ: the pick is not a tie-break
    assert order[0] == max(first, key=lambda c: (first[c], c))
    assert info["steps"][0]["score"] == ["-agreement_wer", "-state_distance"]
    border, binfo = deletion_order("beam", ctx)
    assert sorted(border) == [1, 2, 3] and "score_per_set" in binfo
    assert ctx.floor(-0.1) == pytest.approx(-0.6)  # −WER_0 − margin
    assert ScoringContext(tr.runner, None, 4, threshold=0.9).floor(0.8) == pytest.approx(0.72)


def test_choose_best_most_layers_within_margin_then_lowest_wer():
    def res(name, wer):
        return AsrStrategyResult(name, [1, 2, 3], {}, WerCurve([1, 2, 3], wer), 0.0)

    a, b, c = res("a", [0, 0.02, 0.5, 1]), res("b", [0, 0.004, 0.008, 1]), res("c", [0, 0.002, 0.006, 0.9])
    s, k = _choose_best([a, b, c], 0.01)
    assert (s.name, k) == ("c", 2)  # b and c delete 2: c at the lower WER
    d = res("d", [0, 0.002, 0.006, 0.5])
    assert _choose_best([a, c, d], 0.01)[0].name == "d"  # equal WER: the nearer to one more
    e = res("e", [0, 0.002, 0.006, 0.5])
    assert _choose_best([a, e, d], 0.01)[0].name == "e"  # all equal: the one listed first
    f, g = res("f", [0, 0.5, 0.9, 1]), res("g", [0, 0.3, 0.9, 1])
    assert _choose_best([f, g], 0.01) == (g, 0)  # none deletable: the least bad first deletion
    assert _choose_best([a], 0.01)[1] == 0
    assert WerCurve([1, 2], [0, 0.2, 0.01]).max_deletable(0.01) == 2  # as the accuracy curves count


def test_wer_interval():
    refs = ["a b c d", "e f", "g h i", "j"]
    hyps = ["a b x d", "e f", "g i", "j k"]
    r = wer_with_interval(refs, hyps)
    assert r["wer"] == pytest.approx(word_error_rate(refs, hyps)) == pytest.approx(3 / 10)
    assert r["interval"][0] <= r["wer"] <= r["interval"][1] and r["interval"][1] > r["interval"][0]
    assert wer_with_interval(refs, refs)["interval"] == [0.0, 0.0]


def test_run_writes_curves_the_chosen_model_and_its_eval_wer(graded, asr_dir, tmp_path):
    enc, _ = graded
    cfg = PruneConfig(task="asr", strategies=("forward", "backward", "greedy"), asr_clips=4, eval_clips=0,
                      wer_margin=10.0)
    res = run_asr(enc, asr_dir, tmp_path / "o", cfg, progress=False, tokenizer=WordTokenizer())
    d = json.loads((tmp_path / "o" / "pruning.json").read_text())
    assert d["task"]["scored_clips"] == 4 and d["task"]["eval_clips"] == 3
    for s in d["strategies"].values():
        w = s["curve"]["agreement_wer"]
        assert w[0] == 0.0 and len(w) == enc.num_layers
        assert s["curve"]["max_deletable"] == max(k for k, x in enumerate(w) if x <= 0.1 + 1e-9)
    best = d["best"]
    k = max(d["summary"].values())
    assert k >= 1 and best["agreement_wer"] == min(s["curve"]["agreement_wer"][k] for s in d["strategies"].values()
                                                   if s["curve"]["max_deletable"] == k)
    assert len(best["deleted_layers"]) == k and best["num_layers"] == enc.num_layers - k
    ev = d["eval_curve"]
    assert ev["strategy"] == best["strategy"] and ev["deleted"] == list(range(min(k + 1, enc.num_layers - 1) + 1))
    assert ev["wer"][0] == d["teacher"]["eval_wer"] and ev["wer"][k] == best["eval_wer"]
    assert d["teacher"]["eval_interval"][0] <= d["teacher"]["eval_wer"] <= d["teacher"]["eval_interval"][1]
    saved = load_encoder(tmp_path / "o" / "model")
    assert saved.num_layers == best["num_layers"]
    info = json.loads((tmp_path / "o" / "model" / "pruned.json").read_text())
    assert info["deleted_layers"] == best["deleted_layers"] and info["task"] == "asr"
    assert (tmp_path / "o" / "pruning.png").stat().st_size > 10_000
    assert res.best == best


@pytest.mark.parametrize("bad, needle", [(dict(wer_margin=-1.0), "--wer-margin"),
                                         (dict(wer_margin=float("nan")), "--wer-margin"),
                                         (dict(wer_margin=100.0), "--wer-margin"),
                                         (dict(strategies=("forward", "greedy-refit")), "supports forward"),
                                         (dict(finetune=True), "--finetune"),
                                         (dict(asr_clips=0), "--asr-clips")])
def test_config_refuses(bad, needle):
    with pytest.raises(PruneError, match=needle):
        PruneConfig(task="asr", **bad)


def test_cli_refuses_a_model_that_is_not_whisper(asr_dir, tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["prune", "random:wav2vec2", str(asr_dir), "--task", "asr", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "random:wav2vec2" in err and "not Whisper" in err
    assert not out.exists()


def test_cli_refuses_a_bad_margin(asr_dir, tmp_path, capsys):
    rc = main(["prune", "random:whisper", str(asr_dir), "--task", "asr", "--wer-margin", "-2",
               "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--wer-margin" in err
    assert not (tmp_path / "o").exists()


def test_recover_local_fits_the_kept_layers_to_the_teacher(graded, asr_dir, tmp_path):
    """--recover local: the saved pruned stack's last state moves toward the teacher's on the
    scored clips, and pruning.json records the fit and the eval WER after it."""
    enc, clips = graded
    cfg = PruneConfig(task="asr", strategies=("backward",), asr_clips=4, eval_clips=0, wer_margin=50.0,
                      recover="local", recover_epochs=4, recover_lr=1e-3)
    run_asr(enc, asr_dir, tmp_path / "o", cfg, progress=False, tokenizer=WordTokenizer())
    d = json.loads((tmp_path / "o" / "pruning.json").read_text())
    rec = d["best"]["recovered"]
    deleted = [k - 1 for k in d["best"]["deleted_layers"]]
    assert deleted and rec["method"] == "local" and rec["clips"] == 4 and 0 <= rec["eval_wer"]
    assert all(g["loss_after"] < g["loss_before"] for g in rec["groups"])
    saved = load_encoder(tmp_path / "o" / "model")
    plain = enc.without_layers(deleted)

    def err(student):
        a = student.hidden_states(clips.score).states[-1]
        t = enc.hidden_states(clips.score).states[-1]
        return float(((a - t) ** 2).sum() / (t ** 2).sum())

    assert err(saved) < 0.9 * err(plain)


def test_recover_needs_task_asr():
    with pytest.raises(PruneError, match="--recover local is for --task asr"):
        PruneConfig(recover="local")
