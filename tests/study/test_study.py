"""`stackslim study --quick` on a tiny random model: every section, resume, the page in Chromium."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile

import pytest

from stackslim.cli import main

SECTIONS = ("analyze", "prune", "mimic", "share", "compare", "config", "versions")


@pytest.fixture(scope="module")
def study_dir(tone_data, tmp_path_factory):
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
    teacher = r["compare"]["rows"][0]
    assert teacher["variant"] == "teacher" and teacher["capacity"] == 1.0
    for row in r["compare"]["rows"]:
        assert row["params"] > 0 and row["bytes"] > 0 and row["batch1_ms"] > 0
        assert 0.0 <= row["accuracy"] <= 1.0


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
