"""Activation-aware conversion: calibration statistics, lower output error than plain SVD."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from stackslim.models import EncoderError, load_encoder
from stackslim.share import collect_calibration, to_residual
from stackslim.share.aware import damped, fit_residual, output_error
from stackslim.share.convert import diag_k

from sharehelpers import espeak_words


def _noise(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(rng.integers(4000, 9000)))).astype(np.float32)
            for _ in range(n)]


def _held_out_errors(enc, shared, stats) -> dict[tuple[int, str], float]:
    """Output error of every converted map on statistics of clips not used to convert."""
    out = {}
    for i in range(enc.num_layers):
        for name in shared.spec.matrices:
            C = stats.cov(i, name)
            if C is not None:
                out[i, name] = output_error(enc.layers[i].get_submodule(name).weight,
                                            shared.residual(i, name).weight, C)
    return out


def test_calibration_is_the_second_moment_of_valid_frames():
    enc = load_encoder("random:whisper")
    waves = _noise(5, 0)
    stats = collect_calibration(enc, waves, ("fc1", "self_attn.q_proj", "self_attn.k_proj"),
                                batch_size=2)
    rows = []  # the same inputs, one clip at a time (no padding at all)
    h = enc.layers[1].fc1.register_forward_pre_hook(lambda m, a: rows.append(a[0].reshape(-1, a[0].shape[-1])))
    for w in waves:
        enc.hidden_states([w])
    h.remove()
    X = torch.cat(rows).double()  # (n, d_in)
    assert stats.frames[1, "fc1"] == X.shape[0] and stats.clips == 5
    assert torch.allclose(stats.cov(1, "fc1"), X.T @ X / X.shape[0], rtol=1e-5, atol=1e-7)
    assert torch.equal(stats.cov(0, "self_attn.q_proj"), stats.cov(0, "self_attn.k_proj"))
    assert stats.cov(0, "fc2") is None  # not asked for
    with pytest.raises(EncoderError, match="at least one clip"):
        collect_calibration(enc, [], ("fc1",))


def test_fit_residual_is_exact_at_full_rank_and_beats_svd_in_the_output_metric():
    g = torch.Generator().manual_seed(0)
    R = torch.randn(12, 8, generator=g, dtype=torch.float64)
    X = torch.randn(200, 8, generator=g, dtype=torch.float64) * torch.linspace(0.05, 3, 8)
    C = X.T @ X / 200
    Ch, L = damped(C, 8, damp=1e-3)
    A, B, d, _ = fit_residual(R, Ch, L, rank=8, diag=True)
    assert torch.allclose(A @ B + diag_k(d, 12, 8), R, atol=1e-8)
    A, B, d, err = fit_residual(R, Ch, L, rank=2, diag=False)
    assert err == pytest.approx(output_error(R, A @ B, Ch) ** 2 * float(((R @ L) ** 2).sum()))
    U, S, Vh = torch.linalg.svd(R)
    plain = (U[:, :2] * S[:2]) @ Vh[:2]
    assert output_error(R, A @ B, Ch) < output_error(R, plain, Ch)


@pytest.mark.parametrize("diag", [True, False])
def test_aware_beats_svd_on_every_map_of_a_random_model(diag):
    enc = load_encoder("random:whisper")
    calib, held = _noise(24, 1), _noise(12, 2)
    names = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2")
    stats = collect_calibration(enc, held, names)
    errs = {}
    for init in ("svd", "aware"):
        s = to_residual(enc, groups=2, rank=4, diag=diag, init=init, calib=calib)
        assert all("out_error" in c for c in s.conversion)
        errs[init] = _held_out_errors(enc, s, stats)
    assert set(errs["aware"]) == set(errs["svd"]) and len(errs["svd"]) == 4 * 6
    worse = {k: (errs["svd"][k], errs["aware"][k]) for k in errs["svd"] if errs["aware"][k] >= errs["svd"][k]}
    assert not worse, worse
    shared = to_residual(enc, groups=2, rank=4, init="aware", calib=calib)
    assert {c["shared"] for c in shared.conversion} <= {"mean", "fitted", "member 1", "member 3"}
    summary = shared.conversion_summary()["fc1"]
    assert {"mean", "max", "out_mean", "out_max"} <= set(summary)


def test_aware_at_full_rank_is_exact_and_needs_calibration(clips):
    enc = load_encoder("random:wav2vec2")
    s = to_residual(enc, groups=2, rank="full", init="aware", calib=_noise(8, 3))
    assert max(c["rel_error"] for c in s.conversion) < 1e-5
    a, b = enc.hidden_states(clips), s.hidden_states(clips)
    assert max(float((x - y).abs().max()) for x, y in zip(a.states, b.states)) < 1e-4
    with pytest.raises(EncoderError, match="calib=waves"):
        to_residual(enc, groups=2, rank=4, init="aware")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_aware_beats_svd_on_every_map_of_real_whisper_tiny_en():
    enc = load_encoder("whisper-tiny.en")
    words = "yes no up down left right on off stop go zero one two three four five six seven".split()
    calib = espeak_words(words[:12])
    held = espeak_words(words[12:] + ["marvin", "sheila", "forward"])
    stats = collect_calibration(enc, held, ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                            "self_attn.out_proj", "fc1", "fc2"))
    errs = {init: _held_out_errors(enc, to_residual(enc, groups=2, rank=16, init=init, calib=calib,
                                                    init_options={"aware_shared": "mean"}), stats)
            for init in ("svd", "aware")}
    assert len(errs["svd"]) == 4 * 6
    worse = {k: (errs["svd"][k], errs["aware"][k]) for k in errs["svd"] if errs["aware"][k] >= errs["svd"][k]}
    assert not worse, worse
