"""The model's own head of an AutoModelForAudioClassification checkpoint is the paper's head."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

from stackslim.heads.own_head import has_own_head, load_own_head, restrict_head
from stackslim.models import EncoderError, load_encoder
from stackslim.models.random_configs import _W2V_COMMON

NAMES = ["zeta", "low", "high", "mid"]


def make_classifier_checkpoint(folder, weighted: bool = False):
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(**_W2V_COMMON, num_labels=4, classifier_proj_size=16, use_weighted_layer_sum=weighted,
                         id2label=dict(enumerate(NAMES)), label2id={n: i for i, n in enumerate(NAMES)})
    model = Wav2Vec2ForSequenceClassification(cfg).eval()
    model.save_pretrained(folder)
    return model


def test_own_head_gives_the_checkpoints_logits(tmp_path):
    model = make_classifier_checkpoint(tmp_path / "cls")
    assert has_own_head(tmp_path / "cls")
    head, names = load_own_head(tmp_path / "cls")
    assert names == NAMES
    enc = load_encoder(tmp_path / "cls")
    wave = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    h, n = enc.encode([wave])
    x = torch.from_numpy((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7))[None]
    with torch.no_grad():
        want = model(x).logits
        torch.testing.assert_close(head(h, n), want, atol=1e-5, rtol=1e-4)
        sub = restrict_head(head, names, ["high", "low", "mid"])
        torch.testing.assert_close(sub(h, n), want[:, [2, 1, 3]], atol=1e-5, rtol=1e-4)
    with pytest.raises(EncoderError, match="no class 'loud'"):
        restrict_head(head, names, ["loud"])


def test_no_head_and_unsupported_heads(tmp_path):
    load_encoder("random:hubert").save(tmp_path / "plain")
    assert load_own_head(tmp_path / "plain") is None
    make_classifier_checkpoint(tmp_path / "weighted", weighted=True)
    with pytest.raises(EncoderError, match="use_weighted_layer_sum"):
        load_own_head(tmp_path / "weighted")
    cfg = json.loads((tmp_path / "weighted" / "config.json").read_text())
    assert cfg["use_weighted_layer_sum"] is True
