"""Compact save/load and materialize(): exact round trips, plain transformers for the dense copy."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from sharehelpers import FAMILIES, max_diff

from stackslim.models import EncoderError, load_encoder
from stackslim.share import SHARE_META, is_shared_folder, load_shared, to_residual
from stackslim.share.size import disk_report


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_and_materialize_are_exact(family, clips, tmp_path):
    enc = load_encoder(f"random:{family}")
    s = to_residual(enc, groups=2, rank=8, diag=True, share_norms=family == "hubert")
    ref = s.hidden_states(clips)
    s.save(tmp_path / "m")
    assert is_shared_folder(tmp_path / "m")
    back = load_shared(tmp_path / "m")
    assert back.groups == s.groups and back.spec == s.spec
    assert max_diff(ref, back.hidden_states(clips)) == 0.0
    assert back.num_params() == s.num_params()
    dense = s.materialize()
    assert type(dense) is type(enc)
    assert max_diff(ref, dense.hidden_states(clips)) < 1e-5
    assert dense.num_params() == enc.num_params()


def test_shared_tensor_stored_once(tmp_path):
    enc = load_encoder("random:whisper")
    s = to_residual(enc, groups=4, rank=2)
    s.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / SHARE_META).read_text())
    with safe_open(str(tmp_path / "m" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    shared_keys = [k for k in keys if k.endswith(".shared")]
    assert len(shared_keys) == 6  # one group: six W_shared
    assert "model.encoder.layers.3.fc1.shared" in meta["aliases"]
    rep = disk_report(s)
    assert rep["compact_encoder_bytes"] < rep["dense_encoder_bytes"]
    assert rep["compact_encoder_bytes"] == 4 * s.num_params()  # float32, each tensor once


def test_materialized_model_loads_with_plain_transformers(clips, tmp_path):
    from transformers import AutoModel

    enc = load_encoder("random:wav2vec2")
    s = to_residual(enc, groups=[[0, 1, 2, 3]], rank=4, share_norms=True)
    dense = s.materialize()
    dense.save(tmp_path / "dense")
    hf = AutoModel.from_pretrained(tmp_path / "dense")
    for (k, v), (k2, v2) in zip(hf.state_dict().items(), dense.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert max_diff(s.hidden_states(clips), load_encoder(tmp_path / "dense").hidden_states(clips)) < 1e-5


def test_load_errors(tmp_path):
    with pytest.raises(EncoderError, match="not a shared"):
        load_shared(tmp_path)
    s = to_residual(load_encoder("random:hubert"), groups=2, rank=2)
    s.save(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(EncoderError, match="unreadable"):
        load_shared(tmp_path / "m")
