"""`stackslim study --quick` on a tiny random model: every section, resume, the page in Chromium."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile

import pytest

from stackslim.cli import main
from stackslim.mimic import MimicModel
from stackslim.models import load_encoder
from stackslim.share import load_shared

pytestmark = pytest.mark.usefixtures("one_thread")

SECTIONS = ("analyze", "prune", "mimic", "share", "compare", "config", "versions")


@pytest.fixture(scope="module")
def study_dir(one_thread, tone_data, tmp_path_factory):
    """A quick study, run in two invocations: stopped after `prune`, then resumed."""
    out = tmp_path_factory.mktemp("study")
    args = ["study", "random:wav2vec2", str(tone_data), "--quick", "--out", str(out),
            "--max-clips", "72", "--analyze-clips", "36", "--mimic-epochs", "2", "--recover-epochs", "1"]
    assert main([*args, "--stop-after", "prune"]) == 0
    assert (out / "prune" / "step.json").exists() and not (out / "results.json").exists()
    marker = (out / "prune" / "step.json").stat().st_mtime_ns
    assert main(args) == 0
    return out, marker


def test_every_section_is_there(study_dir):
    out, _ = study_dir
    r = json.loads((out / "results.json").read_text())
    for s in SECTIONS:
        assert s in r, s
    kinds = {row["kind"] for row in r["compare"]["rows"]}
    assert {"teacher", "mimic", "shared"} <= kinds
    rows = r["compare"]["rows"]
    teacher = rows[0]
    assert teacher["variant"] == "teacher" and teacher["capacity"] == 1.0
    enc = load_encoder("random:wav2vec2")
    assert (teacher["params"], teacher["stack_params"]) == (enc.num_params(), enc.num_params(stack_only=True))
    assert teacher["accuracy"] == r["prune"]["teacher"]["test_accuracy"]
    for row in rows:  # the table's numbers are those of the steps and of the models they saved
        assert row["bytes"] > 0 and row["batch1_ms"] > 0
        assert row["stack_ratio"] == pytest.approx(row["stack_params"] / teacher["stack_params"])
        assert row["speedup"] == pytest.approx(teacher["batch1_ms"] / row["batch1_ms"])
        kind, _, name = row["variant"].partition(": ")
        if kind == "mimic":
            s = r["mimic"][name]
            assert row["stack_params"] == MimicModel.load(s["model_dir"]).num_params("stack")
        elif kind == "shared":
            s = r["share"][name]
            assert row["stack_params"] == load_shared(s["model_dir"]).size_report()["stack_params"]
        elif kind == "pruned":
            strategy = name.split(" (")[0].split("+")[0]
            k = int(name.split("(−")[1].rstrip(")"))
            curve = r["prune"]["strategies"][strategy]["no_refit"]
            deleted = [i - 1 for i in r["prune"]["strategies"][strategy]["order"][:k]]
            assert row["params"] == enc.without_layers(deleted).num_params()
            assert (row["accuracy"], row["capacity"]) == (curve["test_accuracy"][k], curve["capacity"][k])
            continue
        else:
            continue
        assert (row["accuracy"], row["capacity"]) == (s["accuracy"], s["capacity"])
        assert row["capacity"] == pytest.approx(s["accuracy"] / s["teacher_accuracy"])


def test_resume_skips_finished_steps(study_dir):
    out, marker = study_dir
    r = json.loads((out / "results.json").read_text())
    assert "analyze" in r["steps_skipped"] and "prune" in r["steps_skipped"]
    assert "analyze" not in r["steps_run"] and "prune" not in r["steps_run"]
    assert (out / "prune" / "step.json").stat().st_mtime_ns == marker  # not redone


def test_report_is_self_contained(study_dir):
    out, _ = study_dir
    html = (out / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from a network
    assert "Findings" in html and "teacher" in html
    assert (out / "tradeoff.png").is_file() and html.count("data:image/png;base64,") >= 2


def test_report_renders_in_chromium_without_console_errors(study_dir):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium'): page rendering not checked")
    out, _ = study_dir
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             "--dump-dom", (out / "report.html").as_uri()],
            capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Every variant side by side" in proc.stdout  # the page was parsed and laid out
    console = [l for l in proc.stderr.splitlines() if "CONSOLE" in l and ("Error" in l or "error" in l)]
    assert not console, console


def test_int8_columns_beside_every_pytorch_row(study_dir):
    """The teacher, the best pruned, each mimic and each shared variant, exported to ONNX int8
    and measured: bytes smaller than float, latency timed with the PyTorch rows, accuracy."""
    from pathlib import Path

    out, _ = study_dir
    r = json.loads((out / "results.json").read_text())
    rows = r["compare"]["rows"]
    measured = [row for row in rows if row.get("int8")]
    assert {"teacher", "mimic", "shared"} <= {row["kind"] for row in measured}
    pruned = [row for row in rows if row["kind"] == "pruned"]
    assert sum(row["kind"] == "pruned" for row in measured) == (1 if pruned else 0)
    if pruned:  # the one that deletes the most layers
        assert min(p["layers"] for p in pruned) == next(m["layers"] for m in measured if m["kind"] == "pruned")
    assert r["compare"]["int8"]["failed"] == [] and r["compare"]["int8"]["variants"] == len(measured)
    for row in measured:
        q = row["int8"]
        assert q["error"] is None, q
        onnx = Path(q["dir"]) / "model.int8.onnx"
        assert onnx.stat().st_size == q["bytes"] < q["float_onnx_bytes"]
        assert q["bytes"] < (Path(q["dir"]) / "model.onnx").stat().st_size
        assert 0.0 <= q["accuracy"] <= 1.0 and 0.0 <= q["float_accuracy"] <= 1.0
        assert q["accuracy_change"] == pytest.approx(q["accuracy"] - q["float_accuracy"])
        assert q["test_clips"] == r["prune"]["task"]["clips"]["test"]
        assert q["batch1_ms"] > 0 and q["speedup"] == pytest.approx(row["batch1_ms"] / q["batch1_ms"])
        assert 0 < q["rel_error"] < 1.0
        if row["kind"] == "mimic":  # its own head: the float accuracy is the mimic step's
            assert q["head"] == "own" and q["float_accuracy"] == row["accuracy"]
    teacher = rows[0]
    assert teacher["int8"]["bytes"] < teacher["bytes"]  # than the PyTorch safetensors too
    html = (out / "report.html").read_text()
    assert "What a device runs: onnxruntime int8" in html and "Accuracy, int8" in html
