"""Fixtures for the share tests: a tiny tone data set written on the fly, short clips."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stackslim.data import Clip, write_manifest, write_wav


@pytest.fixture
def clips():
    """Two short noise clips of different lengths (16 kHz)."""
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (8000, 5600)]


@pytest.fixture(scope="session")
def tone_data(tmp_path_factory) -> Path:
    """3 labels (tone pitches) x 4 speakers x 2 takes of 0.25 s, as a CSV manifest."""
    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    t = np.arange(int(0.25 * 16000)) / 16000
    clips = []
    for li, label in enumerate(["low", "mid", "high"]):
        for s in range(4):
            for k in range(2):
                f = 300 * (li + 1) + 15 * s + 5 * k
                x = 0.5 * np.sin(2 * np.pi * f * t) + 0.02 * rng.standard_normal(t.size)
                path = write_wav(root / label / f"spk{s}_{k}.wav", x.astype(np.float32))
                clips.append(Clip(path=path, label=label, speaker=f"spk{s}"))
    write_manifest(root / "manifest.csv", clips)
    return root
