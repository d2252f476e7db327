"""`stackslim fit --task asr` on a tiny random Whisper and a synthesised sentences manifest:
refusals through the CLI (one line, exit 2, nothing written), fit.json with every trained
candidate's agreement WER and eval WER, the winner the lowest agreement WER that fits the
budget, and the same numbers for the same seed."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from asrhelpers import WordTokenizer, make_decoder_listen, write_noise_sentences

from stackslim.cli import main
from stackslim.fit import FitConfig, run
from stackslim.fit import asr as fit_asr
from stackslim.fit.asr import AsrScorer
from stackslim.fit.predict import Candidate
from stackslim.fit.search import Trial
from stackslim.models import load_encoder
from stackslim.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

SPLITS = ["pool"] * 9 + ["eval"] * 3 + ["test"]
BUDGET_MB = 0.9  # the random Whisper's encoder is 1.03 MB: the teacher itself does not fit


@pytest.fixture(scope="module", autouse=True)
def _short_transcripts():
    """The random decoder seldom says eot: 8 tokens a clip instead of 64 keep the tests fast."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fit_asr, "MAX_TOKENS", 8)
        yield


@pytest.fixture(scope="module")
def sentences(tmp_path_factory):
    """manifest.csv of 9 pool, 3 eval and 1 test clip of noise (0.3-0.9 s), three words each."""
    return write_noise_sentences(tmp_path_factory.mktemp("fit-sentences"), SPLITS, step=800) / "manifest.csv"


@pytest.fixture(scope="module")
def teacher():
    """random:whisper whose decoder listens (its cross-attention values and final norm scaled
    up) and whose encoder layers matter (their output maps × 20): at init the transcripts
    hardly depend on the states, and every candidate would tie at agreement WER 0."""
    torch.manual_seed(0)
    enc = load_encoder("random:whisper")
    make_decoder_listen(enc)
    with torch.no_grad():
        for layer in enc.layers:
            layer.fc2.weight.mul_(20)
            layer.self_attn.out_proj.weight.mul_(20)
    return enc


def _run(teacher, sentences, out, **options):
    torch.set_num_threads(1)
    cfg = FitConfig(**{"task": "asr", "max_mb": BUDGET_MB, "epochs_budget": 12, "calib": 2,
                       "asr_clips": 6, "score_clips": 3, "eval_clips": 3, "max_candidates": 4,
                       "onnx": False, "train": TrainConfig(epochs=1, lr=1e-3, batch_size=4,
                                                           weight_decay=0.0, patience=100),
                       **options})
    return run(copy.deepcopy(teacher), str(sentences), out, cfg, progress=False,
               log=lambda s: None, tokenizer=WordTokenizer())


@pytest.fixture(scope="module")
def fit_asr_run(teacher, sentences, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit-asr") / "run"
    return out, _run(teacher, sentences, out)


@pytest.mark.parametrize("model, words", [
    ("random:wav2vec2", "--task asr transcribes with Whisper's decoder: random:wav2vec2 is a "
                        "'wav2vec2' model, not Whisper"),
    ("random:whisper", "--task asr needs Whisper's tokenizer"),
])
def test_non_whisper_or_no_tokenizer_is_one_line_exit_2_nothing_written(sentences, tmp_path, capsys,
                                                                       model, words):
    out = tmp_path / "run"
    rc = main(["fit", model, str(sentences), "--task", "asr", "--max-mb", "1", "--out", str(out),
               "--quiet", "--threads", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not out.exists()


def test_data_without_eval_clips_is_refused(teacher, tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    write_noise_sentences(root, ["pool"] * 4)
    with pytest.raises(fit_asr.FitError, match="split=eval"):
        _run(teacher, root / "manifest.csv", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_run_writes_every_candidates_wer_and_the_winner_fits(fit_asr_run):
    out, _ = fit_asr_run
    d = json.loads((out / "fit.json").read_text())
    assert d["task"]["task"] == "asr" and d["task"]["mimic"] == "skipped"
    assert (d["task"]["recovery_clips"], d["task"]["score_clips"], d["task"]["eval_clips"]) == (6, 3, 3)
    assert not any(r["method"] == "mimic" for r in d["candidates"])
    assert any("mimic candidates are skipped" in n for n in d["notes"])
    t = d["teacher"]
    assert t["agreement_wer"] == 0.0 and t["eval_interval"][0] <= t["eval_wer"] <= t["eval_interval"][1]
    trained = [r for r in d["candidates"] if r["trained"]]
    assert len({r["name"].removesuffix("+int8") for r in trained}) == 4
    for r in trained:
        assert r["agreement_wer"] >= 0 and r["epochs"] >= 1
        lo, hi = r["eval_interval"]
        assert lo <= r["eval_wer"] <= hi and len(r["eval_examples"]) == 3
        assert abs(r["written_bytes"] / r["predicted_bytes"] - 1) < 0.01
    w = d["winner"]
    assert w["written_bytes"] <= BUDGET_MB * 1e6 and w["fits_written"]
    assert "eval_wer" in w and "agreement_wer" in w
    assert d["search"]["epochs_spent"] <= 12 and len(d["search"]["rounds"]) >= 2
    saved = load_encoder(out / "model")  # the method's own folder, with the teacher's decoder
    assert saved.family == "whisper" and saved.num_layers == 4 - len(w["deleted_layers"])
    assert (out / "pareto.png").stat().st_size > 0


def test_winner_is_the_lowest_agreement_wer_not_the_highest(fit_asr_run):
    _, res = fit_asr_run
    fitting = [r for r in res.candidates if r["trained"] and r["fits_written"]]
    wers = [r["agreement_wer"] for r in fitting]
    assert len(set(wers)) > 1, wers  # the scores differ: the pick is not a tie-break
    best = min(wers)
    assert res.winner["agreement_wer"] == best
    assert res.winner["written_bytes"] == min(r["written_bytes"] for r in fitting
                                              if r["agreement_wer"] == best)
    # the halving kept the lower agreement WER: every candidate halved after round 0 scored
    # no better than every one that went on
    r0 = {r["name"]: min(x["validation"].values()) for r in res.candidates if r["trained"]
          for x in r["rounds"] if x["round"] == 0}
    halved = [r["name"] for r in res.candidates if r.get("stopped_by") == "halved after round 0"]
    kept = [n for n in r0 if n not in halved]
    assert halved and max(r0[n] for n in kept) <= min(r0[n] for n in halved)


def test_same_seed_same_fit_json_numbers(fit_asr_run, teacher, sentences, tmp_path):
    _, first = fit_asr_run
    again = _run(teacher, sentences, tmp_path / "again")
    keys = ("name", "fits", "trained", "epochs", "stopped_by", "agreement_wer", "eval_wer",
            "eval_interval", "written_bytes", "built_agreement_wer")
    assert [{k: r.get(k) for k in keys} for r in first.candidates] == \
           [{k: r.get(k) for k in keys} for r in again.candidates]
    assert first.teacher["eval_wer"] == again.teacher["eval_wer"]
    assert first.winner["name"] == again.winner["name"] and first.deletion_order == again.deletion_order


def test_a_budget_no_candidate_meets_is_refused_before_anything_is_written(teacher, sentences, tmp_path):
    """As for the word task, but the smallest model is a pruned one: no mimic for --task asr."""
    with pytest.raises(fit_asr.FitError, match=r"--max-mb 0.05 is below the smallest model fit can "
                                               r"build from this encoder: \S+ MB \(prune-d3\+int8;"):
        _run(teacher, sentences, tmp_path / "run", max_mb=0.05)
    assert not (tmp_path / "run").exists()


def test_the_whole_stack_gets_no_recovery_epochs(teacher):
    """prune-d0 in float is the teacher: distilling it toward itself would spend epochs on a
    zero loss, so the scorer returns at once and the halving gives the epochs to the others."""
    scorer = AsrScorer(*[None] * 8)  # nothing of it is read for the whole stack
    whole = Candidate("prune")
    t = Trial(whole, [whole, Candidate("prune", int8=True)], student=copy.deepcopy(teacher))
    rec = scorer.recover(t, TrainConfig(epochs=3), progress=False)
    assert rec.epochs_run == 0 and rec.stopped_by == "nothing to recover"
