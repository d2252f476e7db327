"""The same command and seed give the same numbers on a quiet and on a busy machine: training
budgets are counted in work, so CPU-burning processes beside a run change its timings only."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import time

import pytest

from stackslim.cli import main

TIMING_KEYS = {"seconds", "batch1_ms", "batched_ms", "speedup", "threads", "versions", "config",
               "steps_run", "steps_skipped", "model_dir", "provenance"}


def _burn(stop_at: float) -> None:
    x = 1.0
    while time.time() < stop_at:
        x = (x * 1.0000001) % 7.0


def _numbers(obj, path=""):
    """Every number and string of a results file outside timings and paths, with its place."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k not in TIMING_KEYS:
                yield from _numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float, bool)) or obj is None:
        yield path, obj


@pytest.mark.slow
def test_same_results_on_a_loaded_machine(tone_data, tmp_path):
    args = ["study", "random:wav2vec2", str(tone_data), "--quick", "--max-clips", "72",
            "--analyze-clips", "36", "--mimic-epochs", "2", "--recover-epochs", "1",
            "--latency-clips", "1", "--strategies", "forward,greedy", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "quiet")]) == 0
    burners = [mp.Process(target=_burn, args=(time.time() + 300,), daemon=True)
               for _ in range(2 * (os.cpu_count() or 1))]
    for p in burners:
        p.start()
    try:
        assert main([*args, "--out", str(tmp_path / "busy")]) == 0
    finally:
        for p in burners:
            p.terminate()
    quiet = dict(_numbers(json.loads((tmp_path / "quiet" / "results.json").read_text())))
    busy = dict(_numbers(json.loads((tmp_path / "busy" / "results.json").read_text())))
    assert quiet.keys() == busy.keys()
    differ = {k: (quiet[k], busy[k]) for k in quiet if quiet[k] != busy[k]}
    assert not differ, f"numbers that moved with the machine's load: {differ}"
    accuracies = [v for k, v in quiet.items() if k.endswith(".accuracy")]
    assert accuracies, "the comparison must cover the variants' accuracies"
