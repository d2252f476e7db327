"""Audio input/output: every clip enters stackslim as float32 mono at 16 kHz.

All speech encoders that stackslim handles (wav2vec 2.0, HuBERT, WavLM, data2vec-audio, Whisper)
expect 16 kHz mono input, so conversion happens once, here, with a warning so that a user notices
when their data is not what they thought.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from functools import lru_cache
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import firwin, resample_poly
from ..errors import AudioError

SAMPLE_RATE = 16000

# Extensions that the folder loader treats as audio (libsndfile reads all of them).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")



def resample(wave: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a 1-D signal with a polyphase filter.

    Args:
        wave: 1-D signal.
        sr_in: its sample rate in Hz.
        sr_out: the wanted sample rate in Hz.

    Returns:
        float32 1-D signal at ``sr_out``.
    """
    if sr_in == sr_out:
        return np.asarray(wave, dtype=np.float32)
    g = gcd(int(sr_in), int(sr_out))
    up, down = sr_out // g, sr_in // g
    # The anti-aliasing FIR filter that resample_poly would design, built once per ratio
    # (designing it costs more than filtering a short clip).
    out = resample_poly(np.asarray(wave, dtype=np.float64), up, down, window=_lowpass(up, down))
    return out.astype(np.float32)


MIN_RATE, MAX_RATE = 1_000, 384_000  # sample rates read_audio converts; others are refused


class Wave(np.ndarray):
    """A clip's samples (float32, 1-D) that remember the file they came from.

    `AudioDataset.load` returns these, so that an encoder refusing a clip (too short, too long,
    non-finite states) names the file, not a position in the batch: ``clip_name(w)``. Only the
    loaded array itself carries the path; anything computed from it (a slice, a sum, a copy)
    is a plain array without one, so a derived signal is never named after a file.
    """

    path: Path | None = None

    def __array_finalize__(self, obj) -> None:  # views and results: no path
        self.path = None

    @classmethod
    def of(cls, samples: np.ndarray, path: str | os.PathLike) -> "Wave":
        w = np.asarray(samples).view(cls)
        w.path = Path(path)
        return w


def clip_name(wave, i: int | None = None) -> str:
    """How messages name a clip: its file when it has one, else its position in the batch."""
    path = getattr(wave, "path", None)
    if path is not None:
        return str(path)
    return "clip" if i is None else f"clip {i} of the batch"


@lru_cache(maxsize=32)
def _lowpass(up: int, down: int) -> np.ndarray:
    """scipy's default resample_poly filter: Kaiser(5.0) low-pass at 1/max(up, down)."""
    m = max(up, down)
    h = firwin(2 * 10 * m + 1, 1.0 / m, window=("kaiser", 5.0))
    h.setflags(write=False)  # shared between calls; resample_poly copies it
    return h


def read_audio(path: str | os.PathLike) -> np.ndarray:
    """Read an audio file as float32 mono at 16 kHz.

    Stereo (or more channels) is averaged to mono and other sample rates are resampled, each with a
    warning naming the file. A silent clip is returned as it is, with a warning.

    Args:
        path: a wav/flac (or any format libsndfile reads) file.

    Returns:
        float32 array of shape (T,), sample rate 16 kHz.

    Raises:
        AudioError: the file is missing, empty, not audio or corrupt, has no samples, or holds
            NaN/inf samples.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such audio file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except (sf.SoundFileError, RuntimeError, TypeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AudioError(f"{path}: not a readable audio file ({reason})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: audio file contains no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    if data.shape[1] > 1:
        warnings.warn(f"{path}: {data.shape[1]} channels averaged to mono", stacklevel=2)
    wave = data.mean(axis=1, dtype=np.float32)  # (T,)
    if not MIN_RATE <= sr <= MAX_RATE:  # a broken header: resampling would design a huge filter
        raise AudioError(f"{path}: sample rate {sr} Hz is outside {MIN_RATE}..{MAX_RATE} Hz")
    if sr != SAMPLE_RATE:
        warnings.warn(f"{path}: resampled from {sr} Hz to {SAMPLE_RATE} Hz", stacklevel=2)
        wave = resample(wave, sr, SAMPLE_RATE)
    if not np.isfinite(wave).all():  # samples near the float32 limit overflow when converted
        raise AudioError(f"{path}: audio samples too large to convert to 16 kHz mono float32 "
                         f"(largest magnitude {float(np.abs(data).max()):.3g})")
    if not np.any(wave):
        warnings.warn(f"{path}: clip is silent (all samples are zero)", stacklevel=2)
    return wave


def write_wav(
    path: str | os.PathLike, wave: np.ndarray, sr: int = SAMPLE_RATE, subtype: str = "PCM_16"
) -> Path:
    """Write a mono wav file atomically (temporary name in the same folder, then rename).

    A reader never sees a half-written file, and a killed writer leaves only a ``.tmp`` file.

    Args:
        path: destination; parent folders are created.
        wave: 1-D signal in [-1, 1]; values outside are clipped (libsndfile would wrap them).
        sr: sample rate in Hz.
        subtype: libsndfile subtype, e.g. ``"PCM_16"`` or ``"FLOAT"``.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if subtype.startswith("PCM"):
        wave = np.clip(wave, -1.0, 1.0)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        sf.write(tmp, wave, sr, subtype=subtype, format="WAV")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; a clip is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Centre-crop or zero-pad a 1-D signal to exactly ``n`` samples.

    Longer input keeps ``wave[s:s+n]`` with ``s = (len - n) // 2``; shorter input is placed at
    offset ``(n - len) // 2`` with zeros on both sides.

    Args:
        wave: 1-D signal.
        n: wanted length (≥ 0).

    Returns:
        A new float32 array of shape (n,).
    """
    if n < 0:
        raise ValueError(f"fit_length: n must be >= 0, got {n}")
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    t = wave.shape[0]
    if t >= n:
        s = (t - n) // 2
        return wave[s : s + n].copy()
    out = np.zeros(n, dtype=np.float32)
    s = (n - t) // 2
    out[s : s + t] = wave
    return out


def trim_silence(
    wave: np.ndarray, top_db: float = 40.0, frame: int = 400, hop: int = 160
) -> np.ndarray:
    """Cut leading and trailing silence by frame energy.

    A frame is speech when its RMS is within ``top_db`` dB of the loudest frame; the result runs
    from the first to the end of the last such frame. Defaults are 25 ms frames, 10 ms hop at
    16 kHz. An all-zero signal is returned unchanged (there is no reference level to trim to).

    Args:
        wave: 1-D signal.
        top_db: threshold below the loudest frame, in dB.
        frame: frame length in samples.
        hop: hop length in samples.

    Returns:
        float32 view of the kept part.
    """
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if wave.shape[0] <= frame:
        return wave
    n_frames = 1 + (wave.shape[0] - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n_frames)[:, None]  # (F, frame)
    rms = np.sqrt(np.mean(wave[idx].astype(np.float64) ** 2, axis=1))  # (F,)
    peak = rms.max()
    if peak <= 0:
        return wave
    loud = np.flatnonzero(rms >= peak * 10.0 ** (-top_db / 20.0))
    start = loud[0] * hop
    end = min(wave.shape[0], loud[-1] * hop + frame)
    return wave[start:end]


def peak_normalize(wave: np.ndarray, peak: float = 0.9) -> np.ndarray:
    """Scale a signal so that its largest absolute sample is ``peak`` (silence stays silent)."""
    wave = np.asarray(wave, dtype=np.float32)
    m = float(np.abs(wave).max()) if wave.size else 0.0
    return wave if m == 0.0 else (wave * (peak / m)).astype(np.float32)
