"""The run protocol (`stackslim.run`) through the CLI: an --out that overlaps an input is refused
before anything is touched, one run per folder (a lock), a folder of another command is refused
unless --force, and a new run removes everything an earlier run of its command wrote."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from relhelpers import FAST

from stackslim.cli import main
from stackslim.errors import OutputError
from stackslim.run import LOCK, start_run


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "%|" not in line]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("cmd", ["analyze", "prune"])
@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_out_overlapping_the_data_is_refused_and_the_data_unchanged(cmd, where, tiny_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    before = _digest(tmp_path)
    out = {"same": data, "inside": data / "w0" / "out", "around": tmp_path}[where]
    assert main([cmd, "random:wav2vec2", str(data), "--out", str(out), *FAST[cmd]]) == 2
    line = _one_line(capsys)
    assert "overlaps the input" in line and str(data.resolve()) in line
    assert _digest(tmp_path) == before  # not one byte written, moved or removed


def test_out_inside_the_model_folder_is_refused(tiny_data, tmp_path, capsys):
    model = tmp_path / "model"
    assert main(["prune", "random:wav2vec2", str(tiny_data), "--out", str(tmp_path / "p"), *FAST["prune"]]) == 0
    shutil.copytree(tmp_path / "p" / "model", model)
    before = _digest(model)
    assert main(["analyze", str(model), str(tiny_data), "--out", str(model), *FAST["analyze"]]) == 2
    assert "overlaps the input" in _one_line(capsys)
    assert _digest(model) == before


def test_a_second_run_into_a_folder_in_use_fails_at_once(tiny_data, tmp_path, capsys):
    out = tmp_path / "out"
    with start_run("analyze", out, {}) as held:  # a run in progress holds the folder
        assert (out / LOCK).is_file()
        assert main(["analyze", "random:wav2vec2", str(tiny_data), "--out", str(out), *FAST["analyze"]]) == 2
        line = _one_line(capsys)
        assert "in use" in line and str(out) in line and "pid" in line
        assert not (out / "similarity.json").exists()
    assert not (out / LOCK).exists() and held._lock_file is None  # released with the run
    assert main(["analyze", "random:wav2vec2", str(tiny_data), "--out", str(out), *FAST["analyze"]]) == 0


def test_two_runs_into_one_folder_at_once_exactly_one_runs(tone_data, tmp_path):
    """Two real processes into one folder: the one holding the lock runs, the other stops at
    once with one line; the first, interrupted afterwards, leaves the folder free."""
    import os
    import signal
    import subprocess
    import sys
    import time

    rows = (tone_data / "manifest.csv").read_text().splitlines()
    manifest = tmp_path / "data" / "many.csv"  # the tone set 20 times: a run of many seconds
    manifest.parent.mkdir()
    manifest.write_text("\n".join([rows[0]] + [f"{tone_data}/{r}" for r in rows[1:]] * 20) + "\n")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "stackslim", "analyze", "random:wav2vec2", str(manifest), "--out",
            str(out), "--quiet", "--encode-batch", "1", "--metrics", "cosine,cka"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (out / LOCK).exists():  # the first run holds the folder
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.01)
        second = subprocess.run(argv, capture_output=True, env=env, text=True, timeout=300)
        assert first.poll() is None, "the first run ended before the second was refused"
        assert second.returncode == 2, second.stderr[-2000:]
        err = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(err) == 1 and "in use" in err[0] and f"pid {first.pid}" in err[0]
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=300)
    assert first.returncode in (0, 130)
    assert not (out / LOCK).exists()  # released: the next run may start


def test_a_folder_of_another_command_needs_force(tiny_data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["analyze", "random:wav2vec2", str(tiny_data), "--out", str(out), *FAST["analyze"]]) == 0
    capsys.readouterr()
    assert main(["prune", "random:wav2vec2", str(tiny_data), "--out", str(out), *FAST["prune"]]) == 2
    assert "holds a `stackslim analyze` run" in _one_line(capsys)
    assert (out / "similarity.json").is_file()  # refused: the other run's results untouched
    assert main(["prune", "random:wav2vec2", str(tiny_data), "--out", str(out), *FAST["prune"],
                 "--force"]) == 0
    assert (out / "pruning.json").is_file()


def test_a_new_run_removes_what_the_last_one_wrote(tiny_data, tmp_path):
    out = tmp_path / "out"
    assert main(["analyze", "random:wav2vec2", str(tiny_data), "--out", str(out), *FAST["analyze"]]) == 0
    assert {p.name for p in out.glob("heatmap_*.png")} == {"heatmap_cosine.png", "heatmap_cka.png",
                                                           "heatmap_mknn.png"}
    assert main(["analyze", "random:wav2vec2", str(tiny_data), "--out", str(out), *FAST["analyze"],
                 "--metrics", "cosine"]) == 0
    assert [p.name for p in out.glob("heatmap_*.png")] == ["heatmap_cosine.png"]  # no stale plots


def test_start_run_refuses_before_touching_anything(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(OutputError, match="overlaps the input"):
        start_run("prune", data / "out", {}, data=data)
    assert not (data / "out").exists()
