"""Fixtures for the fit tests: a small tone data set, and one fit run on a random Whisper
shared by the tests that read its results."""
from __future__ import annotations

import pytest
from tonedata import make_tone_dataset


@pytest.fixture(scope="session")
def fit_tones(tmp_path_factory):
    """3 words × 4 speakers × 3 takes of 0.5 s tones, with manifest.csv."""
    return make_tone_dataset(tmp_path_factory.mktemp("fit-tones"), words=3, speakers=4, per=3,
                             seconds=0.5)


@pytest.fixture(scope="session")
def fit_run(fit_tones, tmp_path_factory):
    """`stackslim fit` on random:whisper (about 1.03 MB of encoder) at 0.9 MB: pruning,
    sharing and mimic candidates fit, int8 too; every fitting composition is trained."""
    import torch

    from stackslim.fit import FitConfig, run
    from stackslim.train import TrainConfig

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("fit") / "run"
    cfg = FitConfig(max_mb=0.9, minutes=2.0, head_epochs=3, calib=4, max_candidates=40,
                    train=TrainConfig(epochs=1, lr=1e-4, batch_size=16, weight_decay=0.0, patience=100))
    return out, run("random:whisper", str(fit_tones / "manifest.csv"), out, cfg, progress=False,
                    log=lambda s: None)
