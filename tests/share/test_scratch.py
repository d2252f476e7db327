"""Training a ResidualTransformer from scratch (`share.from_config` + `evaluate.train_from_scratch`,
`wave_accuracy`): what bench/share.py's "scratch" part, the paper's own setting, runs."""
from __future__ import annotations

import pytest
import torch
from transformers import WhisperConfig

from stackslim.heads import prepare_task
from stackslim.share import from_config
from stackslim.evaluate import wave_accuracy
from stackslim.share.scratch import train_from_scratch
from stackslim.train import TrainConfig


def _config(d: int = 32) -> WhisperConfig:
    """A small Whisper (1 s of input at most), as bench/share.py's scratch_config."""
    return WhisperConfig(vocab_size=64, num_mel_bins=80, d_model=d, encoder_layers=4, decoder_layers=1,
                         encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=4 * d,
                         decoder_ffn_dim=4 * d, max_source_positions=50, max_target_positions=8,
                         dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, pad_token_id=0,
                         bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scratch_run(one_thread, tone_data):
    task = prepare_task(str(tone_data), "word", seed=0)
    waves = {p: [task.dataset.load(i) for i in task.splits[p]] for p in ("train", "validation", "test")}
    enc = from_config(_config(), groups=2, rank=2, diag=True, share_norms=True)
    before = {k: v.detach().clone() for k, v in enc.encoder_module.state_dict().items()}
    head, log = train_from_scratch(enc, task.num_classes, waves["train"], task.y("train"),
                                   waves["validation"], task.y("validation"),
                                   TrainConfig(epochs=6, batch_size=4, lr=3e-3, patience=6, seed=0),
                                   proj_size=16, progress=False)
    return task, waves, enc, before, head, log


def test_from_scratch_trains_front_end_and_shared_stack(scratch_run):
    task, waves, enc, before, head, log = scratch_run
    assert enc.groups == [[0, 1], [2, 3]]
    assert log.epochs_run == 6 and log.train_loss[-1] < 0.5 * log.train_loss[0]
    after = enc.encoder_module.state_dict()
    changed = {k for k, v in before.items() if not torch.equal(v, after[k])}
    # every parameter trains: the front end's convolutions, each group's shared weight, each
    # layer's own low-rank residual A B and diagonal d
    assert {"conv1.weight", "conv2.weight", "layers.0.fc1.shared", "layers.2.fc1.shared",
            "layers.1.self_attn.q_proj.A", "layers.1.self_attn.q_proj.B", "layers.3.fc2.d"} <= changed
    # ... and the groups still share one weight (layers 0 and 1), which differs from the next group's
    assert torch.equal(after["layers.0.fc1.shared"], after["layers.1.fc1.shared"])
    assert not torch.equal(after["layers.1.fc1.shared"], after["layers.2.fc1.shared"])


def test_wave_accuracy_is_the_kept_epochs_and_the_heads_on_fresh_states(scratch_run):
    task, waves, enc, _, head, log = scratch_run
    # the best validation epoch is the one kept
    assert wave_accuracy(enc, head, waves["validation"], task.y("validation")) == log.best_score
    # reference: the head on the encoder's own last states, clip by clip
    acc = wave_accuracy(enc, head, waves["test"], task.y("test"))
    with torch.no_grad():
        pred = [int(head(*enc.encode([w])).argmax(-1)) for w in waves["test"]]
    assert acc == pytest.approx(sum(p == y for p, y in zip(pred, task.y("test").tolist())) / len(pred))
    assert wave_accuracy(enc, head, waves["train"], task.y("train")) > 1 / task.num_classes
