"""A tiny learnable data set (tones: 3 words × 4 speakers) and one intra-op thread."""
from __future__ import annotations

import numpy as np
import pytest

from stackslim.data import Clip, load_dataset, write_manifest, write_wav


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tones(tmp_path_factory):
    root = tmp_path_factory.mktemp("head_tones")
    rng = np.random.default_rng(1)
    t = np.arange(4800) / 16000  # 0.3 s
    clips = []
    for word, f in {"low": 300.0, "mid": 700.0, "high": 1500.0}.items():
        for s in range(4):
            for r in range(3):
                x = np.sin(2 * np.pi * f * (1 + 0.03 * s) * t) + 0.02 * rng.standard_normal(t.size)
                path = root / f"{word}_s{s}_{r}.wav"
                write_wav(path, (0.3 * x).astype(np.float32))
                clips.append(Clip(path=path, label=word, speaker=f"s{s}"))
    write_manifest(root / "manifest.csv", clips)
    return load_dataset(root)
