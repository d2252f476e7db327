"""Shared fixtures: deterministic random audio, a private cache folder for each session."""
from __future__ import annotations

import os

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _quiet_threads():
    # 2-core machines: one intra-op thread per test process keeps timings predictable
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def waves():
    """Three clips of noise-like audio of different lengths (16 kHz, float32)."""
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 9000, 12345)]
