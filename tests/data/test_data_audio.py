"""read_audio, write_wav, fit_length, trim_silence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from stackslim.data import AudioError, fit_length, read_audio, trim_silence, write_wav


def test_reads_mono_16k_without_warning(tone, make_wav):
    path = make_wav("a.wav")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wave = read_audio(path)
    assert wave.dtype == np.float32 and wave.shape == (8000,)
    assert np.allclose(wave, tone(), atol=1e-4)  # PCM_16 round trip


def test_reads_flac(make_wav):
    assert read_audio(make_wav("a.flac")).shape == (8000,)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("missing.wav", None, "no such audio file"),
        ("empty.wav", b"", "empty file"),
        ("text.wav", b"this is not audio at all, just some text\n" * 20, "not a readable audio"),
        ("junk.flac", bytes(range(256)) * 8, "not a readable audio"),
    ],
)
def test_errors_name_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=match) as err:
        read_audio(path)
    msg = str(err.value)
    assert name in msg and "\n" not in msg


def test_truncated_header(make_wav):
    path = make_wav("t.wav")
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(AudioError, match="t.wav"):
        read_audio(path)


def test_truncated_data_reads_what_is_there(make_wav):
    # libsndfile reads the samples present when the data chunk is cut short; that is usable audio.
    path = make_wav("t.wav")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert 0 < read_audio(path).shape[0] < 8000


def test_zero_samples(make_wav):
    with pytest.raises(AudioError, match="no samples"):
        read_audio(make_wav("zero.wav", np.zeros(0, dtype=np.float32)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_float_wav(tone, make_wav, bad):
    x = tone()
    x[100] = bad
    with pytest.raises(AudioError, match="NaN or infinite"):
        read_audio(make_wav("nan.wav", x, subtype="FLOAT"))


def test_folder_is_not_audio(tmp_path):
    with pytest.raises(AudioError, match="folder"):
        read_audio(tmp_path)


def test_stereo_is_averaged_with_warning(tone, make_wav):
    x = np.stack([tone(), np.zeros(8000, dtype=np.float32)], axis=1)
    path = make_wav("st.wav", x)
    with pytest.warns(UserWarning, match=r"st\.wav.*2 channels"):
        wave = read_audio(path)
    assert wave.shape == (8000,)
    assert np.allclose(wave, tone() / 2, atol=1e-4)


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_resampled_with_warning(tone, make_wav, sr):
    path = make_wav(f"r{sr}.wav", tone(0.5, sr=sr, freq=440.0), sr=sr)
    with pytest.warns(UserWarning, match=rf"r{sr}\.wav.*{sr} Hz"):
        wave = read_audio(path)
    assert wave.shape == (8000,)
    # The tone keeps its frequency: dominant FFT bin at 440 Hz (2 Hz resolution).
    spec = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spec) * 16000 / len(wave) - 440) <= 2


def test_silent_clip_warns(make_wav):
    with pytest.warns(UserWarning, match="silent"):
        wave = read_audio(make_wav("s.wav", np.zeros(1600, dtype=np.float32)))
    assert not wave.any()


def test_write_wav_atomic_and_clipped(tmp_path):
    x = np.array([0.0, 0.5, 2.0, -3.0], dtype=np.float32)
    path = write_wav(tmp_path / "sub" / "o.wav", x)
    assert [p.name for p in path.parent.iterdir()] == ["o.wav"]  # no temporary left
    y, sr = sf.read(str(path), dtype="float32")
    assert sr == 16000 and np.allclose(y, [0.0, 0.5, 1.0, -1.0], atol=1e-4)


def test_write_wav_failure_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):  # soundfile rejects the subtype
        write_wav(tmp_path / "o.wav", np.zeros(10), subtype="NOT_A_SUBTYPE")
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=200, deadline=None)
@given(
    wave=arrays(np.float32, st.integers(0, 300), elements=st.floats(-1, 1, width=32)),
    n=st.integers(0, 300),
)
def test_fit_length_properties(wave, n):
    out = fit_length(wave, n)
    assert out.shape == (n,) and out.dtype == np.float32
    t = len(wave)
    if t >= n:
        s = (t - n) // 2
        assert np.array_equal(out, wave[s : s + n])
    else:
        s = (n - t) // 2
        assert np.array_equal(out[s : s + t], wave)
        assert not out[:s].any() and not out[s + t :].any()
    assert np.array_equal(fit_length(out, n), out)  # idempotent


def test_fit_length_rejects_negative():
    with pytest.raises(ValueError):
        fit_length(np.zeros(3), -1)


def test_trim_silence_keeps_the_sound(tone):
    x = np.concatenate([np.zeros(8000), tone(0.5), np.zeros(8000)]).astype(np.float32)
    y = trim_silence(x)
    assert 8000 <= len(y) <= 8000 + 2 * 400
    assert np.abs(y).max() == np.abs(x).max()
    assert trim_silence(np.zeros(5000)).shape == (5000,)  # nothing to measure against: unchanged


def test_absurd_sample_rate_is_refused_not_resampled(tmp_path):
    """A header claiming 2**31 - 1 Hz made resampling design a 320 GiB filter (found by the fuzz test)."""
    import struct

    body = np.zeros(64, dtype=np.int16).tobytes()
    rate, block = 2**31 - 1, 2
    fmt = struct.pack("<HHIIHH", 1, 1, rate, (rate * block) % 2**32, block, 16)
    path = tmp_path / "fast.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(body)) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
                     + fmt + b"data" + struct.pack("<I", len(body)) + body)
    with pytest.raises(AudioError, match="sample rate"):
        read_audio(path)
