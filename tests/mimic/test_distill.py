"""Feature masking and stage-2 distillation (on the unlabelled windows too)."""
from __future__ import annotations

import pytest
import torch

from stackslim.heads import prepare_task
from stackslim.mimic import MimicConfig, MimicError, MimicModel, build_data, fit_teacher_head
from stackslim.mimic.augment import FeatureMask
from stackslim.mimic.fit import distill_loss, head_logits, stage2
from stackslim.models import load_encoder
from stackslim.train import TrainConfig


def test_feature_mask_masks_only_what_it_says():
    x = torch.ones(4, 20, 8)
    n = torch.tensor([20, 10, 5, 1])
    assert FeatureMask()(x, n) is x  # inactive: unchanged
    g = torch.Generator().manual_seed(0)
    y = FeatureMask(time_frac=0.2, time_masks=2)(x, n, g)
    zeroed = (y == 0).all(-1)  # (B, T) whole frames zeroed
    for b, nb in enumerate(n.tolist()):
        k = int(zeroed[b, :nb].sum())
        assert 1 <= k <= 2 * max(1, round(0.2 * nb))
    z = FeatureMask(channel_frac=0.5)(x, n, g)
    vals = set(torch.unique(z).tolist())
    assert vals <= {0.0, 2.0}  # dropped or rescaled by 1 / (1 - p)
    with pytest.raises(ValueError):
        FeatureMask(time_frac=1.0)


def test_distill_loss_is_zero_on_equal_logits_and_positive_otherwise():
    t = torch.randn(5, 7)
    torch.testing.assert_close(distill_loss(t, t, 2.0), torch.zeros(5), atol=1e-6, rtol=0)
    assert bool((distill_loss(torch.randn(5, 7), t, 2.0) > 0).all())
    # tau² scaling: at a high temperature KL ~ ||s - t||² / (2 τ² C)... times τ² stays finite
    assert float(distill_loss(t + 1e-3 * torch.randn(5, 7), t, 50.0).mean()) < 1e-3


@pytest.fixture(scope="module")
def setup(tone_dataset):
    enc = load_encoder("random:whisper")
    task = prepare_task(tone_dataset, "word", seed=0)
    data = build_data(enc, task, None, unlabelled=tone_dataset, max_unlabelled=6, progress=False)
    head, _ = fit_teacher_head(data, task.num_classes, MimicConfig(head_epochs=3), progress=False)
    return enc, task, data, head


def test_stage2_with_distillation_trains_on_the_unlabelled_windows_too(setup):
    enc, task, data, head = setup
    seen: list[int] = []
    model = MimicModel.from_teacher(enc, head, "linear", 1, 16)
    import stackslim.mimic.fit as fit

    orig = fit.train

    def spy(module, n_rows, step_loss, cfg, **kw):
        seen.append(n_rows)
        return orig(module, n_rows, step_loss, cfg, **kw)

    fit.train = spy
    try:
        cfg = MimicConfig(task_epochs=2, train=TrainConfig(batch_size=8), distill=0.5, mask_time=0.2,
                          mask_channels=0.1)
        log = stage2(model, data, cfg, progress=False)
        stage2(MimicModel.from_teacher(enc, head, "linear", 1, 16), data,
               MimicConfig(task_epochs=1, train=TrainConfig(batch_size=8)), progress=False)
    finally:
        fit.train = orig
    windows = len(data.unlabelled_windows())
    assert seen == [len(data.train) + windows, len(data.train)]
    assert log.epochs_run >= 1 and all(torch.isfinite(torch.tensor(log.train_loss)))
    # the teacher's logits come from its head on its own cached last states
    assert head_logits(head, data.test).shape == (len(data.test), task.num_classes)


def test_distillation_options_are_checked():
    with pytest.raises(MimicError):
        MimicConfig(distill=1.5)
    with pytest.raises(MimicError):
        MimicConfig(temperature=0)
    with pytest.raises(MimicError):
        MimicConfig(mask_time=1.0)
