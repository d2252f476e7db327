"""Bad input through the `stackslim` command: one line naming the input, exit status 2, no
results file; convertible input (stereo, other sample rates, silence) runs with a warning.

The unit tests next to each module check the error types; these check what a user sees.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from relhelpers import FAST, RESULT_FILE, finite_json

from stackslim.cli import main
from stackslim.data import write_wav
from stackslim.models import load_encoder

COMMANDS = ("analyze", "prune", "mimic", "share")


def _fails(capsys, argv: list[str], *named: str) -> str:
    """Run the command; it must exit 2 with one stderr line that names each of `named`."""
    capsys.readouterr()
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("stackslim ")]
    assert len(err) == 1, err
    for n in named:
        assert str(n) in err[0], (n, err[0])
    return err[0]


def _no_results(out: Path, cmd: str) -> None:
    assert not (out / RESULT_FILE[cmd]).exists()
    if out.exists():
        assert not (out / "model").exists()


def _copy_data(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("manifest.csv"))
    return dst


# -- audio files ---------------------------------------------------------------------------
def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _text(p: Path) -> None:
    p.write_bytes(b"not audio at all\n" * 40)


def _truncated_header(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:20])


def _nan(p: Path) -> None:
    x = np.zeros(8000, dtype=np.float32)
    x[10] = np.nan
    sf.write(str(p), x, 16000, subtype="FLOAT")


@pytest.mark.parametrize("spoil, why", [(_empty, "empty file"), (_text, "not a readable audio"),
                                        (_truncated_header, "not a readable audio"),
                                        (_nan, "NaN or infinite")])
def test_bad_audio_file_in_a_folder_data_set(spoil, why, tiny_data, tmp_path, capsys):
    data = _copy_data(tiny_data, tmp_path / "data")
    bad = sorted((data / "w1").glob("*.wav"))[0]
    spoil(bad)
    out = tmp_path / "out"
    err = _fails(capsys, ["analyze", "random:wav2vec2", str(data), "--out", str(out), *FAST["analyze"]], bad)
    assert why in err
    _no_results(out, "analyze")


def test_missing_audio_file_in_a_manifest(tiny_data, tmp_path, capsys):
    rows = (tiny_data / "manifest.csv").read_text().splitlines()
    manifest = tmp_path / "data" / "m.csv"  # the manifest's folder is an input: --out beside it
    manifest.parent.mkdir()
    manifest.write_text("\n".join(rows[:1] + [f"{tiny_data}/{r}" if not r.startswith("/") else r for r in rows[1:]]
                                  + ["/no/such/clip.wav,w0,s0"]) + "\n")
    out = tmp_path / "out"
    _fails(capsys, ["mimic", "random:wav2vec2", str(manifest), "--out", str(out), *FAST["mimic"]],
           manifest, "/no/such/clip.wav")
    _no_results(out, "mimic")


@pytest.mark.parametrize("header, why", [("file,label", "lacks column(s) path"),
                                         ("path,speaker", "lacks column(s) label")])
def test_manifest_without_a_column(header, why, tmp_path, capsys):
    manifest = tmp_path / "data" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text(f"{header}\na.wav,x\n")
    assert why in _fails(capsys, ["prune", "random:wav2vec2", str(manifest), "--out", str(tmp_path / "o"),
                                  *FAST["prune"]], manifest)


def test_stereo_other_rates_and_silence_are_converted_with_warnings(tiny_data, tmp_path, recwarn):
    data = _copy_data(tiny_data, tmp_path / "data")
    t = np.arange(8000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)
    for i, sr in enumerate((8000, 44100, 48000)):
        n = int(0.5 * sr)
        sf.write(str(data / "w0" / f"rate{i}.wav"), 0.3 * np.sin(2 * np.pi * 500 * np.arange(n) / sr), sr)
    sf.write(str(data / "w1" / "stereo.wav"), np.stack([tone, -tone / 2], axis=1), 16000)
    write_wav(data / "w1" / "silent.wav", np.zeros(8000, dtype=np.float32))
    out = tmp_path / "out"
    assert main(["analyze", "random:wav2vec2", str(data), "--out", str(out), *FAST["analyze"]]) == 0
    said = " ".join(str(w.message) for w in recwarn)
    for what in ("8000 Hz", "44100 Hz", "48000 Hz", "2 channels", "silent"):
        assert what in said
    assert finite_json(out / "similarity.json")


# -- labels and splits ---------------------------------------------------------------------
@pytest.mark.parametrize("cmd", ["prune", "mimic", "share"])
def test_data_set_with_one_label(cmd, tiny_data, tmp_path, capsys):
    data = tmp_path / "one"
    shutil.copytree(tiny_data / "w0", data / "w0")
    out = tmp_path / "out"
    assert "1 class" in _fails(capsys, [cmd, "random:wav2vec2", str(data), "--out", str(out), *FAST[cmd]], "one")
    _no_results(out, cmd)


def test_label_with_no_clip_in_the_train_split(tiny_data, tmp_path, capsys):
    # w2 is said by one speaker only: splitting by speaker cannot put it in train and test
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    rows = (data / "manifest.csv").read_text().splitlines()
    clip = rows[1].split(",")[0]
    manifest = data / "one-speaker-label.csv"
    for seed in range(20):  # the speaker of w2 must not land in train for some seed
        manifest.write_text("\n".join(rows + [f"{clip},w2,s{seed % 3}"]) + "\n")
        capsys.readouterr()
        rc = main(["prune", "random:wav2vec2", str(manifest), "--out", str(tmp_path / "o"), "--seed", str(seed),
                   *FAST["prune"]])
        if rc == 2:
            err = capsys.readouterr().err
            assert "no clip in train" in err and "'w2'" in err and manifest.stem in err
            return
    pytest.fail("w2 was in train for every seed")


# -- models ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    (root / "bert").mkdir()
    (root / "bert" / "config.json").write_text('{"model_type": "bert"}')
    load_encoder("random:wav2vec2").model.save_pretrained(root / "corrupt-st")
    st = root / "corrupt-st" / "model.safetensors"
    st.write_bytes(st.read_bytes()[:1000])
    (root / "corrupt-ct2").mkdir()
    (root / "corrupt-ct2" / "model.bin").write_bytes(b"\x06\x00\x00\x00" + b"\x07garbage" * 20)
    return {"bert": root / "bert", "corrupt-st": root / "corrupt-st", "corrupt-ct2": root / "corrupt-ct2"}


@pytest.mark.parametrize("cmd", COMMANDS)
@pytest.mark.parametrize("model, why", [("bert", "unsupported model type 'bert'"),
                                        ("corrupt-st", "cannot load weights"),
                                        ("corrupt-ct2", "model.bin")])
def test_unusable_model_folder(cmd, model, why, bad_models, tiny_data, tmp_path, capsys):
    out = tmp_path / "out"
    err = _fails(capsys, [cmd, str(bad_models[model]), str(tiny_data), "--out", str(out), *FAST[cmd]],
                 bad_models[model])
    assert why in err
    _no_results(out, cmd)


@pytest.mark.parametrize("cmd, args, why", [
    ("mimic", ["--layers", "2", "--boundary", "4"], "--boundary must lie in 1..3"),
    ("share", ["--groups", "0-1,2-4"], "names layer 4"),
    ("share", ["--group", "-1"], "--group must be >= 0"),
    ("share", ["--rank", "-1"], "rank must be"),
    ("share", ["--rank", "65"], "rank 65 is above"),
    ("analyze", ["--k", "0"], "k must be a positive"),
    ("analyze", ["--k", "12"], "needs at least k+1=13 samples"),
])
def test_layer_index_group_rank_k_out_of_range(cmd, args, why, tiny_data, tmp_path, capsys):
    out = tmp_path / "out"
    assert why in _fails(capsys, [cmd, "random:wav2vec2", str(tiny_data), "--out", str(out), *FAST[cmd], *args])
    _no_results(out, cmd)


# -- output folders --------------------------------------------------------------------------
@pytest.mark.parametrize("cmd", COMMANDS + ("study",))
def test_output_is_a_file_or_under_a_file(cmd, tiny_data, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("keep me")
    extra = FAST.get(cmd, ["--quick"])
    _fails(capsys, [cmd, "random:wav2vec2", str(tiny_data), "--out", str(f), *extra], f, "not a folder")
    _fails(capsys, [cmd, "random:wav2vec2", str(tiny_data), "--out", str(f / "sub"), *extra], f / "sub",
           "not writable")
    assert f.read_text() == "keep me"


def test_output_folder_without_write_permission(tiny_data, tmp_path, capsys):
    """An existing folder that refuses new files even to root (sysfs: EACCES, or EROFS where
    /sys is mounted read-only): permission bits alone do not stop root, who runs the suite."""
    ro = Path("/sys/kernel")
    assert ro.is_dir()
    before = sorted(p.name for p in ro.iterdir())
    _fails(capsys, ["analyze", "random:wav2vec2", str(tiny_data), "--out", str(ro)], str(ro), "not writable")
    assert sorted(p.name for p in ro.iterdir()) == before

