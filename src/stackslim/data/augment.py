"""Augmented copies of waveforms, for distillation on audio that no labels describe.

Matching a teacher needs no labels, so a recovery can read more varied audio than the data set
holds: each copy of a 16 kHz clip x (n,) is, in this order,

    speed:   x resampled by a factor s drawn from `speeds` (tempo and pitch move together,
             as Kaldi's speed perturbation; the clip lasts n / s samples);
    reverb:  with probability `reverb_p`, x * h, h a synthetic room response: a direct impulse
             then white noise decaying as exp(−6.9 t / RT60), RT60 ~ U(`rt60`), so that the
             tail falls by 60 dB in RT60 seconds; the result rescaled to x's RMS;
    noise:   x + σ ν, ν white noise low-passed by y_t = ν_t + a y_{t−1} (a ~ U(0, 0.95):
             from white to dull), σ set for an SNR ~ U(`snr_db`) over the whole clip;
    clip:    to [−1, 1], float32.

Copy k of clip i draws its randomness from ``(seed, i, k)`` alone, so the copies are the same
whatever the batching, the process count or the order of the clips. (Feature masking of cached
front-end states, for the mimic, is `stackslim.mimic.augment`; this module changes the audio, so
the teacher is run on every copy.)
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Iterator, Sequence

import numpy as np
from scipy.signal import fftconvolve, lfilter, resample_poly

from .audio import SAMPLE_RATE


@dataclass(frozen=True)
class WaveAugment:
    """How each augmented copy is drawn (module docstring)."""

    speeds: tuple[float, ...] = (0.9, 1.0, 1.1)
    reverb_p: float = 0.5
    rt60: tuple[float, float] = (0.15, 0.6)
    snr_db: tuple[float, float] = (10.0, 30.0)

    def __post_init__(self) -> None:
        if not self.speeds or any(not 0.5 <= s <= 2.0 for s in self.speeds):
            raise ValueError(f"speeds must lie in [0.5, 2], got {self.speeds}")
        if not 0.0 <= self.reverb_p <= 1.0:
            raise ValueError(f"reverb_p must lie in [0, 1], got {self.reverb_p}")
        if not 0.0 < self.rt60[0] <= self.rt60[1]:
            raise ValueError(f"rt60 must be 0 < low <= high seconds, got {self.rt60}")
        if self.snr_db[0] > self.snr_db[1]:
            raise ValueError(f"snr_db must be low <= high, got {self.snr_db}")

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One augmented copy (m,) float32 of the mono 16 kHz `wave` (n,)."""
        x = np.asarray(wave, dtype=np.float64)
        s = float(rng.choice(self.speeds))
        if s != 1.0:  # n / s samples: up / down = 1 / s as a small fraction
            f = Fraction(s).limit_denominator(20)
            x = resample_poly(x, f.denominator, f.numerator)
        rms = float(np.sqrt(np.mean(x ** 2))) if len(x) else 0.0
        if rng.random() < self.reverb_p and rms > 0:
            rt60 = rng.uniform(*self.rt60)
            t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE  # (taps,)
            h = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60) * 0.3
            h[0] = 1.0  # the direct path
            x = fftconvolve(x, h)[: len(x)]
            x *= rms / max(float(np.sqrt(np.mean(x ** 2))), 1e-12)
        if rms > 0:
            snr = rng.uniform(*self.snr_db)
            nu = lfilter([1.0], [1.0, -rng.uniform(0.0, 0.95)], rng.standard_normal(len(x)))
            x = x + nu * rms / (np.sqrt(np.mean(nu ** 2)) * 10 ** (snr / 20))
        return np.clip(x, -1.0, 1.0).astype(np.float32)

    def copy(self, wave: np.ndarray, seed: int, clip: int, k: int) -> np.ndarray:
        """Copy `k` of clip `clip`: the same for the same (seed, clip, k), wherever it is made."""
        return self(wave, np.random.default_rng([seed, clip, k]))


def with_copies(batches: Iterable[tuple[Sequence[np.ndarray], Sequence[int]]], copies: int,
                seed: int = 0, augment: WaveAugment = WaveAugment()
                ) -> Iterator[tuple[list[np.ndarray], list[int]]]:
    """`(waves, indices)` batches, each followed by its `copies` augmented versions (same
    indices: copy k of a batch is one batch). copies = 0 passes the batches through."""
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    for waves, idx in batches:
        yield list(waves), list(idx)
        for k in range(copies):
            yield [augment.copy(w, seed, int(i), k) for w, i in zip(waves, idx)], list(idx)
