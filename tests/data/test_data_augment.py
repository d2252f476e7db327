"""Augmented waveform copies: reproducible per (seed, clip, copy), speed changes the length by
1/s, the noise meets the SNR drawn, and the batch stream keeps the clip indices."""
import numpy as np
import pytest

from stackslim.data.audio import SAMPLE_RATE as SR
from stackslim.data.augment import WaveAugment, with_copies


def tone(seconds: float = 1.0, f: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_copy_depends_on_seed_clip_and_k_only():
    aug, x = WaveAugment(), tone()
    a = aug.copy(x, 0, 5, 1)
    np.testing.assert_array_equal(a, aug.copy(x, 0, 5, 1))
    assert a.dtype == np.float32 and np.abs(a).max() <= 1.0
    assert not np.array_equal(a[: len(x)], x[: len(a)])
    others = [aug.copy(x, 1, 5, 1), aug.copy(x, 0, 6, 1), aug.copy(x, 0, 5, 2)]
    assert all(len(o) != len(a) or not np.array_equal(o, a) for o in others)


@pytest.mark.parametrize("speed", [0.9, 1.1])
def test_speed_changes_length_by_its_inverse(speed):
    aug = WaveAugment(speeds=(speed,), reverb_p=0.0, snr_db=(200.0, 200.0))
    y = aug.copy(tone(2.0), 0, 0, 0)
    assert abs(len(y) - 2.0 * SR / speed) <= 2
    # the tone's frequency moves with the speed (pitch and tempo together)
    spec = np.abs(np.fft.rfft(y))
    f_peak = np.argmax(spec) * SR / len(y)
    assert abs(f_peak - 220.0 * speed) < 3.0


def test_noise_meets_the_snr():
    x = tone(2.0)
    aug = WaveAugment(speeds=(1.0,), reverb_p=0.0, snr_db=(10.0, 10.0))
    y = aug.copy(x, 3, 0, 0)
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
    assert abs(snr - 10.0) < 0.2


def test_reverb_keeps_the_level_and_smears_the_signal():
    x = np.zeros(SR, np.float32)
    x[::1600] = 0.5  # clicks: reverberation fills the silence between them
    aug = WaveAugment(speeds=(1.0,), reverb_p=1.0, snr_db=(200.0, 200.0), rt60=(0.3, 0.3))
    y = aug.copy(x, 0, 0, 0)
    assert len(y) == len(x)
    assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) == pytest.approx(np.sqrt(np.mean(x ** 2)), rel=1e-3)
    assert np.mean(np.abs(y[100:1500])) > 1e-3 and np.mean(np.abs(x[100:1500])) == 0


def test_with_copies_same_whatever_the_batching():
    waves, idx = [tone(0.5, 200 + 40 * i) for i in range(5)], [10, 11, 12, 13, 14]
    one = list(with_copies([(waves, idx)], 2, seed=7))
    split = list(with_copies([(waves[:2], idx[:2]), (waves[2:], idx[2:])], 2, seed=7))
    assert [b[1] for b in one] == [idx] * 3
    assert [b[1] for b in split] == [idx[:2]] * 3 + [idx[2:]] * 3
    by_key = lambda bs: {(i, k % 3): w.tobytes() for k, (ws, ix) in enumerate(bs) for w, i in zip(ws, ix)}  # noqa: E731
    assert by_key(one) == by_key(split)
    assert list(with_copies([(waves, idx)], 0)) == [(waves, idx)]
    with pytest.raises(ValueError, match="copies"):
        list(with_copies([(waves, idx)], -1))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="speeds"):
        WaveAugment(speeds=(3.0,))
    with pytest.raises(ValueError, match="reverb_p"):
        WaveAugment(reverb_p=1.5)
