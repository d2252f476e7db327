"""`stackslim analyze` end to end on a tiny random model: files, resume, errors, torchrun."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stackslim.cli import main
from stackslim.similarity import AnalyzeConfig, run


def test_analyze_writes_every_file(tone_data, tmp_path, capsys):
    out = tmp_path / "an"
    rc = main(["analyze", "random:wav2vec2", str(tone_data), "--out", str(out), "--max-clips", "24"])
    assert rc == 0
    for f in ("similarity.json", "blocks.json", "config.json", "heatmap_cka.png",
              "heatmap_cosine.png", "heatmap_mknn.png"):
        assert (out / f).stat().st_size > 0, f
    sim = json.loads((out / "similarity.json").read_text())
    assert sim["clips"] == 24 and sim["num_layers"] == 4
    for m in ("cosine", "cka", "mknn"):
        M = np.array(sim["similarity"]["matrices"][m])
        assert M.shape == (5, 5)
        np.testing.assert_allclose(M, M.T, atol=1e-9)
        np.testing.assert_allclose(np.diag(M), 1.0)
    assert len(sim["block_influence"]["cosine"]) == 4
    blocks = json.loads((out / "blocks.json").read_text())
    assert sum(len(b) for b in blocks["blocks"]["cka"]["blocks"]) == 4
    assert not list(out.glob(".analyze.ckpt*"))  # finished runs leave no checkpoint
    assert "blocks" in capsys.readouterr().out


def test_resume_from_checkpoint_gives_same_result(tone_data, tmp_path, monkeypatch):
    cfg = AnalyzeConfig(max_clips=24, encode_batch=4, checkpoint_every=2, metrics=("cka", "cosine"),
                        robustness=False)
    full = run("random:hubert", str(tone_data), tmp_path / "a", cfg, progress=False)
    # interrupt a second run after 3 batches: the checkpoint holds 2 batches
    from stackslim.similarity import pipeline as mod

    calls = {"n": 0}
    real = mod.SimilarityEngine.update

    def flaky(self, hs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, hs)

    monkeypatch.setattr(mod.SimilarityEngine, "update", flaky)
    with pytest.raises(KeyboardInterrupt):
        run("random:hubert", str(tone_data), tmp_path / "b", cfg, progress=False)
    assert (tmp_path / "b" / ".analyze.ckpt").exists()
    assert not (tmp_path / "b" / "similarity.json").exists()  # nothing half-written
    monkeypatch.setattr(mod.SimilarityEngine, "update", real)
    seen = {"n": 0}

    def counting(self, hs):
        seen["n"] += 1
        return real(self, hs)

    monkeypatch.setattr(mod.SimilarityEngine, "update", counting)
    resumed = run("random:hubert", str(tone_data), tmp_path / "b", cfg, progress=False)
    assert seen["n"] == 6 - 2  # the two checkpointed batches were not redone
    for m in ("cka", "cosine"):
        np.testing.assert_allclose(resumed.similarity.matrices[m], full.similarity.matrices[m],
                                   atol=1e-9)


def test_loaded_model_and_explicit_clips_equal_the_spec_run(tone_data, tmp_path):
    """The study's call (its teacher object, its data set object, its own clips) computes what
    the command computes from specs on the same clips."""
    from stackslim.data import load_dataset
    from stackslim.models import load_encoder
    from stackslim.similarity import select_clips

    cfg = AnalyzeConfig(max_clips=12, metrics=("cka", "cosine"), robustness=False)
    ds = load_dataset(str(tone_data))
    by_spec = run("random:hubert", str(tone_data), tmp_path / "a", cfg, progress=False)
    clips = select_clips(ds, cfg)
    by_object = run(load_encoder("random:hubert"), ds, tmp_path / "b", AnalyzeConfig(
        metrics=("cka", "cosine"), robustness=False), progress=False, clips=reversed(clips))
    assert by_object.clips == len(clips) == 12
    for m in ("cka", "cosine"):
        np.testing.assert_allclose(by_object.similarity.matrices[m], by_spec.similarity.matrices[m],
                                   atol=1e-9)


@pytest.mark.parametrize("args, msg", [
    (["random:nope", "{data}"], "unknown random family"),
    (["random:wavlm", "/no/such/data"], "no such data set"),
    (["random:wavlm", "{data}", "--metrics", "cka,foo"], "unknown metric"),
    (["random:wavlm", "{data}", "--metrics", "mknn", "--estimator", "unbiased"], "mknn does not support"),
])
def test_bad_arguments_one_line_error(tone_data, tmp_path, capsys, args, msg):
    args = [a.format(data=tone_data) for a in args]
    rc = main(["analyze", *args, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and msg in err and len(err.splitlines()) == 1


def test_out_is_a_file(tone_data, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["analyze", "random:wavlm", str(tone_data), "--out", str(tmp_path / "f")]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tone_data, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside this Python")
    common = ["random:wavlm", str(tone_data), "--max-clips", "30", "--encode-batch", "4"]
    assert main(["analyze", *common, "--out", str(tmp_path / "one")]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "stackslim",
                           "analyze", *common, "--out", str(tmp_path / "two")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one = json.loads((tmp_path / "one" / "similarity.json").read_text())
    two = json.loads((tmp_path / "two" / "similarity.json").read_text())
    assert two["processes"] == 2 and one["processes"] == 1
    for m in ("cosine", "cka", "mknn"):
        np.testing.assert_allclose(two["similarity"]["matrices"][m], one["similarity"]["matrices"][m],
                                   atol=1e-6)


@pytest.mark.parametrize("kw, msg", [
    (dict(metrics=()), "at least one metric"),
    (dict(metrics=("cka", "foo")), "unknown metric"),
    (dict(metrics=("mknn",), estimator="unbiased"), "mknn does not support"),
    (dict(max_clips=-1), "max-clips"),
    (dict(encode_batch=0), "encode-batch"),
    (dict(k=0), "k must be"),
    (dict(estimator="minibatch", minibatch=3), "minibatch 3 is too small"),
    (dict(cka_space="feature", view="flat"), "cka_space='feature'"),
    (dict(split="dev"), "unknown split"),
    (dict(device="tpu"), "not a device"),
])
def test_bad_options_fail_when_the_config_is_built(kw, msg):
    from stackslim.errors import StackslimError
    from stackslim.similarity import SimilarityError

    with pytest.raises(SimilarityError, match=msg):
        AnalyzeConfig(**kw)
    assert issubclass(SimilarityError, StackslimError)


def test_unreadable_checkpoint_is_discarded_with_a_warning(tone_data, tmp_path):
    cfg = AnalyzeConfig(max_clips=12, metrics=("cosine",), robustness=False)
    full = run("random:hubert", str(tone_data), tmp_path / "a", cfg, progress=False)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / ".analyze.ckpt").write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match=r"\.analyze\.ckpt"):
        again = run("random:hubert", str(tone_data), tmp_path / "b", cfg, progress=False)
    np.testing.assert_allclose(again.similarity.matrices["cosine"], full.similarity.matrices["cosine"],
                               atol=1e-9)
    assert not (tmp_path / "b" / ".analyze.ckpt").exists()
