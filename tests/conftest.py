"""Shared fixtures: deterministic random audio, a private cache folder for each session."""
from __future__ import annotations

import os

import numpy as np
import pytest
from tonedata import make_tone_dataset


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


@pytest.fixture(scope="session")
def tone_data(tmp_path_factory):
    """Folder of a 72-clip tone data set (3 words × 6 speakers × 4), with manifest.csv."""
    return make_tone_dataset(tmp_path_factory.mktemp("tones"))


@pytest.fixture
def torchrun():
    """Run `torchrun --standalone --nproc_per_node=N ARGS` (gloo on CPU, one thread per process);
    returns the CompletedProcess. Skips when torchrun is not installed beside this Python."""
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("torchrun")
    if not exe.exists():
        pytest.skip("torchrun not installed beside this Python")

    def run(args: list[str], nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run([str(exe), "--standalone", f"--nproc_per_node={nproc}", *map(str, args)],
                              env=env, capture_output=True, text=True, timeout=timeout)

    return run
