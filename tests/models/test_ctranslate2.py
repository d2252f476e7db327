"""CTranslate2 model.bin reader and the ct2 -> Hugging Face Whisper conversion.

Fast tests write their own model.bin with an independent writer (`write_ct2`, straight from the
format in shared/RESOURCES.md) and a tiny random Whisper; `real` tests convert the bundled models.
"""
from __future__ import annotations

import functools
import json
import struct

import numpy as np
import pytest
import torch

from stackslim.models.base import EncoderError
from stackslim.models.ctranslate2 import ct2_to_hf_whisper, read_ct2_bin

DTYPE_IDS = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2,
             np.dtype("int32"): 3, np.dtype("float16"): 4}


class BF16:
    """Marks a float32 array to be written as bfloat16 (its high 16 bits)."""

    def __init__(self, a: np.ndarray):
        self.a = np.asarray(a, dtype=np.float32)


def _str(s: str) -> bytes:
    b = s.encode() + b"\0"
    return struct.pack("<H", len(b)) + b


def write_ct2(variables: dict, aliases: dict | None = None, spec: str = "WhisperSpec",
              revision: int = 3, version: int = 6) -> bytes:
    """model.bin bytes: u32 version | str spec | u32 rev | vars | aliases (all little-endian)."""
    out = [struct.pack("<I", version), _str(spec), struct.pack("<II", revision, len(variables))]
    for name, a in variables.items():
        if isinstance(a, BF16):
            raw, dt, shape = (a.a.view(np.uint32) >> 16).astype("<u2").tobytes(), 5, a.a.shape
        else:
            a = np.asarray(a)
            raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
            dt, shape = DTYPE_IDS[a.dtype], a.shape
        out += [_str(name), struct.pack("<B", len(shape)), struct.pack(f"<{len(shape)}I", *shape),
                struct.pack("<BI", dt, len(raw)), raw]
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for k, t in aliases.items():
        out += [_str(k), _str(t)]
    return b"".join(out)


def _sample_vars() -> dict:
    rng = np.random.default_rng(0)
    return {
        "a/f32": rng.standard_normal((3, 4)).astype(np.float32),
        "a/i8": np.array([[-128, 0, 127]], dtype=np.int8),
        "a/i16": np.array([-300, 7], dtype=np.int16),
        "a/i32": np.arange(6, dtype=np.int32).reshape(1, 2, 3),
        "a/f16": rng.standard_normal(5).astype(np.float16),
        "a/bf16": BF16(np.array([1.5, -2.0, 0.15625, 2.0**100], dtype=np.float32)),
        "a/num_heads": np.array(6, dtype=np.int16),  # 0-d scalar
    }


# -- the format ------------------------------------------------------------------------------
def test_roundtrip_every_dtype_bytes_path_and_parts(tmp_path):
    raw = write_ct2(_sample_vars(), {"a/alias": "a/f32"}, spec="TestSpec", revision=7)
    (tmp_path / "model.bin").write_bytes(raw)
    cut = 37  # split mid-header on purpose: parts are one byte stream
    (tmp_path / "p1").write_bytes(raw[:cut])
    (tmp_path / "p2").write_bytes(raw[cut:])
    want = _sample_vars()
    for src in (raw, tmp_path / "model.bin", [tmp_path / "p1", tmp_path / "p2"]):
        spec, rev, v, aliases = read_ct2_bin(src)
        assert (spec, rev, aliases) == ("TestSpec", 7, {"a/alias": "a/f32"})
        assert list(v) == list(want)
        for k, a in want.items():
            a = a.a if isinstance(a, BF16) else a
            assert v[k].dtype == (np.float32 if k == "a/bf16" else a.dtype), k
            assert v[k].shape == a.shape and np.array_equal(v[k], a), k
    assert v["a/num_heads"].ndim == 0 and int(v["a/num_heads"]) == 6


def test_int8_and_int16_scales_dequantised():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 6)).astype(np.float32)
    scale = (127.0 / np.abs(w).max(1)).astype(np.float32)  # CTranslate2: one scale per row
    q = np.round(w * scale[:, None]).astype(np.int8)
    w16 = rng.standard_normal(5).astype(np.float32)
    s16 = np.float32(2**10 / np.abs(w16).max())  # int16: one scalar
    raw = write_ct2({"l/weight": q, "l/weight_scale": scale,
                     "m/weight": np.round(w16 * s16).astype(np.int16), "m/weight_scale": s16,
                     "l/bias": np.zeros(4, np.float32)})
    _, _, v, _ = read_ct2_bin(raw)
    assert set(v) == {"l/weight", "m/weight", "l/bias"}
    assert v["l/weight"].dtype == np.float32
    np.testing.assert_allclose(v["l/weight"], w, atol=np.abs(w).max() / 127)
    np.testing.assert_allclose(v["m/weight"], w16, atol=1 / s16)
    _, _, raw_v, _ = read_ct2_bin(raw, dequantize=False)
    assert raw_v["l/weight"].dtype == np.int8 and "l/weight_scale" in raw_v


@pytest.mark.parametrize("cut", [2, 9, 30, 60, -40, -3])
def test_truncated_file_is_one_line_error_naming_it(tmp_path, cut):
    raw = write_ct2(_sample_vars(), {"a/alias": "a/f32"})
    f = tmp_path / "model.bin"
    f.write_bytes(raw[:cut])
    with pytest.raises(EncoderError, match="truncated") as e:
        read_ct2_bin(f)
    assert str(f) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("mutate, why", [
    (lambda r: struct.pack("<I", 5) + r[4:], "version 5"),
    (lambda r: r + b"\0\0", "extra bytes"),
    (lambda r: r.replace(struct.pack("<BI", 0, 48), struct.pack("<BI", 9, 48), 1), "dtype id 9"),
    (lambda r: r.replace(struct.pack("<BI", 0, 48), struct.pack("<BI", 0, 44), 1), "44 bytes"),
])
def test_corrupt_file_is_one_line_error_naming_it(tmp_path, mutate, why):
    f = tmp_path / "model.bin"
    f.write_bytes(mutate(write_ct2(_sample_vars())))
    with pytest.raises(EncoderError, match=why) as e:
        read_ct2_bin(f)
    assert str(f) in str(e.value) and "\n" not in str(e.value)


# -- Whisper conversion on a tiny random model -------------------------------------------------
EN_SPECIAL = {50256: "<|endoftext|>", 50257: "<|startoftranscript|>", 50258: "<|en|>",
              50357: "<|translate|>", 50358: "<|transcribe|>", 50360: "<|startofprev|>",
              50362: "<|notimestamps|>"}
MULTI_SPECIAL = {50257: "<|endoftext|>", 50258: "<|startoftranscript|>", 50259: "<|en|>",
                 50260: "<|de|>", 50358: "<|translate|>", 50359: "<|transcribe|>",
                 50361: "<|startofprev|>", 50363: "<|notimestamps|>"}


def tiny_hf_whisper(vocab_size: int = 51864):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    cfg = WhisperConfig(vocab_size=vocab_size, d_model=16, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=4, encoder_ffn_dim=32,
                        decoder_ffn_dim=24, max_target_positions=64)
    model = WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # HF initialises biases to zero: make every tensor distinctive
        for n, p in model.named_parameters():
            if n.endswith("bias") or "layer_norm" in n:
                p.add_(0.1 * torch.randn_like(p))
    return model


def hf_to_ct2_vars(model) -> dict[str, np.ndarray]:
    """The inverse mapping (what CTranslate2's converter writes), independent of the code."""
    sd = {k: t.detach().numpy() for k, t in model.state_dict().items()}
    c = model.config
    v: dict[str, np.ndarray] = {}

    def lin(ct2, hf, bias=True):
        v[ct2 + "/weight"] = sd[hf + ".weight"]
        if bias:
            v[ct2 + "/bias"] = sd[hf + ".bias"]

    def ln(ct2, hf):
        v[ct2 + "/gamma"], v[ct2 + "/beta"] = sd[hf + ".weight"], sd[hf + ".bias"]

    def fused(ct2, hfs):
        v[ct2 + "/weight"] = np.concatenate([sd[h + ".weight"] for h in hfs])
        v[ct2 + "/bias"] = np.concatenate([sd.get(h + ".bias", np.zeros(c.d_model, np.float32))
                                           for h in hfs])

    for k in (1, 2):
        lin(f"encoder/conv{k}", f"model.encoder.conv{k}")
    for side, n in (("encoder", c.encoder_layers), ("decoder", c.decoder_layers)):
        m = f"model.{side}"
        for i in range(n):
            cl, hl = f"{side}/layer_{i}", f"{m}.layers.{i}"
            fused(f"{cl}/self_attention/linear_0", [f"{hl}.self_attn.{p}_proj" for p in "qkv"])
            lin(f"{cl}/self_attention/linear_1", f"{hl}.self_attn.out_proj")
            ln(f"{cl}/self_attention/layer_norm", f"{hl}.self_attn_layer_norm")
            if side == "decoder":
                lin(f"{cl}/attention/linear_0", f"{hl}.encoder_attn.q_proj")
                fused(f"{cl}/attention/linear_1", [f"{hl}.encoder_attn.{p}_proj" for p in "kv"])
                lin(f"{cl}/attention/linear_2", f"{hl}.encoder_attn.out_proj")
                ln(f"{cl}/attention/layer_norm", f"{hl}.encoder_attn_layer_norm")
            lin(f"{cl}/ffn/linear_0", f"{hl}.fc1")
            lin(f"{cl}/ffn/linear_1", f"{hl}.fc2")
            ln(f"{cl}/ffn/layer_norm", f"{hl}.final_layer_norm")
        ln(f"{side}/layer_norm", f"{m}.layer_norm")
        v[f"{side}/position_encodings/encodings"] = sd[f"{m}.embed_positions.weight"]
    v["encoder/num_heads"] = np.array(c.encoder_attention_heads, np.int16)
    v["decoder/num_heads"] = np.array(c.decoder_attention_heads, np.int16)
    v["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    for name, val, dt in (("activation", 3, np.int8), ("alibi", 0, np.int8),
                          ("alignment_heads", 1, np.int16), ("alignment_layer", -1, np.int16),
                          ("pre_norm", 1, np.int8), ("scale_embeddings", 0, np.int8),
                          ("start_from_zero_embedding", 0, np.int8)):
        v[f"decoder/{name}"] = np.array(val, dt)
    return v


def write_ct2_whisper(folder, variables, vocab_size, fmt="txt", aliases=None):
    folder.mkdir(parents=True, exist_ok=True)
    if aliases is None:
        aliases = {"decoder/projection/weight": "decoder/embeddings/weight"}
    (folder / "model.bin").write_bytes(write_ct2(variables, aliases))
    special = EN_SPECIAL if vocab_size == 51864 else MULTI_SPECIAL
    vocab = [special.get(i, f"tok{i}") for i in range(vocab_size)]
    if fmt == "txt":
        (folder / "vocabulary.txt").write_text("\n".join(vocab) + "\n")
    else:
        (folder / "vocabulary.json").write_text(json.dumps(vocab))
    (folder / "config.json").write_text(json.dumps(
        {"suppress_ids": [1, 2], "suppress_ids_begin": [220, min(special)],
         "lang_ids": [i for i, t in special.items() if t in ("<|en|>", "<|de|>")],
         "alignment_heads": [[1, 0]]}))
    return folder


@pytest.mark.parametrize("vocab_size, fmt", [(51864, "txt"), (51865, "json")])
def test_tiny_whisper_roundtrip_exact(tmp_path, vocab_size, fmt):
    ref = tiny_hf_whisper(vocab_size)
    folder = write_ct2_whisper(tmp_path / "ct2", hf_to_ct2_vars(ref), vocab_size, fmt)
    model = ct2_to_hf_whisper(folder)
    got, want = model.state_dict(), ref.state_dict()
    assert set(got) == set(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight
    for key in ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
                "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim", "num_mel_bins",
                "max_source_positions", "max_target_positions", "vocab_size"):
        assert getattr(model.config, key) == getattr(ref.config, key), key
    feats = torch.randn(1, 80, 3000)
    with torch.no_grad():
        assert torch.equal(model.model.encoder(feats).last_hidden_state,
                           ref.model.encoder(feats).last_hidden_state)
    g = model.generation_config
    ids = (g.decoder_start_token_id, g.no_timestamps_token_id, g.eos_token_id)
    if vocab_size == 51864:
        assert ids == (50257, 50362, 50256) and g.is_multilingual is False
    else:
        assert ids == (50258, 50363, 50257)
        assert g.is_multilingual and g.lang_to_id == {"<|en|>": 50259, "<|de|>": 50260}
        assert g.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert g.begin_suppress_tokens == [220, g.eos_token_id]


def test_tiny_whisper_float16_bf16_and_int8(tmp_path):
    ref = tiny_hf_whisper()
    v = hf_to_ct2_vars(ref)
    for k in list(v):
        if k.endswith("linear_0/weight") and "ffn" in k:  # int8 with per-row scales
            scale = (127.0 / np.abs(v[k]).max(1)).astype(np.float32)
            v[k], v[k + "_scale"] = np.round(v[k] * scale[:, None]).astype(np.int8), scale
        elif k.endswith("gamma"):
            v[k] = BF16(v[k])
        elif v[k].dtype == np.float32:
            v[k] = v[k].astype(np.float16)
    model = ct2_to_hf_whisper(write_ct2_whisper(tmp_path, v, 51864))
    for k, t in ref.state_dict().items():
        tol = 0.02 if "fc1.weight" in k else 2e-3  # int8: |w|max / 127 per row
        torch.testing.assert_close(model.state_dict()[k], t, atol=tol, rtol=0.01, msg=k)


@pytest.mark.parametrize("edit, why", [
    (lambda v: v.update({"encoder/extra/weight": np.ones(2, np.float32)}), "left unmapped"),
    (lambda v: v.update({"decoder/new_scalar": np.array(1, np.int8)}), "left unmapped"),
    (lambda v: v.pop("decoder/layer_1/ffn/linear_1/bias"), "is missing"),
    (lambda v: v.pop("decoder/num_heads"), "not a CTranslate2 Whisper model"),
    (lambda v: v["encoder/layer_0/self_attention/linear_0/bias"].__setitem__(20, 1.0),
     "non-zero K"),
    (lambda v: v.update({"decoder/activation": np.array(1, np.int8)}), "activation = 1"),
])
def test_whisper_mapping_errors(tmp_path, edit, why):
    v = hf_to_ct2_vars(tiny_hf_whisper())
    edit(v)
    folder = write_ct2_whisper(tmp_path, v, 51864)
    with pytest.raises(EncoderError, match=why) as e:
        ct2_to_hf_whisper(folder)
    assert str(folder / "model.bin") in str(e.value) and "\n" not in str(e.value)


def test_not_a_whisper_folder(tmp_path):
    with pytest.raises(EncoderError, match="not a CTranslate2 model") as e:
        ct2_to_hf_whisper(tmp_path)  # empty folder
    assert str(tmp_path) in str(e.value)
    with pytest.raises(EncoderError, match="not a folder"):
        ct2_to_hf_whisper(tmp_path / "nope")
    (tmp_path / "model.bin").write_bytes(write_ct2({"x": np.zeros(2, np.float32)},
                                                   spec="TransformerSpec"))
    with pytest.raises(EncoderError, match="not a Whisper model .*TransformerSpec"):
        ct2_to_hf_whisper(tmp_path)
    raw = write_ct2(hf_to_ct2_vars(tiny_hf_whisper()))
    (tmp_path / "model.bin").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(EncoderError, match="truncated"):
        ct2_to_hf_whisper(tmp_path)


# -- the bundled real models -------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _converted(name: str):
    from stackslim.models.bundled import bundled_files

    parts, side = bundled_files(name)
    return ct2_to_hf_whisper(parts + side)


@pytest.mark.real
@pytest.mark.parametrize("name, n_vars, n_params, layers, d, heads, multi", [
    ("whisper-tiny.en", 148, 37_760_256, 4, 384, 6, False),
    ("whisper-base", 214, 72_593_920, 6, 512, 8, True),
])
def test_bundled_conversion_is_complete(name, n_vars, n_params, layers, d, heads, multi):
    from stackslim.models.bundled import bundled_files

    parts, _ = bundled_files(name)
    _, _, v, aliases = read_ct2_bin(parts)
    assert len(v) == n_vars
    assert aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    model = _converted(name)  # raises on any unmapped variable or missing HF key
    assert sum(p.numel() for p in model.parameters()) == n_params
    c = model.config
    assert (c.encoder_layers, c.decoder_layers, c.d_model, c.encoder_attention_heads) == (
        layers, layers, d, heads)
    assert all(p.dtype == torch.float32 and not p.is_meta for p in model.parameters())
    g = model.generation_config
    assert g.is_multilingual is multi
    assert g.decoder_start_token_id == (50258 if multi else 50257)


@pytest.mark.real
@pytest.mark.parametrize("name", ["whisper-tiny.en", "whisper-base"])
def test_encoder_matches_ctranslate2(tmp_path, name):
    ct2 = pytest.importorskip("ctranslate2")
    from stackslim.models.bundled import bundled_files
    from stackslim.models.transcribe import log_mel

    parts, side = bundled_files(name)
    with open(tmp_path / "model.bin", "wb") as f:  # ctranslate2 wants one model.bin
        for p in parts:
            f.write(p.read_bytes())
    for p in side:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    model = _converted(name)
    t = np.arange(32000) / 16000
    wave = (0.1 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t)
            + 0.01 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
    feats = log_mel(model, [wave])  # (1, 80, 3000)
    with torch.no_grad():
        ours = model.model.encoder(feats).last_hidden_state.numpy()
    ref = ct2.models.Whisper(str(tmp_path), device="cpu", compute_type="float32", intra_threads=2)
    theirs = np.array(ref.encode(ct2.StorageView.from_array(np.ascontiguousarray(feats.numpy())),
                                 to_cpu=True))
    err = float(np.abs(ours - theirs).max())
    print(f"{name}: max |ours - ctranslate2| = {err:.2e} (ctranslate2 {ct2.__version__})")
    assert ours.shape == theirs.shape and err < 1e-3
