"""`ShareConfig`: every option is checked when the config is made (ShareError, a StackslimError),
so that a bad one fails before any model or data loads; the recovery is the nested `train`."""
from __future__ import annotations

import argparse
from dataclasses import replace

import pytest

from stackslim.config import config_from_args
from stackslim.errors import EncoderError, StackslimError
from stackslim.share import ShareConfig, ShareError, command
from stackslim.train import TrainConfig


def test_recovery_defaults():
    t = ShareConfig().train
    assert (t.epochs, t.lr, t.batch_size, t.weight_decay, t.patience, t.max_minutes) == (3, 1e-4, 16, 0.0, 3, 0.0)
    assert issubclass(ShareError, StackslimError) and not issubclass(ShareError, EncoderError)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(group=-1), "--group"),
    (dict(rank=-2), "--rank"),
    (dict(groups="first-two"), "--groups"),
    (dict(init="magic"), "--init"),
    (dict(init="aware", calib=0), "--init aware needs calibration clips"),
    (dict(recover_states="some"), "--recover-states"),
    (dict(asr_weight=-1.0), "--asr-weight"),
    (dict(asr_weight=1.0), "--unlabelled"),
    (dict(asr_top_k=0, unlabelled="x", asr_weight=1.0), "--asr-top-k"),
    (dict(asr_select="bleu"), "--asr-select"),
    (dict(head_epochs=0), "--head-epochs"),
    (dict(latency_clips=-1), "--latency-clips"),
    (dict(train=TrainConfig(epochs=-1)), "--epochs"),
    (dict(train=TrainConfig(batch_size=0)), "--batch-size"),
    (dict(train=TrainConfig(max_minutes=-1.0)), "--max-minutes"),
    (dict(train=TrainConfig(lr=0.0)), "--lr"),
])
def test_bad_options_fail_when_the_config_is_made(kwargs, needle):
    with pytest.raises(ShareError, match=needle):
        ShareConfig(**kwargs)


def test_the_command_reads_the_recovery_flags():
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    ns = p.parse_args(["m", "d", "--out", "o", "--epochs", "5", "--max-minutes", "2",
                       "--batch-size", "4", "--seed", "7", "--rank", "8"])
    cfg = config_from_args(ShareConfig, ns)
    assert cfg.rank == 8 and cfg.train == replace(ShareConfig().train, epochs=5, max_minutes=2.0,
                                                  batch_size=4, seed=7)
    assert command.COMMAND == "share" and callable(command.run)
