"""Safe loading: pickled checkpoints refused unless --allow-pickle, read with weights_only even
then, trust_remote_code never set, half-precision weights computed in float32."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from stackslim.cli import main
from stackslim.models import EncoderError, load_encoder, pickle_allowed


class _Payload:
    """Unpickling this runs a command: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pickled_folder(path, extra=None):
    enc = load_encoder("random:hubert")
    enc.model.save_pretrained(path)
    (path / "model.safetensors").unlink()  # only a pickled checkpoint is left
    sd = dict(enc.model.state_dict())
    if extra:
        sd.update(extra)
    torch.save(sd, path / "pytorch_model.bin")
    return path


@pytest.fixture(scope="module")
def pickled(tmp_path_factory):
    return _pickled_folder(tmp_path_factory.mktemp("pkl") / "model")


@pytest.mark.parametrize("cmd", ["info", "analyze", "prune", "mimic", "share", "study"])
def test_every_model_command_has_allow_pickle(cmd, capsys):
    with pytest.raises(SystemExit):
        main([cmd, "--help"])
    assert "--allow-pickle" in capsys.readouterr().out


def test_pickled_checkpoint_refused_with_reason_then_loaded_with_flag(pickled, tiny_data, tmp_path, capsys):
    assert main(["info", str(pickled)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(pickled) in err
    assert "can execute code" in err and "--allow-pickle" in err
    assert main(["info", str(pickled), "--allow-pickle"]) == 0
    assert "4 layers" in capsys.readouterr().out
    # a whole command, and the flag holds for that command only
    out = tmp_path / "a"
    assert main(["analyze", str(pickled), str(tiny_data), "--out", str(out), "--k", "3", "--allow-pickle"]) == 0
    assert (out / "similarity.json").exists()
    with pytest.raises(EncoderError, match="allow-pickle"):
        load_encoder(pickled)


def test_pickle_allowed_scope_and_explicit_argument(pickled):
    with pickle_allowed():
        assert load_encoder(pickled).num_layers == 4
        with pytest.raises(EncoderError, match="allow-pickle"):
            load_encoder(pickled, allow_pickle=False)  # an explicit False wins
    assert load_encoder(pickled, allow_pickle=True).num_layers == 4


def test_code_in_a_pickle_never_runs_even_with_the_flag(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    folder = _pickled_folder(tmp_path / "evil", extra={"payload": _Payload(marker)})
    capsys.readouterr()
    assert main(["info", str(folder), "--allow-pickle"]) == 2
    err = capsys.readouterr().err
    assert "objects other than tensors" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


def test_trust_remote_code_is_never_passed(pickled, monkeypatch):
    import transformers

    seen = []
    for cls in (transformers.AutoConfig, transformers.AutoModel):
        real = cls.from_pretrained.__func__

        def spy(c, *a, _real=real, **k):
            seen.append(k)
            return _real(c, *a, **k)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    load_encoder(pickled, allow_pickle=True)
    assert seen and not any(k.get("trust_remote_code") for k in seen)
    assert all(k.get("local_files_only") for k in seen)


def test_whisper_transcription_loader_refuses_pickle(tmp_path):
    from stackslim.models.transcribe import load_whisper

    enc = load_encoder("random:whisper")
    folder = tmp_path / "w"
    enc.model.save_pretrained(folder)
    sd = enc.model.state_dict()
    (folder / "model.safetensors").unlink()
    torch.save(sd, folder / "pytorch_model.bin")
    with pytest.raises(EncoderError, match=str(folder.name)):
        load_whisper(folder)


@pytest.mark.parametrize("family", ["wav2vec2", "whisper"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_model_folder_runs_in_float32(family, dtype, tmp_path):
    ref = load_encoder(f"random:{family}")
    ref.model.to(dtype).save_pretrained(tmp_path / "m")
    with pytest.warns(UserWarning, match="converted to float32"):
        enc = load_encoder(tmp_path / "m")
    assert {p.dtype for p in enc.model.parameters()} == {torch.float32}
    wave = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    st = enc.hidden_states([wave])
    assert all(s.dtype == torch.float32 and torch.isfinite(s).all() for s in st.states)
