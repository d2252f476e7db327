"""`load_encoder` reads every folder stackslim writes (pruned, shared, mimic); pruned folders
carry a feature-extractor config; `stackslim info` works on each."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stackslim.cli import main
from stackslim.heads import ClassifierHead
from stackslim.mimic import MimicModel
from stackslim.models import load_encoder
from stackslim.prune import save_pruned
from stackslim.share import to_residual


@pytest.fixture
def clips():
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (8000, 5600)]


def _diff(a, b) -> float:
    m = a.mask()
    return float((a.states[-1][m] - b.states[-1][m]).abs().max())


@pytest.mark.parametrize("family", ["whisper", "wav2vec2", "wavlm"])
def test_load_encoder_reads_shared_mimic_and_pruned_folders(family, clips, tmp_path, capsys):
    enc = load_encoder(f"random:{family}")
    torch.manual_seed(0)
    head = ClassifierHead(enc.hidden_size, 3, proj_size=8)
    shared = to_residual(enc, groups=2, rank=4)
    shared.save(tmp_path / "shared")
    mimic = MimicModel.from_teacher(enc, head, "transformer", 1, 32, positions=True).eval()
    mimic.save(tmp_path / "mimic")
    save_pruned(enc, [1], head, tmp_path / "pruned")

    back = load_encoder(tmp_path / "shared")
    assert back.groups == shared.groups and _diff(back.hidden_states(clips), shared.hidden_states(clips)) == 0
    m = load_encoder(tmp_path / "mimic")
    assert m.num_layers == 1 and m.family == enc.family
    hs = m.hidden_states(clips)
    with torch.inference_mode():
        torch.testing.assert_close(m.mimic.head(hs.states[-1], hs.lengths), mimic(clips), atol=1e-6, rtol=1e-5)
    assert m.num_params() == mimic.num_params("front_end") + mimic.num_params("stack")
    p = load_encoder(tmp_path / "pruned")
    assert p.num_layers == enc.num_layers - 1
    for d in ("shared", "mimic", "pruned"):
        assert main(["info", str(tmp_path / d)]) == 0
    out = capsys.readouterr().out
    assert out.count(f"family {enc.family}") == 3 and "1 layers" in out


@pytest.mark.parametrize("family", ["whisper", "wav2vec2", "wav2vec2-stable"])
def test_pruned_folder_has_a_feature_extractor(family, clips, tmp_path):
    from transformers import AutoFeatureExtractor

    enc = load_encoder(f"random:{family}")
    save_pruned(enc, [1], ClassifierHead(enc.hidden_size, 2, proj_size=4), tmp_path / "p")
    fe = AutoFeatureExtractor.from_pretrained(tmp_path / "p")
    assert fe.sampling_rate == 16000
    if family == "whisper":
        assert type(fe).__name__ == "WhisperFeatureExtractor"
        assert fe.feature_size == enc.model.config.num_mel_bins
    else:
        assert type(fe).__name__ == "Wav2Vec2FeatureExtractor" and fe.do_normalize
        x = fe(clips[0], sampling_rate=16000, return_tensors="pt").input_values[0].numpy()
        np.testing.assert_allclose(x, (clips[0] - clips[0].mean()) / np.sqrt(clips[0].var() + 1e-7), atol=1e-4)
        assert fe.return_attention_mask == (family == "wav2vec2-stable")


def test_unknown_folder_still_fails_with_one_line(tmp_path):
    from stackslim.models import EncoderError

    (tmp_path / "x").mkdir()
    with pytest.raises(EncoderError, match="stackslim_share.json or mimic.json"):
        load_encoder(tmp_path / "x")


@pytest.mark.real
def test_pruned_whisper_transcribes_with_the_transformers_pipeline(tmp_path):
    """The plain `transformers` pipeline runs on a pruned folder (tokenizer, feature extractor
    and generation config carried along) and decodes as stackslim's own greedy decoder does."""
    from transformers import pipeline

    from stackslim.data.tts import CLEAR_VOICES, synthesize
    from stackslim.models.transcribe import load_whisper, transcribe

    enc = load_encoder("whisper-tiny.en")
    save_pruned(enc, [3], ClassifierHead(enc.hidden_size, 2, proj_size=4), tmp_path / "p")
    asr = pipeline("automatic-speech-recognition", model=str(tmp_path / "p"), device="cpu")
    waves = [synthesize(t, CLEAR_VOICES[1], tmp_path / "s.wav") for t in
             ("The quick brown fox jumps over the lazy dog.", "Please call me tomorrow morning.")]
    got = [asr({"raw": w, "sampling_rate": 16000})["text"].strip() for w in waves]
    model, tok = load_whisper(tmp_path / "p")
    assert model.config.encoder_layers == 3
    assert got == transcribe(model, tok, waves) and all(got)
