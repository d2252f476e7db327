"""A tiny tone data set for the mimic tests: 3 tone frequencies as "words" × 6 amplitude
"speakers" × 2 clips of 0.5 s (36 clips), written once per session with the data package."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stackslim.data import Clip, load_dataset, write_manifest, write_wav

WORDS = {"low": 300.0, "mid": 900.0, "high": 2700.0}
SPEAKERS = [0.15, 0.25, 0.35, 0.45, 0.55, 0.65]


def tone_clip(freq: float, amp: float, k: int, seconds: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(int(freq) * 10 + k)
    n = int(seconds * 16000) - 800 * k  # two lengths per word and speaker
    t = np.arange(n) / 16000
    x = amp * np.sin(2 * np.pi * freq * (1 + 0.02 * k) * t) + 0.01 * rng.standard_normal(n)
    return x.astype(np.float32)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these tiny models gain nothing from two, and lose a lot when the
    machine's cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tone_data(tmp_path_factory) -> Path:
    """Folder with manifest.csv (path, label, speaker)."""
    root = tmp_path_factory.mktemp("tones")
    clips = []
    for word, f in WORDS.items():
        for s, amp in enumerate(SPEAKERS):
            for k in range(2):
                p = write_wav(root / word / f"spk{s}_{k}.wav", tone_clip(f, amp, k))
                clips.append(Clip(path=Path(p), label=word, speaker=f"spk{s}"))
    write_manifest(root / "manifest.csv", clips)
    return root


@pytest.fixture(scope="session")
def tone_dataset(tone_data):
    return load_dataset(tone_data)
