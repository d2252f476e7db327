"""Fixtures for the export tests: a padded batch of clips."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def batch():
    """Three clips of different lengths (16 kHz): the batch is padded, padding included."""
    rng = np.random.default_rng(1)
    t = [np.arange(n) / 16000 for n in (14000, 6100, 10555)]
    return [(0.2 * np.sin(2 * np.pi * (250 + 100 * i) * x) + 0.05 * rng.standard_normal(x.size))
            .astype(np.float32) for i, x in enumerate(t)]
