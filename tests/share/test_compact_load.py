"""Loading a shared folder is compact: each shared tensor is one Parameter (one storage) in every
layer of its group, and the peak memory of loading is about the compact size, not the dense one."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from stackslim.models import load_encoder, wrap_model
from stackslim.share import load_shared, to_residual


def test_shared_tensors_are_one_storage_per_group(tmp_path):
    enc = load_encoder("random:whisper")
    s = to_residual(enc, groups=[[0, 1], [2, 3]], rank=4, share_norms=True)
    s.save(tmp_path / "m")
    back = load_shared(tmp_path / "m")
    assert all(p.device.type == "cpu" for p in back.model.parameters())
    for name in back.spec.matrices:
        for group in back.groups:
            ptrs = {back.residual(i, name).shared.data_ptr() for i in group}
            biases = {getattr(back.residual(i, name).bias, "data_ptr", int)() for i in group}
            assert len(ptrs) == 1 and len(biases) == 1, (name, group)
        assert back.residual(0, name).shared.data_ptr() != back.residual(2, name).shared.data_ptr()
    norms = {id(back.layers[i].final_layer_norm) for i in (0, 1)}
    assert len(norms) == 1
    # every parameter is held once: the unique count is the compact one
    assert back.num_params() == s.num_params()
    # the tied output projection stays tied
    assert back.model.proj_out.weight is back.model.model.decoder.embed_tokens.weight


# peak resident memory of this process (VmHWM, kB). Not getrusage's ru_maxrss: that keeps the
# parent's peak across fork + exec, so a child of a big pytest process starts "at its peak"
_PEAK = textwrap.dedent("""
    import re, sys
    hwm = lambda: int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
    import numpy as np, torch
    torch.set_num_threads(1)
    from stackslim.models import load_encoder
    import stackslim.share
    wave = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    load_encoder("random:wav2vec2").hidden_states([wave])  # lazy imports and kernels paid here
    base = hwm()
    enc = load_encoder(sys.argv[1])
    enc.hidden_states([wave])  # touch every weight: memory-mapped files count once read
    peak = hwm()
    print((peak - base) * 1024, enc.num_params())
""")


def _load_peak(folder) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", _PEAK, str(folder)], capture_output=True, text=True,
                         timeout=300, check=True).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.slow
def test_loading_a_shared_model_peaks_near_its_compact_size(tmp_path):
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                         intermediate_size=2048, conv_dim=(32, 32, 32), conv_kernel=(10, 3, 3),
                         conv_stride=(5, 2, 2), num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=4)
    dense = wrap_model(Wav2Vec2Model(cfg), name="w2v-512")
    dense.save(tmp_path / "dense")
    shared = to_residual(dense, groups=6, rank=8, init="scratch")
    shared.save(tmp_path / "shared")
    dense_bytes, n_dense = _load_peak(tmp_path / "dense")
    shared_bytes, n_shared = _load_peak(tmp_path / "shared")
    assert n_shared < 0.25 * n_dense  # the folder really is compact (one group of six layers)
    saved = 4 * (n_dense - n_shared)  # float32 bytes the shared model does not hold
    # at least half of the saving shows in the peak (activations and allocator slack are the
    # same for both); the loader that built the dense model first peaked above the dense load
    assert shared_bytes < dense_bytes - 0.5 * saved, (shared_bytes, dense_bytes, saved)
    assert shared_bytes < 4 * n_shared + 48e6


def test_encoder_only_load_leaves_the_stored_decoder_unread(tmp_path, monkeypatch):
    """`load_shared(path, decoder=False)` (what ONNX export and timing use) never reads
    decoder.safetensors: the decoder stays zeros, the encoder computes the same states."""
    import numpy as np

    import stackslim.share.load as load_mod
    from stackslim.share.io import DECODER

    enc = load_encoder("random:whisper")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in enc.model.parameters():
            p.normal_(0, 0.02)
    s = to_residual(enc, groups=[[0, 1], [2, 3]], rank=4)
    s.save(tmp_path / "m")
    assert (tmp_path / "m" / DECODER).is_file()
    read = []
    real = load_mod.load_file
    monkeypatch.setattr(load_mod, "load_file", lambda f: read.append(f) or real(f))
    full = load_shared(tmp_path / "m")
    assert any(f.endswith(DECODER) for f in read) and full.has_decoder
    read.clear()
    small = load_shared(tmp_path / "m", decoder=False)
    assert read and not any(f.endswith(DECODER) for f in read) and not small.has_decoder
    dec = small.model.model.decoder
    assert all(float(p.detach().abs().max()) == 0 for p in dec.parameters())
    assert float(full.model.model.decoder.embed_tokens.weight.detach().abs().max()) > 0
    wave = [np.random.default_rng(0).standard_normal(8000).astype(np.float32)]
    with torch.no_grad():
        a, b = full.hidden_states(wave).states[-1], small.hidden_states(wave).states[-1]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
