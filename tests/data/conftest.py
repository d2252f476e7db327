"""Fixtures for the data tests: small audio files written on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def make_tone(
    seconds: float = 0.5, sr: int = 16000, freq: float = 440.0, channels: int = 1
) -> np.ndarray:
    """A sine tone, shape (T,) or (T, channels)."""
    t = np.arange(int(seconds * sr)) / sr
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return x if channels == 1 else np.stack([x] * channels, axis=1)


@pytest.fixture
def tone():
    """The sine-tone helper (a fixture, so tests need not import this conftest)."""
    return make_tone


@pytest.fixture
def make_wav(tmp_path: Path):
    """make_wav(name, data=None, sr=16000, subtype=None) -> path of a new audio file."""

    def _make(
        name: str, data: np.ndarray | None = None, sr: int = 16000, subtype: str | None = None
    ) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), make_tone(sr=sr) if data is None else data, sr, subtype=subtype)
        return path

    return _make


@pytest.fixture
def label_folder(make_wav, tmp_path: Path) -> Path:
    """A folder per label: 3 labels × 4 speakers (Speech Commands file names), plus noise."""
    for li, label in enumerate(["yes", "no", "up"]):
        for s in range(4):
            x = make_tone(0.3, freq=200 + 100 * li + 10 * s)
            make_wav(f"words/{label}/spk{s}_nohash_0.wav", x)
    make_wav("words/_background_noise_/noise.wav", make_tone(1.0))
    (tmp_path / "words" / "README.txt").write_text("not audio")
    return tmp_path / "words"
