"""Synthetic data sets (espeak-ng, flite and sox run for real; tiny builds)."""

from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from stackslim.data import COMMAND_VOICES, COMMAND_WORDS, DataError, load_dataset, synth
from stackslim.data import datasets as datasets_mod
from stackslim.data.sentences import EVAL_SENTENCES, pool_sentences

needs_tts = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("espeak-ng", "flite", "sox")),
    reason="espeak-ng, flite and sox are needed (apt-get install them, or run scripts/setup.sh)",
)


def test_vocabulary_and_voices():
    assert len(COMMAND_WORDS) == len(set(COMMAND_WORDS)) == 35
    ids = [v.id for v in COMMAND_VOICES]
    assert len(set(ids)) == len(ids) >= 24
    assert {v.engine for v in COMMAND_VOICES} == {"espeak", "flite"}
    assert all("_" not in i for i in ids)  # file names are <speaker>_<style>_<k>.wav
    assert synth.DEFAULT_COMMAND_CLIPS >= 5000


def test_sentence_texts():
    assert len(EVAL_SENTENCES) >= 100 and len(set(EVAL_SENTENCES)) == len(EVAL_SENTENCES)
    for s in EVAL_SENTENCES + pool_sentences(300):
        assert 5 <= len(s.split()) <= 12, s
        assert all(ch.isalpha() or ch in " '" for ch in s), s
    assert not set(pool_sentences(1000)) & set(EVAL_SENTENCES)
    assert pool_sentences(50, seed=1) == pool_sentences(50, seed=1) != pool_sentences(50, seed=2)


def test_command_jobs_balanced_and_deterministic():
    jobs = synth.command_jobs(200, seed=0)
    counts = collections.Counter(j.text for j in jobs)
    assert len(counts) == 35 and max(counts.values()) - min(counts.values()) <= 1
    assert len({j.voice.id for j in jobs}) >= 24
    assert len({j.rel_path for j in jobs}) == 200
    assert jobs == synth.command_jobs(200, seed=0) and jobs != synth.command_jobs(200, seed=1)
    full = synth.command_jobs(synth.DEFAULT_COMMAND_CLIPS)
    assert len({(j.text, j.voice.id, j.style) for j in full}) == 35 * len(COMMAND_VOICES) * 3


def test_unknown_name_and_non_empty_folder(tmp_path):
    with pytest.raises(DataError, match="unknown synthetic"):
        synth.build("synth-nothing", tmp_path / "x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "f.txt").write_text("x")
    with pytest.raises(DataError, match="holds no manifest.csv"):
        synth.build("synth-commands", tmp_path / "busy", n_clips=5)


@needs_tts
def test_tiny_commands_build(tmp_path, capsys):
    out = synth.build("synth-commands", tmp_path / "cmd", n_clips=60, seed=0, workers=2)
    assert "60 clips" in capsys.readouterr().out
    ds = load_dataset(out)
    assert len(ds) == 60 and len(ds.labels) == 35
    assert len({c.speaker for c in ds.clips}) >= 20
    assert {c.extra["style"] for c in ds.clips} == {"neutral", "excited", "sad"}
    for i, c in enumerate(ds.clips):
        assert c.path.parent.name == c.label and c.path.name.startswith(c.speaker + "_")
        wave = ds.load(i)
        assert wave.shape == (16000,) and wave.dtype == np.float32
        assert 0.85 <= np.abs(wave).max() <= 0.95  # peak-normalised
        assert np.count_nonzero(np.abs(wave) > 0.01) > 800  # > 50 ms of non-silent speech
    info = json.loads((out / "build.json").read_text())
    assert info["n_clips"] == 60 and info["speech_seconds"]["min"] > 0.05
    assert not list(tmp_path.glob("*.partial-*"))
    # Deterministic: a second build with the same seed gives the same audio.
    again = synth.build("synth-commands", tmp_path / "cmd2", n_clips=60, seed=0, workers=3)
    assert (out / "manifest.csv").read_text() == (again / "manifest.csv").read_text()
    for rel in ["yes/", "no/", "happy/"]:
        first = sorted((out / rel).iterdir())[0]
        assert first.read_bytes() == (again / rel / first.name).read_bytes()


@needs_tts
def test_complete_build_is_skipped(tmp_path, monkeypatch):
    out = synth.build("synth-commands", tmp_path / "cmd", n_clips=4)

    def boom(*args, **kwargs):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(synth, "_run_jobs", boom)
    assert synth.build("synth-commands", out, n_clips=4) == out


def test_failed_build_leaves_no_finished_folder(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise DataError("tts broke")

    monkeypatch.setattr(synth, "synthesize", fail)
    monkeypatch.setattr(synth, "check_tools", lambda engines: None)
    with pytest.raises(DataError, match="tts broke"):
        synth.build("synth-commands", tmp_path / "cmd", n_clips=8)
    assert list(tmp_path.iterdir()) == []  # neither <out> nor a partial folder


def test_stale_partial_is_removed(tmp_path, monkeypatch):
    stale = tmp_path / "cmd.partial-999999999"
    stale.mkdir()
    monkeypatch.setattr(synth, "check_tools", lambda engines: None)
    monkeypatch.setattr(synth, "_run_jobs", lambda *a, **k: (_ for _ in ()).throw(DataError("x")))
    with pytest.raises(DataError):
        synth.build("synth-commands", tmp_path / "cmd", n_clips=2)
    assert not stale.exists()


@needs_tts
def test_tiny_sentences_build(tmp_path):
    out = synth.build("synth-sentences", tmp_path / "sent", n_clips=4, n_eval=2, workers=2)
    ds = load_dataset(out)
    splits = collections.Counter(c.extra["split"] for c in ds.clips)
    assert splits == {"eval": 6, "pool": 4}
    evals = [c for c in ds.clips if c.extra["split"] == "eval"]
    assert {c.speaker for c in evals} == {"fl-rms", "fl-slt", "fl-awb"}
    assert {c.label for c in evals} == set(EVAL_SENTENCES[:2])
    for i in range(len(ds)):
        assert len(ds.load(i)) > 16000  # a sentence lasts more than a second


def test_sentence_pool_never_has_an_eval_voice():
    """No pool clip is spoken by an eval voice's synthesiser model, at any pitch or warp (the
    pool once had flite rms, slt and awb themselves and their F0 variants), and the pool still
    cycles through every other command voice."""
    jobs = synth.sentence_jobs(n_pool=200, n_eval=2)
    evals = [j for j in jobs if j.row[3] == "eval"]
    pool = [j for j in jobs if j.row[3] == "pool"]
    assert len(evals) == 6 and len(pool) == 200
    held = {(j.voice.engine, j.voice.name) for j in evals}
    assert held == {("flite", "rms"), ("flite", "slt"), ("flite", "awb")}
    assert not {(j.voice.engine, j.voice.name) for j in pool} & held
    others = {v.id for v in COMMAND_VOICES if (v.engine, v.name) not in held}
    assert {j.voice.id for j in pool} == others and len(others) >= 20


def test_sentences_cache_folder_is_new_for_the_new_pool(tmp_path, monkeypatch):
    """A cache built by the old recipe (eval voices in the pool) is never read: load_dataset
    builds synth-sentences into its own versioned folder, beside the old one."""
    old = tmp_path / "cache" / "data" / "synth-sentences"
    old.mkdir(parents=True)
    (old / "manifest.csv").write_text("path,label,speaker,split\n")
    built = []

    def fake_build(name, out):
        built.append(out)
        raise RuntimeError("stop here")

    monkeypatch.setattr(datasets_mod, "build_synth", fake_build)
    monkeypatch.setenv("STACKSLIM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="stop here"):
        load_dataset("synth-sentences")
    assert built == [tmp_path / "cache" / "data" / "synth-sentences-v2"]


@needs_tts
def test_load_dataset_builds_synth_into_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "DEFAULT_COMMAND_CLIPS", 6)
    monkeypatch.setenv("STACKSLIM_CACHE", str(tmp_path / "cache"))
    ds = load_dataset("synth-commands")
    assert len(ds) == 6 and ds.name == "synth-commands"
    assert (tmp_path / "cache" / "data" / "synth-commands" / "manifest.csv").is_file()
    assert len(load_dataset("synth-commands", cache_dir=tmp_path / "other")) == 6


def test_too_many_pool_sentences(tmp_path):
    with pytest.raises(DataError, match="at most"):
        synth.build("synth-sentences", tmp_path / "s", n_clips=10**6)
    assert not (tmp_path / "s").exists()


@needs_tts
def test_synth_main(tmp_path, capsys):
    assert synth.synth_main("synth-commands", tmp_path / "c", n_clips=3) == 0
    assert "3 clips" in capsys.readouterr().out
    assert synth.synth_main("synth-commands", tmp_path / "c", n_clips=3) == 0
    assert "already built" in capsys.readouterr().out


@needs_tts
def test_data_synth_through_the_cli(tmp_path, capsys):
    from stackslim.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["data", "synth", "synth-commands", str(a), "--n-clips", "4", "--seed", "1"]) == 0
    ds = load_dataset(a)
    assert len(ds) == 4 and {c.label for c in ds.clips} == set(synth.COMMAND_WORDS[:4])
    assert json.loads((a / "build.json").read_text())["seed"] == 1
    # the same seed gives the same files; a rerun keeps the finished build
    assert main(["data", "synth", "synth-commands", str(b), "--n-clips", "4", "--seed", "1"]) == 0
    for c in ds.clips:
        rel = Path(c.path).relative_to(a)
        assert (b / rel).read_bytes() == (a / rel).read_bytes(), rel
    stamp = (a / "manifest.csv").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["data", "synth", "synth-commands", str(a), "--n-clips", "9"]) == 0
    assert "already built" in capsys.readouterr().out
    assert (a / "manifest.csv").stat().st_mtime_ns == stamp and len(load_dataset(a)) == 4
    # a folder that holds something else: one line, exit 2, nothing written
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("mine")
    assert main(["data", "synth", "synth-commands", str(tmp_path / "busy"), "--n-clips", "2"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("stackslim")]
    assert len(err) == 1 and "holds no manifest.csv" in err[0]
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["x.txt"]
