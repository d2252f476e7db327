"""A tiny learnable labelled data set of tones, for tests (importable from any test folder:
`from tonedata import make_tone_dataset`)."""
from __future__ import annotations

import numpy as np


def make_tone_dataset(root, words: int = 3, speakers: int = 6, per: int = 4, seconds: float = 1.0,
                      seed: int = 0):
    """A tiny learnable labelled set: a 'word' is a tone frequency, a 'speaker' an amplitude
    and a harmonic mix; manifest.csv with path,label,speaker. Returns the folder."""
    from pathlib import Path

    from stackslim.data import Clip, write_manifest, write_wav

    root = Path(root)
    rng = np.random.default_rng(seed)
    n = int(16000 * seconds)
    t = np.arange(n) / 16000
    clips = []
    for w, f in enumerate([300.0, 800.0, 1500.0, 2300.0, 3100.0][:words]):
        for s in range(speakers):
            for k in range(per):
                f_k = f * (1 + 0.03 * rng.standard_normal())
                x = 0.08 * (s + 1) * (np.sin(2 * np.pi * f_k * t) + 0.3 * s / speakers * np.sin(4 * np.pi * f_k * t))
                x = (x + 0.02 * rng.standard_normal(n)).astype(np.float32)
                p = root / f"w{w}" / f"s{s}_{k}.wav"
                write_wav(p, x)
                clips.append(Clip(path=p, label=f"w{w}", speaker=f"s{s}"))
    write_manifest(root / "manifest.csv", clips)
    return root
