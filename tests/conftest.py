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


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`):
    on a loaded 2-core machine two threads made these tests 10 to 40 times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


@pytest.fixture(scope="session")
def sentence_cache(tmp_path_factory):
    """A stackslim cache folder whose `synth-sentences` is tiny (2 eval sentences × 3 clear
    voices, 8 pool clips; built offline in about a second) and whose `models/` is the real
    cache's (the bundled Whisper models are converted there once). Point STACKSLIM_CACHE at it
    (`sentences_env`) to run WER and `--unlabelled synth-sentences` on it."""
    from stackslim.data import synth
    from stackslim.data.datasets import default_cache_dir

    cache = tmp_path_factory.mktemp("cache")
    models = default_cache_dir() / "models"
    models.mkdir(parents=True, exist_ok=True)
    (cache / "models").symlink_to(models, target_is_directory=True)
    folder = cache / "data" / synth.CACHE_FOLDERS["synth-sentences"]
    synth.build("synth-sentences", folder, n_clips=8, n_eval=2, workers=2)
    return cache


@pytest.fixture
def sentences_env(sentence_cache, monkeypatch):
    """STACKSLIM_CACHE set to `sentence_cache` for one test; returns the folder."""
    monkeypatch.setenv("STACKSLIM_CACHE", str(sentence_cache))
    return sentence_cache
