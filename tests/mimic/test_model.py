"""MimicModel: audio in, logits out; batching; save/load round trip; parameter accounting."""
from __future__ import annotations

import json

import pytest
import torch

from stackslim.heads import ClassifierHead
from stackslim.mimic import MimicError, MimicModel, front_end_copy
from stackslim.models import load_encoder
from stackslim.evaluate.latency import bytes_on_disk

FAMILIES = ["whisper", "wav2vec2", "wav2vec2-stable"]


@pytest.fixture(scope="module")
def encoders():
    return {f: load_encoder(f"random:{f}") for f in FAMILIES}


def _model(enc, kind="linear", layers=1, positions=False, z=32):
    head = ClassifierHead(enc.hidden_size, 3)
    return MimicModel.from_teacher(enc, head, kind, layers, z, positions=positions,
                                   class_names=["a", "b", "c"]).eval()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["linear", "transformer"])
def test_audio_to_logits_and_batching(encoders, waves, family, kind):
    enc = encoders[family]
    model = _model(enc, kind, layers=2)
    with torch.no_grad():
        h, n = model.features(waves)
        assert h.shape[0] == 3 and h.shape[2] == enc.hidden_size
        outs = model.mimic_states(h, n)
        assert len(outs) == 2 and all(o.shape == h.shape for o in outs)
        logits = model(waves)
        assert logits.shape == (3, 3)
        for b, w in enumerate(waves):  # a clip alone = the clip in a padded batch
            torch.testing.assert_close(model([w])[0], logits[b], atol=1e-4, rtol=1e-4)
    assert model.predict(waves[:1])[0] in ("a", "b", "c")
    hs = model.hidden_states(waves)  # what a Whisper decoder reads in the study's WER step
    assert len(hs.states) == 3 and hs.lengths.tolist() == n.tolist()
    torch.testing.assert_close(hs.states[-1], outs[-1])


@pytest.mark.parametrize("family", FAMILIES)
def test_features_match_the_teacher(encoders, waves, family):
    """The front end is the teacher's: the same pre-positional features, no stack, frozen."""
    enc = encoders[family]
    front = front_end_copy(enc)
    assert front.num_layers == 0 and enc.num_layers == 4
    assert not any(p.requires_grad for p in front.parameters())
    with torch.no_grad():
        a, na = enc.features(waves)
        b, nb = front.features(waves)
    torch.testing.assert_close(a, b)
    assert na.tolist() == nb.tolist()
    if family == "whisper":  # the encoder alone: no decoder is carried along
        assert not hasattr(front.model, "decoder")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind,positions", [("linear", False), ("transformer", True)])
def test_save_load_round_trip_is_identical(encoders, waves, tmp_path, family, kind, positions):
    model = _model(encoders[family], kind, layers=2, positions=positions)
    for p in model.layers.parameters():  # make sure non-default weights travel
        p.data.add_(0.01 * torch.randn_like(p))
    model.save(tmp_path / "m")
    again = MimicModel.load(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(model(waves), again(waves), atol=0, rtol=0)
    assert again.num_params() == model.num_params()
    assert again.class_names == ["a", "b", "c"] and again.kind == kind
    assert again.positions == positions and len(again.layers) == 2
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["mimic.json", "model.safetensors"]


def test_parameter_accounting_by_hand(encoders, tmp_path):
    enc = encoders["whisper"]  # d = 64, 80 mel bins, conv kernel 3
    model = _model(enc, "linear", layers=1, z=32)
    d, z, mels = 64, 32, 80
    front = (mels * d * 3 + d) + (d * d * 3 + d)  # conv1, conv2 (positions not used)
    stack = 2 * d * z + 3 * z + d
    head = (d * 256 + 256) + (256 * 3 + 3)
    assert model.num_params("front_end") == front
    assert model.num_params("stack") == stack
    assert model.num_params("head") == head
    assert model.num_params() == front + stack + head
    with_pos = _model(enc, "linear", layers=1, z=32, positions=True)
    assert with_pos.num_params("front_end") == front + 1500 * d  # Whisper's table of positions
    # bytes on disk: float32 tensors plus a small header and the JSON config
    model.save(tmp_path / "m")
    n_bytes = bytes_on_disk(tmp_path / "m")
    assert 4 * model.num_params() < n_bytes < 4 * model.num_params() + 64_000


def test_load_errors(tmp_path, encoders):
    with pytest.raises(MimicError, match="not a mimic model folder"):
        MimicModel.load(tmp_path)
    model = _model(encoders["wav2vec2"])
    model.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "mimic.json").read_text())
    cfg["hidden"] = 48  # config and weights disagree
    (tmp_path / "m" / "mimic.json").write_text(json.dumps(cfg))
    with pytest.raises(MimicError, match="shape"):
        MimicModel.load(tmp_path / "m")
    with pytest.raises(MimicError, match="1 or 2"):
        MimicModel(model.front, torch.nn.ModuleList(), model.head, "linear", 32)
