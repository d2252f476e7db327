"""A saved pruned model reloads with plain transformers (and stackslim) with identical outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, WhisperForConditionalGeneration

from stackslim.heads import ClassifierHead
from stackslim.models import RANDOM_FAMILIES, load_encoder
from stackslim.prune import PruneError, classify, load_pruned, save_pruned


def _plain_logits(folder, family, wave: np.ndarray) -> torch.Tensor:
    """Logits of one clip with plain transformers + safetensors, no stackslim code."""
    w = load_file(str(folder / "head.safetensors"))
    with torch.no_grad():
        if family == "whisper":
            from transformers import WhisperFeatureExtractor

            model = WhisperForConditionalGeneration.from_pretrained(folder)
            feats = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)(
                [wave], sampling_rate=16000, return_tensors="pt").input_features
            h = model.get_encoder()(feats).last_hidden_state  # (1, 1500, D): Whisper's own 30 s input
            h = h[:, : (len(wave) // 160 - 1) // 2 + 1]  # the frames that hold the clip
        else:
            model = AutoModel.from_pretrained(folder)
            x = torch.from_numpy((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7))[None]
            h = model(x).last_hidden_state  # (1, T, D)
    z = h @ w["projector.weight"].T + w["projector.bias"]  # (1, T, P)
    return z.mean(1) @ w["classifier.weight"].T + w["classifier.bias"]  # (1, C)


@pytest.mark.parametrize("family", RANDOM_FAMILIES)
def test_saved_model_reloads_with_identical_outputs(family, tones, tmp_path):
    mode = "padded" if family == "whisper" else None  # compare with HF's own 30 s Whisper input
    enc = load_encoder(f"random:{family}", mode=mode)
    torch.manual_seed(0)
    head = ClassifierHead(enc.hidden_size, 3, proj_size=16)
    deleted = [0, 2] if family == "wavlm" else [1, 3]  # WavLM: its position-bias layer goes too
    out = save_pruned(enc, deleted, head, tmp_path / "model", meta={"classes": ["a", "b", "c"]})
    waves = [tones.load(i) for i in (0, 30)]
    want = classify(enc.without_layers(deleted), head, waves)
    again_enc, again_head = load_pruned(out)
    if family == "whisper":
        again_enc.mode = "padded"
    assert again_enc.num_layers == enc.num_layers - 2
    torch.testing.assert_close(classify(again_enc, again_head, waves), want, atol=1e-5, rtol=1e-4)
    for b, wave in enumerate(waves):
        torch.testing.assert_close(_plain_logits(out, family, wave), want[b : b + 1], atol=1e-4, rtol=1e-4)
    meta = json.loads((out / "head.json").read_text())
    assert meta["deleted_layers"] == [d + 1 for d in deleted] and meta["classes"] == ["a", "b", "c"]
    assert oct((out / "head.safetensors").stat().st_mode)[-3:] != "600"


def test_load_pruned_needs_a_head(tmp_path):
    enc = load_encoder("random:hubert")
    enc.save(tmp_path / "plain")
    with pytest.raises(PruneError, match="not a pruned model"):
        load_pruned(tmp_path / "plain")


def test_save_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    enc = load_encoder("random:hubert")
    with pytest.raises(PruneError, match="not a folder"):
        save_pruned(enc, [1], ClassifierHead(enc.hidden_size, 2), tmp_path / "f")
