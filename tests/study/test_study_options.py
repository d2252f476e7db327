"""Every study option is checked before the first step: a bad one exits 2 with one line, at
once, with nothing written (no model or data loaded)."""
from __future__ import annotations

import time
from dataclasses import replace

import pytest

from stackslim.cli import main
from stackslim.errors import StackslimError
from stackslim.study import StudyConfig, StudyError
from stackslim.study.config import QUICK, parse_mimic, parse_share, preset, step_names


@pytest.mark.parametrize("args, why", [
    (["--mimic-grid", "nonsense"], "--mimic-grid"),
    (["--share-grid", "K0-r5"], "--share-grid"),
    (["--share-grid", "bogus"], "--share-grid"),
    (["--mimic-grid", "linear-3-64"], "layers must be 1 or 2"),
    (["--mimic-grid", "conv-1-64"], "kind must be one of"),
    (["--mimic-grid", "linear-1-0"], "z must be >= 1"),
    (["--share-grid", "K3-r0"], "rank must be >= 1"),
    (["--stop-after", "nosuchstep"], "--stop-after"),
    (["--latency-clips", "0"], "--latency-clips"),
    (["--wer-clips", "-1"], "--wer-clips"),
    (["--max-clips", "2"], "--max-clips"),
    (["--strategies", "forward,nosuch"], "nosuch"),
    (["--mimic-epochs", "0"], "--mimic-epochs"),
    (["--max-minutes", "-1"], "--max-minutes"),
])
def test_bad_option_fails_at_once_with_one_line_and_writes_nothing(args, why, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default --out is runs/study, relative to here
    t0 = time.monotonic()
    rc = main(["study", *args])  # the default model and data: neither is loaded
    seconds = time.monotonic() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and why in err[0], err
    assert seconds < 5, seconds
    assert list(tmp_path.iterdir()) == []


def test_grids_parse():
    assert parse_mimic("linear-1-512") == ("linear", 1, 512)
    assert parse_mimic("transformer-2-64") == ("transformer", 2, 64)
    assert parse_share("K3-r16") == ("adjacent", 3, 16, 0.0)
    assert parse_share("blocks-r16") == ("blocks", 0, 16, 0.0)
    for bad in ("", "linear", "linear-1", "linear-1-512-x", "linear-a-512"):
        with pytest.raises(StudyError):
            parse_mimic(bad)
    for bad in ("", "K3", "K3-16", "Kx-r16", "blocks-16", "K-1-r16", "G3-r16"):
        with pytest.raises(StudyError):
            parse_share(bad)
    assert issubclass(StudyError, StackslimError)


def test_default_strategies_include_ours_strongest_and_quick_keeps_beam():
    s = StudyConfig().strategies
    for name in ("forward", "backward", "bi", "knn-bi", "iterative", "greedy", "blocks",
                 "greedy-refit", "beam", "beam-refit"):
        assert name in s
    assert "beam" in preset(StudyConfig(quick=True)).strategies


def test_quick_preset_keeps_what_the_user_set_and_stop_after_follows_it():
    q = preset(StudyConfig(quick=True, mimic_epochs=4))
    assert q.mimic_epochs == 4 and q.max_clips == QUICK["max_clips"]
    assert preset(q) == q
    # a step of the quick grid is a valid --stop-after with --quick
    StudyConfig(quick=True, stop_after=f"mimic-{QUICK['mimic_grid'][0]}")
    assert "wer" in step_names(StudyConfig(), whisper=True)
    assert "wer" not in step_names(StudyConfig(), whisper=False)
    with pytest.raises(StudyError):
        replace(StudyConfig(), share_grid=("K2-r8", "K2-r8"))
