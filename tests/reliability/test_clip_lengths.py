"""Clips of unusual length or values: refused (or, for Whisper, padded) with one line that names
the file, before anything is allocated for them; inputs are left byte-for-byte unchanged.

Bounds (models/base.py `Encoder.check_lengths`): wav2vec2-like models take at least their CNN's
receptive field (400 samples for the standard CNN, 40 for random:wav2vec2) and at most
`wav2vec2_like.MAX_SECONDS` = 60 s; Whisper at most 30 s, and zero-pads a clip shorter than one
mel frame (160 samples), as it pads every clip to 30 s itself.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from relhelpers import FAST, finite_json

from stackslim.cli import main
from stackslim.data import Wave, write_wav
from stackslim.models import load_encoder
from stackslim.models.base import EncoderError, as_waves
from stackslim.models.wav2vec2_like import MAX_SECONDS


def tree_digest(root: Path) -> dict[str, str]:
    """Path -> sha256 of every file under root: 'unchanged' means equal digests."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def fails(capsys, argv: list[str], *named: str) -> str:
    """`main(argv)` exits 2 with one stderr line that names each of `named`."""
    capsys.readouterr()
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("stackslim ")]
    assert len(err) == 1, err
    for n in named:
        assert str(n) in err[0], (n, err[0])
    return err[0]


@pytest.fixture
def data(tiny_data, tmp_path) -> Path:
    """A private copy of the 12-clip tone set (manifest with relative paths)."""
    return Path(shutil.copytree(tiny_data, tmp_path / "data"))


def _replace(data: Path, wave: np.ndarray, subtype: str = "PCM_16") -> Path:
    """Overwrite one clip of the set with `wave`; returns its path."""
    clip = sorted((data / "w1").glob("*.wav"))[0]
    sf.write(str(clip), wave, 16000, subtype=subtype)
    return clip


def _analyze(model: str, data: Path, out: Path) -> list[str]:
    return ["analyze", model, str(data), "--out", str(out), *FAST["analyze"]]


def test_wav2vec2_clip_shorter_than_the_receptive_field(data, tmp_path, capsys):
    enc = load_encoder("random:wav2vec2")
    assert enc.min_samples == 40  # conv kernels (10, 3, 3), strides (5, 2, 2)
    clip = _replace(data, 0.1 * np.ones(enc.min_samples - 1, np.float32))
    before = tree_digest(data)
    out = tmp_path / "out"
    err = fails(capsys, _analyze("random:wav2vec2", data, out), clip, "39 samples", "40 samples")
    assert "receptive field" in err
    assert tree_digest(data) == before
    assert not (out / "similarity.json").exists()


def test_standard_wav2vec2_cnn_needs_400_samples():
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from stackslim.models.wav2vec2_like import Wav2Vec2LikeEncoder

    cfg = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                         conv_dim=(4,) * 7)
    assert Wav2Vec2LikeEncoder(Wav2Vec2Model(cfg)).min_samples == 400  # 25 ms


def test_wav2vec2_clip_longer_than_the_maximum(data, tmp_path, capsys):
    clip = _replace(data, np.zeros(MAX_SECONDS * 16000 + 16000, np.float32))
    before = tree_digest(data)
    out = tmp_path / "out"
    err = fails(capsys, _analyze("random:wav2vec2", data, out), clip, f"{MAX_SECONDS} s")
    assert "61.00 s" in err
    assert tree_digest(data) == before
    assert not (out / "similarity.json").exists()


def test_whisper_clip_over_30_s_names_the_file(data, tmp_path, capsys):
    clip = _replace(data, np.zeros(31 * 16000, np.float32))
    before = tree_digest(data)
    out = tmp_path / "out"
    err = fails(capsys, _analyze("random:whisper", data, out), clip, "30 s")
    assert "of the batch" not in err  # the file, not the position in the batch
    assert tree_digest(data) == before
    assert not (out / "similarity.json").exists()


def test_whisper_pads_a_clip_shorter_than_one_mel_frame(data, tmp_path, recwarn):
    clip = _replace(data, 0.1 * np.ones(96, np.float32))  # 6 ms
    out = tmp_path / "out"
    assert main(_analyze("random:whisper", data, out)) == 0
    said = [str(w.message) for w in recwarn if "zero-padded" in str(w.message)]
    assert said and str(clip) in said[0] and "160 samples" in said[0]
    assert finite_json(out / "similarity.json")


@pytest.mark.parametrize("model", ["random:wav2vec2", "random:whisper"])
def test_huge_valued_wav_names_the_file(model, data, tmp_path, capsys):
    """Float samples near the float32 limit pass the reader (they are finite) but overflow in
    the front end (normalisation, log-mel): the error names the file, not 'hidden states'."""
    rng = np.random.default_rng(0)
    clip = _replace(data, np.clip(rng.standard_normal(8000) * 3e38, -3e38, 3e38).astype(np.float32), "FLOAT")
    before = tree_digest(data)
    out = tmp_path / "out"
    err = fails(capsys, _analyze(model, data, out), clip, "NaN or inf")
    assert "3e+38" in err
    assert tree_digest(data) == before
    assert not (out / "similarity.json").exists()


@pytest.mark.parametrize("model", ["random:wav2vec2", "random:whisper"])
def test_every_entry_point_names_the_file(model, tmp_path):
    """hidden_states, front_end and features (what mimic, prune's stack runner and the memo
    call) refuse a bad clip by its file; a clip without a file is named by its position."""
    enc = load_encoder(model)
    ok = Wave.of(np.zeros(1600, np.float32), tmp_path / "ok.wav")
    long = Wave.of(np.zeros(enc.max_samples + 1, np.float32), tmp_path / "long.wav")
    for call in (enc.hidden_states, enc.front_end, enc.features):
        with pytest.raises(EncoderError, match=str(tmp_path / "long.wav")):
            call(as_waves([ok, long]))
    with pytest.raises(EncoderError, match="clip 1 of the batch"):
        enc.hidden_states([np.zeros(1600, np.float32), np.zeros(enc.max_samples + 1, np.float32)])
    with pytest.raises(EncoderError, match=str(tmp_path / "nan.wav")):
        enc.hidden_states([ok, Wave.of(np.full(1600, np.nan, np.float32), tmp_path / "nan.wav")])


def test_the_longest_clip_taken_runs_and_a_wave_keeps_its_samples(tmp_path):
    """The bounds are inclusive; a Wave is its samples (the states equal a plain array's)."""
    enc = load_encoder("random:whisper")
    w = np.random.default_rng(0).standard_normal(enc.max_samples).astype(np.float32) * 0.1
    hs = enc.hidden_states([Wave.of(w, tmp_path / "a.wav")])
    assert int(hs.lengths[0]) == enc.max_frames
    plain = load_encoder("random:wav2vec2")
    short = np.random.default_rng(1).standard_normal(plain.min_samples).astype(np.float32)
    a = plain.hidden_states([Wave.of(short, tmp_path / "b.wav")])
    b = plain.hidden_states([short])
    assert all(torch.equal(x, y) for x, y in zip(a.states, b.states))


def test_dataset_load_returns_a_wave_that_names_its_file(tmp_path):
    from stackslim.data import clip_name, from_folder

    write_wav(tmp_path / "d" / "yes" / "a.wav", np.zeros(800, np.float32))
    ds = from_folder(tmp_path / "d")
    w = ds.load(0)
    assert isinstance(w, Wave) and w.path == ds.clips[0].path and clip_name(w) == str(ds.clips[0].path)
    assert getattr(w[:10], "path", None) is None and getattr(w * 2, "path", None) is None  # derived: no file
