"""Helpers for the share tests (imported as `sharehelpers`)."""
from __future__ import annotations

FAMILIES = ("wav2vec2", "wav2vec2-stable", "hubert", "wavlm", "data2vec-audio", "whisper")


def max_diff(a, b) -> float:
    """Largest absolute difference over the valid frames of two HiddenStates."""
    m = a.mask()
    return max(float((x[m] - y[m]).abs().max()) for x, y in zip(a.states, b.states))


def espeak_words(words) -> list:
    """Each word spoken by espeak-ng (alternating male and female en-us voices), 16 kHz arrays."""
    import subprocess
    import tempfile
    from pathlib import Path

    from stackslim.data import read_audio

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for j, w in enumerate(words):
            f = Path(tmp) / f"{j}.wav"
            subprocess.run(["espeak-ng", "-v", f"en-us+{'mf'[j % 2]}{1 + j % 4}", "-w", str(f), w],
                           check=True, capture_output=True)
            out.append(read_audio(f))
    return out
