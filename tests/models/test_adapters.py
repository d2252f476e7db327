"""Every family behind one interface: states, lengths, masking, layer deletion, save/load."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel, WhisperForConditionalGeneration

from stackslim.models import RANDOM_FAMILIES, EncoderError, load_encoder

FAMILIES = list(RANDOM_FAMILIES)


def _hf_reference(enc, wave: np.ndarray) -> torch.Tensor:
    """The Hugging Face model's own last hidden state for one clip (B = 1)."""
    with torch.no_grad():
        if enc.family == "whisper":
            x0, _ = enc.front_end([wave])  # HF's encoder only takes 30 s: compare layer by layer
            h = x0
            for layer in enc.layers:
                h = layer(h, None)
                h = h[0] if isinstance(h, tuple) else h
            return enc.final_norm_module(h)
        x = torch.from_numpy((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7))[None]
        return enc.model(x).last_hidden_state


@pytest.mark.parametrize("family", FAMILIES)
def test_states_shapes_and_lengths(family, waves):
    enc = load_encoder(f"random:{family}")
    hs = enc.hidden_states(waves)
    assert len(hs.states) == enc.num_layers + 1 == 5
    B, T, D = hs.states[0].shape
    assert B == 3 and D == enc.hidden_size
    assert all(s.shape == (B, T, D) for s in hs.states)
    assert hs.lengths.tolist()[0] == T  # the longest clip fills the batch
    assert hs.lengths[1] < hs.lengths[2] < hs.lengths[0]
    assert hs.final_norm is (True if family in ("whisper", "wav2vec2-stable") else None)


@pytest.mark.parametrize("family", FAMILIES)
def test_padding_does_not_change_valid_frames(family, waves):
    enc = load_encoder(f"random:{family}")
    batch = enc.hidden_states(waves)
    for b, w in enumerate(waves):
        alone = enc.hidden_states([w])
        n = int(batch.lengths[b])
        assert int(alone.lengths[0]) == n
        for i in range(enc.num_layers + 1):
            torch.testing.assert_close(batch.states[i][b, :n], alone.states[i][0], atol=2e-5, rtol=1e-4)
    # pooled and frames views only see valid frames
    assert batch.frames(2).shape[0] == int(batch.lengths.sum())


@pytest.mark.parametrize("family", FAMILIES)
def test_last_state_matches_hugging_face(family, waves):
    enc = load_encoder(f"random:{family}")
    ref = _hf_reference(enc, waves[0])
    ours = enc.hidden_states([waves[0]]).states[-1]
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def test_whisper_padded_mode_matches_hugging_face(waves):
    enc = load_encoder("random:whisper", mode="padded")
    hs = enc.hidden_states(waves[:2])
    feats = enc.feature_extractor(waves[:2], sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ref = enc.model.get_encoder()(feats).last_hidden_state
    assert hs.states[-1].shape[1] == 1500
    torch.testing.assert_close(hs.states[-1], ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("drop", [[0, 3], [1], [0]])
def test_delete_layers_and_reload_with_plain_transformers(family, drop, waves, tmp_path):
    enc = load_encoder(f"random:{family}")
    small = enc.without_layers(drop)
    assert small.num_layers == enc.num_layers - len(drop)
    assert enc.num_layers == 4  # the original is untouched
    # the kept layers compute what they computed before: new layer j on the original's input of
    # old layer kept[j] gives the original's output of that layer (states before the final norm)
    full = enc.hidden_states(waves[:2], final_norm=False)
    kept = [i for i in range(enc.num_layers) if i not in drop]
    assert len(kept) == small.num_layers
    ctx = small.stack_context(full.states[0], full.lengths)  # in order: WavLM threads its bias
    mask = full.mask()
    for j, old in enumerate(kept):
        with torch.no_grad():
            out = small.run_layer(j, full.states[old], ctx)
        torch.testing.assert_close(out[mask], full.states[old + 1][mask], atol=1e-5, rtol=1e-4)
    before = small.hidden_states(waves).states[-1]
    small.save(tmp_path / "m")
    again = load_encoder(tmp_path / "m")
    assert again.num_layers == small.num_layers and again.family == enc.family
    torch.testing.assert_close(again.hidden_states(waves).states[-1], before, atol=1e-6, rtol=1e-5)
    # plain transformers reads the folder and computes the same thing
    cls = WhisperForConditionalGeneration if family == "whisper" else AutoModel
    plain = cls.from_pretrained(tmp_path / "m")
    plain_enc = type(enc)(plain) if family != "whisper" else type(enc)(plain, mode="unpadded")
    torch.testing.assert_close(_hf_reference(plain_enc, waves[0]), before[:1, : int(_len(small, waves[0]))],
                               atol=1e-5, rtol=1e-4)


def _len(enc, wave):
    return enc.hidden_states([wave]).lengths[0]


def test_wavlm_without_first_layer_keeps_position_bias(waves):
    enc = load_encoder("random:wavlm")
    small = enc.without_layers([0])
    assert small.layers[0].attention.has_relative_position_bias
    # the bias table is the old layer 0's, not a fresh random one
    torch.testing.assert_close(small.layers[0].attention.rel_attn_embed.weight,
                               enc.layers[0].attention.rel_attn_embed.weight)


def test_layer_index_out_of_range():
    enc = load_encoder("random:hubert")
    with pytest.raises(EncoderError, match="layer index 4 out of range"):
        enc.without_layers([4])
    with pytest.raises(EncoderError, match="out of range"):
        enc.without_layers([-1])


def test_unknown_specs_fail_with_one_line(tmp_path):
    with pytest.raises(EncoderError, match="not found"):
        load_encoder("no-such-model")
    with pytest.raises(EncoderError, match="unknown random family"):
        load_encoder("random:conformer")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderError, match="no config.json"):
        load_encoder(tmp_path / "empty")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(EncoderError, match="unsupported model type 'bert'"):
        load_encoder(tmp_path / "bert")


def test_bad_waves_are_refused():
    enc = load_encoder("random:wav2vec2")
    with pytest.raises(EncoderError, match="NaN"):
        enc.hidden_states([np.full(1600, np.nan, dtype=np.float32)])
    with pytest.raises(EncoderError, match="1-D"):
        enc.hidden_states([np.zeros((2, 1600), dtype=np.float32)])
    with pytest.raises(EncoderError, match="empty"):
        enc.hidden_states([])


def test_pickled_weights_refused(tmp_path):
    enc = load_encoder("random:hubert")
    enc.model.save_pretrained(tmp_path / "pkl")
    (tmp_path / "pkl" / "model.safetensors").unlink()  # leave only a pickled checkpoint
    torch.save(enc.model.state_dict(), tmp_path / "pkl" / "pytorch_model.bin")
    with pytest.raises(EncoderError, match="allow-pickle"):
        load_encoder(tmp_path / "pkl")
    assert load_encoder(tmp_path / "pkl", allow_pickle=True).num_layers == 4
