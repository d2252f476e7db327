"""Fixtures of the reliability tests: a 12-clip tone set and one reference run per command."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from relhelpers import FAST
from tonedata import make_tone_dataset

from stackslim.cli import main


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """2 words × 3 speakers × 2 clips of 0.5 s (one speaker per split), manifest.csv."""
    return make_tone_dataset(tmp_path_factory.mktemp("tiny"), words=2, speakers=3, per=2, seconds=0.5)


@pytest.fixture(scope="session")
def reference(tmp_path_factory, tiny_data):
    """reference(cmd) -> folder of one uninterrupted run of `cmd` on random:wav2vec2 (cached)."""
    done: dict[str, Path] = {}

    def get(cmd: str) -> Path:
        if cmd not in done:
            out = tmp_path_factory.mktemp(f"ref-{cmd}") / "out"
            assert main([cmd, "random:wav2vec2", str(tiny_data), "--out", str(out), *FAST[cmd]]) == 0
            done[cmd] = out
        return done[cmd]

    return get


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of a finished run's folder (to rerun a command over old results)."""
    shutil.copytree(src, dst)
    return dst
