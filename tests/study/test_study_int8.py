"""The study's int8 columns (`study.int8`): a variant whose export fails keeps its row with the
reason; --no-onnx skips the columns and is part of the compare step's key."""
from __future__ import annotations

import pytest

from stackslim.export import ExportError
from stackslim.heads import prepare_task
from stackslim.models import load_encoder
from stackslim.share import to_residual
from stackslim.study import StudyConfig
from stackslim.study import int8 as int8_mod
from stackslim.study.int8 import Int8Columns, best_pruned, slug
from stackslim.study.report import findings, int8_rows

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_failed_export_is_recorded_on_its_row_and_the_others_are_measured(tone_data, tmp_path,
                                                                            monkeypatch):
    enc = load_encoder("random:wav2vec2")
    task = prepare_task(str(tone_data), "word", seed=0, max_clips=36)
    shared = to_residual(enc, groups=2, rank=4)
    rows = [{"variant": "teacher", "kind": "teacher", "layers": 4, "bytes": 10 ** 6, "batch1_ms": 2.0,
             "capacity": 1.0, "stack_ratio": 1.0, "speedup": 1.0},
            {"variant": "shared: K2-r4", "kind": "shared", "layers": 4, "bytes": 10 ** 6, "batch1_ms": 2.0,
             "capacity": 1.0, "stack_ratio": 1.0, "speedup": 1.0}]
    models = {"teacher": ("teacher", enc, None), "shared: K2-r4": ("shared", shared, None)}
    real = int8_mod.export_loaded

    def flaky(loaded, out, cfg, source):
        if loaded.kind == "shared":
            raise ExportError("torch.onnx.export failed on it (RuntimeError: boom)")
        return real(loaded, out, cfg, source)

    monkeypatch.setattr(int8_mod, "export_loaded", flaky)
    prep = Int8Columns(enc, task, StudyConfig(), tmp_path / "int8")
    fns = prep.prepare(rows, models)
    assert list(fns) == ["teacher · int8"]
    lat = {"teacher · int8": {"batch1_ms": 1.0, "batched_ms": 0.5}}
    prep.attach(rows, lat)
    assert rows[1]["int8"] == {"error": "ExportError: torch.onnx.export failed on it (RuntimeError: boom)"}
    q = rows[0]["int8"]
    assert q["error"] is None and q["speedup"] == 2.0 and 0 <= q["accuracy"] <= 1
    assert q["float_accuracy"] == pytest.approx(q["accuracy"] - q["accuracy_change"])
    assert prep.summary()["failed"] == ["shared: K2-r4"]
    table = int8_rows(rows)
    assert table[1]["error"].startswith("ExportError") and table[1]["int8_accuracy"] is None
    said = findings({"compare": {"rows": rows}})
    assert any("failed for: shared: K2-r4" in f for f in said), said
    assert not (tmp_path / "int8" / slug("shared: K2-r4")).exists()


def test_best_pruned_is_the_row_that_deletes_the_most_layers():
    rows = [{"variant": "teacher", "kind": "teacher", "layers": 6},
            {"variant": "pruned: bi (−1)", "kind": "pruned", "layers": 5},
            {"variant": "pruned: forward+greedy (−2)", "kind": "pruned", "layers": 4},
            {"variant": "pruned: beam (−2)", "kind": "pruned", "layers": 4}]
    assert best_pruned(rows) == "pruned: forward+greedy (−2)"
    assert best_pruned(rows[:1]) is None
    assert slug("pruned: forward+greedy (−2)") == "pruned-forward+greedy-2"


def test_no_onnx_skips_the_columns_and_turning_it_on_reruns_compare_only(tone_data, tmp_path):
    import json

    from stackslim.cli import main

    args = ["study", "random:wav2vec2", str(tone_data), "--quick", "--out", str(tmp_path / "s"),
            "--max-clips", "36", "--analyze-clips", "12", "--mimic-epochs", "1", "--recover-epochs", "0",
            "--strategies", "forward", "--latency-clips", "1", "--quiet"]
    assert main([*args, "--no-onnx"]) == 0
    r = json.loads((tmp_path / "s" / "results.json").read_text())
    assert r["config"]["onnx"] is False and r["compare"]["int8"] == {"skipped": "--no-onnx"}
    assert all(row.get("int8") is None for row in r["compare"]["rows"])
    assert "onnxruntime int8" not in (tmp_path / "s" / "report.html").read_text()
    assert main(args) == 0
    r = json.loads((tmp_path / "s" / "results.json").read_text())
    assert r["steps_run"] == ["compare"]
    assert r["compare"]["rows"][0]["int8"]["error"] is None
