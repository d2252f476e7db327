"""Helpers for the share tests (imported as `sharehelpers`)."""
from __future__ import annotations

FAMILIES = ("wav2vec2", "wav2vec2-stable", "hubert", "wavlm", "data2vec-audio", "whisper")


def max_diff(a, b) -> float:
    """Largest absolute difference over the valid frames of two HiddenStates."""
    m = a.mask()
    return max(float((x[m] - y[m]).abs().max()) for x, y in zip(a.states, b.states))
