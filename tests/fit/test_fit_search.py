"""`stackslim fit` on a random tiny Whisper: predicted bytes equal the written model's, the
winner fits and is saved and exported, the search record is complete."""
from __future__ import annotations

import json

from stackslim.models import load_encoder


def test_every_candidate_predicted_bytes_equal_written_bytes(fit_run):
    out, res = fit_run
    rows = json.loads((out / "fit.json").read_text())["candidates"]
    trained = [r for r in rows if r["trained"]]
    assert {r["method"] for r in trained} == {"prune", "share", "mimic"}
    assert {r["precision"] for r in trained} == {"float32", "int8"}
    for r in rows:
        if r["fits"]:  # every fitting candidate was trained here (max_candidates is large)
            assert r["trained"], r["name"]
    for r in trained:
        assert abs(r["written_bytes"] / r["predicted_bytes"] - 1) < 0.01, r["name"]
        assert r["accuracy"] is not None and r["epochs"] >= 1
    # int8 stores a quarter of each matrix: clearly smaller than the same model in float
    by = {r["name"]: r["written_bytes"] for r in trained}
    assert by["prune-d3+int8"] < 0.9 * by["prune-d3"]


def test_winner_fits_the_budget_and_is_saved(fit_run):
    out, res = fit_run
    w = res.winner
    assert w is not None and w["written_bytes"] <= 0.9e6 and w["predicted_bytes"] <= 0.9e6
    best = max(r["validation_accuracy"] for r in res.candidates if r["trained"] and r["fits_written"])
    assert w["validation_accuracy"] == best
    enc = load_encoder(out / "model")  # the method's own folder, loadable
    assert enc.num_layers >= 1
    if w["precision"] == "int8":
        assert (out / "model" / "encoder.int8.safetensors").is_file()
    assert (out / "onnx" / "model.onnx").is_file() and (out / "pareto.png").stat().st_size > 0
    assert len(res.search["rounds"]) >= 2 and res.search["minutes_cap"] is None


def test_candidates_outside_the_budget_are_not_trained(fit_run):
    _, res = fit_run
    over = [r for r in res.candidates if r["predicted_bytes"] and r["predicted_bytes"] > 0.9e6]
    assert over and not any(r["trained"] for r in over)
    assert res.teacher["bytes"] == 1030144 and res.deletion_order[0] != 1
