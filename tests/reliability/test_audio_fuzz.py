"""Fuzzing the audio reader: any bytes give a clean AudioError or a float32 mono array."""
from __future__ import annotations

import struct
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackslim.data import AudioError, read_audio


def _check(path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # conversions warn; that is allowed here
        try:
            wave = read_audio(path)
        except AudioError as e:
            assert "\n" not in str(e) and path.name in str(e)
            return
    assert isinstance(wave, np.ndarray) and wave.dtype == np.float32 and wave.ndim == 1
    assert wave.size > 0 and np.isfinite(wave).all()


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(data=st.binary(max_size=2048), ext=st.sampled_from([".wav", ".flac", ".ogg", ".mp3"]))
def test_random_bytes(data, ext, tmp_path):
    path = tmp_path / f"f{ext}"
    path.write_bytes(data)
    _check(path)


def _wav_header(fmt: int, channels: int, rate: int, bits: int, data_len: int) -> bytes:
    block = channels * max(bits // 8, 1)
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, (rate * block) % 2**32, block, bits)
    return (b"RIFF" + struct.pack("<I", 36 + data_len) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
            + fmt_chunk + b"data" + struct.pack("<I", data_len))


@SETTINGS
@given(fmt=st.sampled_from([1, 3, 6, 7, 0, 0xFFFE, 2]), channels=st.integers(0, 9),
       rate=st.sampled_from([0, 1, 8000, 16000, 44100, 48000, 2**31 - 1]),
       bits=st.sampled_from([0, 8, 16, 24, 32, 64, 13]), declared=st.integers(0, 2**32 - 1 - 36),  # the RIFF size field holds 36 + declared
       body=st.binary(max_size=1024))
def test_valid_looking_wav_headers(fmt, channels, rate, bits, declared, body, tmp_path):
    path = tmp_path / "h.wav"
    path.write_bytes(_wav_header(fmt, channels, rate, bits, declared) + body)
    _check(path)


@SETTINGS
@given(samples=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=0, max_size=64),
       channels=st.integers(1, 3), rate=st.sampled_from([8000, 16000, 22050, 48000]))
def test_float_wav_with_any_samples(samples, channels, rate, tmp_path):
    import soundfile as sf

    x = np.array(samples, dtype=np.float32)
    x = x[: len(x) // channels * channels].reshape(-1, channels)
    path = tmp_path / "s.wav"
    sf.write(str(path), x, rate, subtype="FLOAT")
    _check(path)
