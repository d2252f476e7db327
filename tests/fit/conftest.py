"""Fixtures for the fit tests: a small tone data set, a runner of `stackslim fit` on a random
Whisper, and one run of it shared by the tests that read its results."""
from __future__ import annotations

import pytest
from tonedata import make_tone_dataset

FIT_BUDGET = 90  # epochs: one each in the first round for every fitting composition (11)


@pytest.fixture(scope="session")
def fit_tones(tmp_path_factory):
    """3 words × 4 speakers × 3 takes of 0.5 s tones, with manifest.csv."""
    return make_tone_dataset(tmp_path_factory.mktemp("fit-tones"), words=3, speakers=4, per=3,
                             seconds=0.5)


@pytest.fixture(scope="session")
def run_fit(fit_tones, tmp_path_factory):
    """`run_fit(**options)`: (out, FitResult) of `stackslim fit` on random:whisper (about
    1.03 MB of encoder) at 0.9 MB, one thread, in a new folder; `options` override the
    tests' FitConfig (budget FIT_BUDGET epochs, every fitting composition trained)."""
    import torch

    from stackslim.fit import FitConfig, run
    from stackslim.train import TrainConfig

    def go(**options):
        torch.set_num_threads(1)
        cfg = FitConfig(**{"max_mb": 0.9, "epochs_budget": FIT_BUDGET, "head_epochs": 3,
                           "calib": 4, "max_candidates": 40,
                           "train": TrainConfig(epochs=1, lr=1e-4, batch_size=16,
                                                weight_decay=0.0, patience=100), **options})
        out = tmp_path_factory.mktemp("fit") / "run"
        return out, run("random:whisper", str(fit_tones / "manifest.csv"), out, cfg,
                        progress=False, log=lambda s: None)

    return go


@pytest.fixture(scope="session")
def fit_run(run_fit):
    """One run: pruning, sharing and mimic candidates fit at 0.9 MB, int8 too."""
    return run_fit()
