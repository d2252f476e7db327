"""A tiny learnable data set written on the fly: tones, 3 words × 6 speakers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stackslim.data import Clip, load_dataset, write_manifest, write_wav

WORDS = {"low": 300.0, "mid": 700.0, "high": 1500.0}


def make_tones(root: Path, per_cell: int = 3, seconds: float = 0.3, speakers: int = 6) -> Path:
    """root/manifest.csv: word = tone frequency, speaker = a detuning and a harmonic mix."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    clips = []
    for word, f in WORDS.items():
        for s in range(speakers):
            for r in range(per_cell):
                f0 = f * (1 + 0.03 * s) * (1 + 0.01 * rng.standard_normal())
                x = np.sin(2 * np.pi * f0 * t) + (0.15 * s) * np.sin(4 * np.pi * f0 * t)
                x = (0.3 * x + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
                path = root / f"{word}_s{s}_{r}.wav"
                write_wav(path, x)
                clips.append(Clip(path=path, label=word, speaker=f"s{s}"))
    write_manifest(root / "manifest.csv", clips)
    return root


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is several times faster
    than two under load (no synchronisation between threads for microsecond ops)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tones_dir(tmp_path_factory) -> Path:
    return make_tones(tmp_path_factory.mktemp("tones"))


@pytest.fixture(scope="session")
def tones(tones_dir):
    return load_dataset(tones_dir)
