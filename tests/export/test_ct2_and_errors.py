"""CTranslate2 export of a pruned whisper-tiny.en transcribes as stackslim's decoder does;
bad inputs are one-line errors with exit status 2 and nothing written."""
from __future__ import annotations

import json

import pytest
from exporthelpers import make_folder

from stackslim.cli import main
from stackslim.export import ExportConfig, ExportError, run


def _fails(argv, capsys, match):
    capsys.readouterr()  # what building the inputs printed
    assert main(argv) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip() and "%|" not in l]  # bars aside
    assert len(err) == 1 and err[0].startswith("stackslim export: error:") and match in err[0], err


def test_bad_inputs_are_one_line_errors_and_write_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _fails(["export", str(tmp_path / "empty"), "--out", str(tmp_path / "o1")], capsys, "no config.json")
    assert not (tmp_path / "o1").exists()
    w2v = make_folder("pruned", "wav2vec2", tmp_path)
    _fails(["export", str(w2v), "--out", str(tmp_path / "o2"), "--format", "ct2"], capsys,
           "Whisper models only")
    assert not (tmp_path / "o2").exists()
    (tmp_path / "file").write_text("x")
    _fails(["export", str(w2v), "--out", str(tmp_path / "file")], capsys, "not a folder")
    assert (tmp_path / "file").read_text() == "x"
    _fails(["export", str(w2v), "--out", str(w2v)], capsys, "overlaps the input")
    mimic = make_folder("mimic-linear", "whisper", tmp_path)
    _fails(["export", str(mimic), "--out", str(tmp_path / "o3"), "--format", "ct2"], capsys, "mimic")
    _fails(["export", str(w2v), "--out", str(tmp_path / "o4"), "--opset", "7"], capsys, "--opset")
    shared = make_folder("shared", "whisper", tmp_path)  # materialised for ct2, but no tokenizer
    _fails(["export", str(shared), "--out", str(tmp_path / "o5"), "--format", "ct2"], capsys,
           "no tokenizer.json")
    assert not any(p.name.startswith((".o", "o")) for p in tmp_path.iterdir() if p.name != "file"), \
        sorted(p.name for p in tmp_path.iterdir())


def test_failed_parity_leaves_nothing_and_keeps_an_old_export(tmp_path):
    w2v = make_folder("shared", "wav2vec2", tmp_path)
    run(w2v, tmp_path / "o", ExportConfig())
    before = (tmp_path / "o" / "export.json").read_text()
    with pytest.raises(ExportError, match="tolerance"):
        run(w2v, tmp_path / "o", ExportConfig(tolerance=1e-12))
    assert (tmp_path / "o" / "export.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "shared-wav2vec2"]


def test_cli_prints_what_it_wrote(tmp_path, capsys):
    folder = make_folder("shared", "whisper", tmp_path)
    assert main(["export", str(folder), "--out", str(tmp_path / "o"), "--int8"]) == 0
    out = capsys.readouterr().out
    assert "shared whisper model → onnx" in out and "model.int8.onnx" in out
    assert json.loads((tmp_path / "o" / "export.json").read_text())["config"]["int8"] is True


@pytest.mark.real
def test_ct2_export_of_pruned_tiny_en_transcribes_like_stackslim(tmp_path):
    from stackslim.data.sentences import EVAL_SENTENCES
    from stackslim.data.tts import CLEAR_VOICES, synthesize
    from stackslim.export.ct2 import ct2_transcribe
    from stackslim.heads import ClassifierHead
    from stackslim.models import load_encoder
    from stackslim.models.transcribe import MAX_NEW_TOKENS, load_whisper, log_mel, prompt_ids, transcribe
    from stackslim.prune import save_pruned

    enc = load_encoder("whisper-tiny.en")
    save_pruned(enc, [1], ClassifierHead(enc.hidden_size, 2, proj_size=4), tmp_path / "p")
    res = run(tmp_path / "p", tmp_path / "ct2", ExportConfig(format="ct2", int8=True))
    assert res.parity["max_abs_diff"] <= 1e-4 and res.kind == "pruned"
    assert {"model.bin", "config.json", "tokenizer.json", "preprocessor_config.json",
            "int8/model.bin", "export.json"} <= set(res.files) | {"export.json"}
    assert res.files["int8/model.bin"] < 0.5 * res.files["model.bin"]
    waves = [synthesize(t + ".", CLEAR_VOICES[i % 3], tmp_path / "s.wav")
             for i, t in enumerate(EVAL_SENTENCES[:8])]
    model, tok = load_whisper(tmp_path / "p")  # the same pruned model, in PyTorch
    ours = transcribe(model, tok, waves)
    prompt, _ = prompt_ids(model, tok)
    feats = log_mel(model, waves).numpy()  # the same Hugging Face features for both
    theirs = ct2_transcribe(tmp_path / "ct2", feats, prompt, tok, max_length=len(prompt) + MAX_NEW_TOKENS)
    same = sum(a == b for a, b in zip(ours, theirs))
    assert same >= 0.9 * len(waves), list(zip(ours, theirs))
    assert all(ct2_transcribe(tmp_path / "ct2" / "int8", feats[:2], prompt, tok))  # int8 runs
