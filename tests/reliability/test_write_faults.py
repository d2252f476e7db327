"""Faults while writing and corrupt metadata: one line naming the path (exit 2 through the CLI),
nothing half-written left behind, inputs unchanged; and written files follow the umask.

A full disk is made real with RLIMIT_FSIZE in a forked child (a write beyond the limit fails with
EFBIG, as one on a full disk fails with ENOSPC); running as root, permission bits do not stop
writes, so permission errors are injected where the file is written.
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from relhelpers import FAST, run_forked

from stackslim.cli import main
from stackslim.errors import EncoderError, OutputError
from stackslim.models import load_encoder
from stackslim.results import atomic_dir, write_atomic, write_failure, write_json


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("stackslim ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


# -- a full disk, through the CLI -------------------------------------------------------------
def test_full_disk_while_writing_results(tiny_data, tmp_path):
    """config.json (660 B) fits, similarity.json or a heatmap does not: one line naming it."""
    before = tree_digest(tiny_data)
    out = tmp_path / "out"
    r = run_forked(["analyze", "random:wav2vec2", str(tiny_data), "--out", str(out), "--metrics", "cosine",
                    "--encode-batch", "4", "--quiet"], tmp_path / "child", fsize=1500)
    assert r.exit_code == 2, r.stderr
    line = one_line(r.stderr)
    assert f"cannot write {out}/" in line and os.strerror(errno.EFBIG) in line
    assert not (out / "similarity.json").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".similarity")
                or p.name.startswith(".heatmap") or p.name.startswith(".blocks")]  # no half-written file
    assert tree_digest(tiny_data) == before


def test_full_tmpdir_while_storing_samples(tiny_data, tmp_path):
    """CKA/kNN keep every sample in a file under $TMPDIR: filling it names that file."""
    out = tmp_path / "out"
    r = run_forked(["analyze", "random:wav2vec2", str(tiny_data), "--out", str(out), *FAST["analyze"]],
                   tmp_path / "child", fsize=1000)
    assert r.exit_code == 2, r.stderr
    line = one_line(r.stderr)
    assert "cannot write" in line and "samples.f64" in line and os.strerror(errno.EFBIG) in line
    assert not (out / "similarity.json").exists()


@pytest.mark.parametrize("limit", [600, 3000, 30000])
def test_a_full_disk_at_any_point_gives_one_line(limit, tiny_data, tmp_path):
    """Whichever write hits the limit (config.json, the sample file, the resume checkpoint, a
    result), the run ends with exit 2 and one line naming what could not be written."""
    out = tmp_path / "out"
    r = run_forked(["analyze", "random:wav2vec2", str(tiny_data), "--out", str(out), *FAST["analyze"], "--quiet"],
                   tmp_path / "child", fsize=limit)
    assert r.exit_code == 2, r.stderr
    assert "cannot write /" in one_line(r.stderr)
    assert not (out / "similarity.json").exists()


# -- the atomic writers ---------------------------------------------------------------------
def test_write_atomic_permission_error_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    target.write_text("old")

    def denied(src, dst):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))

    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(OutputError, match=f"cannot write {target}: Permission denied"):
        write_json(target, {"a": 1})
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # temporary file removed


class SafetensorLikeError(Exception):
    """What safetensors raises on a full disk (it wraps the OS error in its message)."""


@pytest.mark.parametrize("exc", [
    SafetensorLikeError("Error while serializing: I/O error: No space left on device (os error 28)"),
    OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)),
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"),  # torch.save
])
def test_atomic_dir_full_disk_names_the_folder_and_leaves_the_old_one(exc, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with pytest.raises(OutputError, match=f"cannot write {model}"):
        with atomic_dir(model) as tmp:
            (tmp / "model.safetensors").write_bytes(b"x" * 100)
            raise exc
    assert tree_digest(model) == {"config.json": hashlib.sha256(b"{}").hexdigest()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folder left


def test_encoder_save_on_a_full_disk(tmp_path, monkeypatch):
    """A real save_pretrained whose safetensors write fails as on a full disk."""
    import transformers.modeling_utils as mu

    def full(*a, **k):
        raise SafetensorLikeError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(mu, "safe_save_file", full)
    enc = load_encoder("random:wav2vec2")
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / 'm'}: No space left on device"):
        enc.save(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_errors_that_are_not_write_failures_pass_through(tmp_path):
    assert write_failure(ValueError("bad value")) is None
    assert write_failure(FileNotFoundError(errno.ENOENT, "No such file")) is None
    assert write_failure(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
    with pytest.raises(ZeroDivisionError):
        with atomic_dir(tmp_path / "m"):
            raise ZeroDivisionError
    assert list(tmp_path.iterdir()) == []


# -- corrupt metadata -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_encoder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("enc") / "model"
    load_encoder("random:wav2vec2").save(path)
    return path


@pytest.mark.parametrize("garbage", [b'{"family": "wav2vec2", "na', b"\xff\xfe\x00garbage", b"[1, 2]"])
def test_corrupt_stackslim_json_through_the_cli(garbage, saved_encoder, tiny_data, tmp_path, capsys):
    import shutil

    model = Path(shutil.copytree(saved_encoder, tmp_path / "model"))
    (model / "stackslim.json").write_bytes(garbage)
    before_model, before_data = tree_digest(model), tree_digest(tiny_data)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["analyze", str(model), str(tiny_data), "--out", str(out), *FAST["analyze"]]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(model / "stackslim.json") in line and "corrupt metadata" in line
    assert tree_digest(model) == before_model and tree_digest(tiny_data) == before_data
    assert not (out / "similarity.json").exists()


def test_corrupt_metadata_of_pruned_mimic_and_shared_folders(tmp_path):
    from stackslim.mimic.model import CONFIG_FILE, WEIGHTS_FILE, MimicModel
    from stackslim.prune.save import HEAD_CONFIG, HEAD_WEIGHTS, load_head
    from stackslim.share.io import SHARE_META, WEIGHTS
    from stackslim.share.load import load_shared

    cases = [(load_head, HEAD_CONFIG, HEAD_WEIGHTS), (MimicModel.load, CONFIG_FILE, WEIGHTS_FILE),
             (load_shared, SHARE_META, WEIGHTS)]
    for i, (load, meta, weights) in enumerate(cases):
        folder = tmp_path / f"m{i}"
        folder.mkdir()
        (folder / meta).write_text('{"format": ')
        (folder / weights).write_bytes(b"\x00" * 16)
        with pytest.raises(EncoderError, match=f"{folder / meta}: corrupt metadata file, not valid JSON"):
            load(folder)


# -- umask --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_saved_files_follow_the_umask(mask, tmp_path):
    from safetensors.torch import save_file

    from stackslim.data import write_wav

    old = os.umask(mask)
    try:
        with atomic_dir(tmp_path / "st") as tmp:
            save_file({"a": torch.zeros(2)}, str(tmp / "model.safetensors"))  # safetensors makes 0600
            (tmp / "sub").mkdir()
        load_encoder("random:wav2vec2").save(tmp_path / "enc")
        write_atomic(tmp_path / "r.json", "{}")
        write_wav(tmp_path / "a.wav", np.zeros(160, np.float32))
    finally:
        os.umask(old)
    files = [tmp_path / "st" / "model.safetensors", tmp_path / "enc" / "model.safetensors",
             tmp_path / "enc" / "config.json", tmp_path / "r.json", tmp_path / "a.wav"]
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask, f
    for d in (tmp_path / "st", tmp_path / "st" / "sub", tmp_path / "enc"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o777 & ~mask, d
