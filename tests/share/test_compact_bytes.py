"""Bytes of the compact format: the encoder's tensors once, Whisper's decoder apart (issue #6 bug)."""
from __future__ import annotations

import json

import torch
from safetensors import safe_open
from sharehelpers import max_diff

from stackslim.models import load_encoder
from stackslim.share import SHARE_META, load_shared, to_residual
from stackslim.share.size import disk_report, module_prefix, safetensors_bytes


def _unique_bytes(module: torch.nn.Module) -> int:
    """Bytes of every tensor of `module`'s state dict, a tensor held under several names once."""
    seen = {id(v): v for v in module.state_dict(keep_vars=True).values()}
    return sum(v.numel() * v.element_size() for v in seen.values())


def test_encoder_file_holds_exactly_the_unique_encoder_tensors(tmp_path, clips):
    enc = load_encoder("random:whisper")
    with torch.no_grad():  # a decoder whose values are float16 values, as in the bundled models
        for p in enc.model.model.decoder.parameters():
            p.copy_(p.half().float())
    s = to_residual(enc, groups=2, rank=4)
    s.save(tmp_path / "m")
    folder = tmp_path / "m"
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        enc_keys = set(f.keys())
    prefix = module_prefix(s.model, s.encoder_module)
    assert prefix == "model.encoder." and all(k.startswith(prefix) for k in enc_keys)
    assert safetensors_bytes(folder / "model.safetensors") == _unique_bytes(s.encoder_module)
    # the decoder: its own file, float16 where lossless, the tied projection stored once
    meta = json.loads((folder / SHARE_META).read_text())
    assert meta["decoder"] is True and meta["widen"]
    rest = {k: v for k, v in s.model.state_dict(keep_vars=True).items() if not k.startswith(prefix)}
    half = sum(v.numel() * 2 for v in {id(v): v for v in rest.values()}.values())
    assert safetensors_bytes(folder / "decoder.safetensors") == half
    back = load_shared(folder)
    assert back.has_decoder and max_diff(s.hidden_states(clips), back.hidden_states(clips)) == 0.0
    assert all(torch.equal(a, b) for a, b in zip(s.model.state_dict().values(),
                                                back.model.state_dict().values()))
    rep = disk_report(s)
    assert rep["compact_encoder_bytes"] == _unique_bytes(s.encoder_module)
    assert rep["compact_decoder_bytes"] == half
    assert rep["compact_folder_bytes"] > rep["compact_encoder_bytes"] + rep["compact_decoder_bytes"]


def test_encoder_only_save(tmp_path, clips):
    s = to_residual(load_encoder("random:whisper"), groups=2, rank=4)
    s.save(tmp_path / "m", decoder=False)
    assert not (tmp_path / "m" / "decoder.safetensors").exists()
    back = load_shared(tmp_path / "m")
    assert not back.has_decoder
    assert max_diff(s.hidden_states(clips), back.hidden_states(clips)) == 0.0


def test_wav2vec2_has_no_decoder_file(tmp_path):
    s = to_residual(load_encoder("random:wav2vec2"), groups=2, rank=4)
    s.save(tmp_path / "m")
    assert not (tmp_path / "m" / "decoder.safetensors").exists()
    assert safetensors_bytes(tmp_path / "m" / "model.safetensors") == _unique_bytes(s.model)
