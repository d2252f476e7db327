"""Text-to-speech voices for the synthetic data sets: espeak-ng, flite and (for pitch) sox.

Each engine runs as a subprocess writing a wav file; :func:`synthesize` returns float32 mono
16 kHz audio with the silence trimmed. Speakers come from engine voices, their pitch settings and
a resampling "warp"; styles from SSML prosody (espeak-ng) or F0/duration settings (flite).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf

from .audio import SAMPLE_RATE, resample, trim_silence
from ..errors import DataError


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker.

    Attributes:
        id: speaker id used in file names and manifests (letters, digits and ``-`` only).
        engine: ``"espeak"`` or ``"flite"``.
        name: espeak-ng voice (``en-us+m3``) or flite voice (``slt``).
        pitch: espeak-ng base pitch ``-p`` (0–99), or flite mean F0 in Hz (0: the voice's own).
        warp: resampling factor after synthesis; > 1 raises pitch and formants together (a
            shorter vocal tract) and speeds up. Used for flite ``rms``, which ignores F0 settings.
    """

    id: str
    engine: str
    name: str
    pitch: float = 0.0
    warp: float = 1.0


@dataclass(frozen=True)
class Style:
    """A prosodic style: multipliers of pitch and speaking rate, and the espeak pitch range."""

    pitch: float
    rate: float
    range: str | None


STYLES = {
    "neutral": Style(1.0, 1.0, None),
    "excited": Style(1.4, 1.3, "x-high"),
    "sad": Style(0.7, 0.7, "x-low"),
}

# fmt: off
_ESPEAK = [  # (variant, base pitch): neutral F0 medians measured 75–205 Hz
    ("en-us+m1", 40), ("en-us+m2", 50), ("en-us+m3", 35), ("en-us+m4", 55), ("en-us+m5", 45),
    ("en-us+m6", 30), ("en-us+m7", 60), ("en-us+m8", 40), ("en-us+f1", 50), ("en-us+f2", 60),
    ("en-us+f3", 45), ("en-us+f4", 65), ("en-us+f5", 55), ("en-us+klatt", 40),
    ("en-us+klatt3", 70), ("en-gb+m3", 50), ("en-gb-x-rp+f3", 55), ("en-gb-scotland+m2", 45),
]
_FLITE = [  # (voice, mean F0 Hz or 0, warp)
    ("slt", 140, 1.0), ("slt", 175, 1.0), ("slt", 215, 1.0),
    ("awb", 85, 1.0), ("awb", 115, 1.0), ("awb", 150, 1.0),
    ("kal16", 90, 1.0), ("kal16", 115, 1.0), ("kal16", 140, 1.0),
    ("rms", 0, 1.0), ("rms", 0, 1.15), ("rms", 0, 0.9),
]
# fmt: on
COMMAND_VOICES: tuple[Voice, ...] = tuple(
    [Voice(f"es-{v.replace('en-', '').replace('+', '-')}-p{p}", "espeak", v, p) for v, p in _ESPEAK]
    + [
        Voice(f"fl-{v}-" + (f"f{f}" if f else f"w{round(w * 100)}"), "flite", v, f, w)
        for v, f, w in _FLITE
    ]
)
# The voices Whisper tiny.en transcribes best (shared/RESOURCES.md), at their own settings.
CLEAR_VOICES: tuple[Voice, ...] = tuple(Voice(f"fl-{v}", "flite", v) for v in ("rms", "slt", "awb"))
_FLITE_FIXED_F0 = ("rms",)  # flite ignores int_f0_target_mean / f0_shift here: sox shifts pitch
_ESPEAK_WPM = 165  # espeak-ng's own default (175) is hurried for isolated words


def check_tools(engines: Iterable[str] = ("espeak", "flite", "sox")) -> None:
    """Raise DataError naming the missing program (``espeak``, ``flite`` or ``sox``), if any."""
    for engine in engines:
        exe = "espeak-ng" if engine == "espeak" else engine
        if shutil.which(exe) is None:
            raise DataError(
                f"{exe} not found: install it (apt-get install {exe}) or run scripts/setup.sh"
            )


def needs_sox(voice: Voice, style: str = "neutral", pitch: float = 1.0) -> bool:
    """Whether the pitch change for this voice is done by sox (flite ignores it)."""
    return (
        voice.name in _FLITE_FIXED_F0
        and voice.engine == "flite"
        and pitch * STYLES[style].pitch != 1.0
    )


def tts_command(
    text: str, voice: Voice, style: str, rate: float, pitch: float, out: Path
) -> list[str]:
    """Command line that speaks ``text`` into the wav file ``out``.

    Args:
        text: what to say.
        voice: the speaker.
        style: a key of :data:`STYLES`.
        rate: speaking-rate multiplier on top of the style.
        pitch: pitch multiplier on top of the voice and style.
        out: the wav file to write.
    """
    st = STYLES[style]
    if voice.engine == "espeak":
        # Style goes through SSML prosody (relative to the voice); jitter through -p and -s.
        attrs = []
        if st.pitch != 1.0:
            attrs.append(f'pitch="{(st.pitch - 1) * 100:+.0f}%"')
        if st.rate != 1.0:
            attrs.append(f'rate="{st.rate * 100:.0f}%"')
        if st.range:
            attrs.append(f'range="{st.range}"')
        ssml = f"<speak><prosody {' '.join(attrs)}>{escape(text)}</prosody></speak>"
        p = int(np.clip(round(voice.pitch * pitch), 0, 99))
        speed = str(round(_ESPEAK_WPM * rate))
        return [
            "espeak-ng",
            "-m",
            "-v",
            voice.name,
            "-p",
            str(p),
            "-s",
            speed,
            "-w",
            str(out),
            ssml,
        ]
    stretch = f"duration_stretch={1.0 / (rate * st.rate):.3f}"
    cmd = ["flite", "-voice", voice.name, "--setf", stretch]
    if voice.pitch > 0:
        cmd += ["--setf", f"int_f0_target_mean={voice.pitch * pitch * st.pitch:.1f}"]
    elif voice.name not in _FLITE_FIXED_F0 and pitch * st.pitch != 1.0:
        cmd += ["--setf", f"f0_shift={pitch * st.pitch:.3f}"]
    return cmd + ["-t", text, "-o", str(out)]


def _run(cmd: list[str], what: str) -> None:
    """Run one program; DataError with its first line of output when it fails."""
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        msg = (res.stderr or res.stdout).strip().splitlines()
        raise DataError(f"{cmd[0]} failed for {what}: {msg[0] if msg else res.returncode}")


def synthesize(
    text: str,
    voice: Voice,
    tmp: Path,
    style: str = "neutral",
    rate: float = 1.0,
    pitch: float = 1.0,
) -> np.ndarray:
    """Speak ``text``: float32 mono 16 kHz, silence trimmed (not normalised or padded).

    Args:
        text: what to say (plain words; a full stop gives sentence-final prosody).
        voice: the speaker.
        tmp: a scratch wav path (written, then deleted).
        style: a key of :data:`STYLES`.
        rate: speaking-rate multiplier.
        pitch: pitch multiplier.

    Returns:
        float32 array of shape (T,).
    """
    what = f"{text!r} ({voice.id})"
    _run(tts_command(text, voice, style, rate, pitch, tmp), what)
    if not tmp.is_file():
        raise DataError(f"{voice.engine} wrote no audio for {what}")
    if needs_sox(voice, style, pitch):
        cents = 1200.0 * np.log2(pitch * STYLES[style].pitch)
        shifted = tmp.with_suffix(".pitch.wav")
        _run(["sox", "-R", str(tmp), str(shifted), "pitch", f"{cents:.0f}"], what)  # -R: no random dither
        os.replace(shifted, tmp)
    data, sr = sf.read(str(tmp), dtype="float32", always_2d=True)  # (T, C)
    tmp.unlink()
    # Warp: pretend the clip was recorded at sr*warp; rounding to 100 Hz keeps the filter short.
    sr_eff = sr if voice.warp == 1.0 else int(round(sr * voice.warp / 100.0) * 100)
    return trim_silence(resample(data.mean(axis=1), sr_eff, SAMPLE_RATE), top_db=40)
