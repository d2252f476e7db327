"""evaluate/latency.py: the shared latency and size helpers."""
from __future__ import annotations

import time

import pytest
import torch

from stackslim.evaluate.latency import bytes_on_disk, clip_latency, count_params, measure_latency


def test_measure_latency_reports_median_of_repeats():
    calls = []

    def fn(x):
        calls.append(x)
        time.sleep(0.002)

    r = measure_latency(fn, "in", warmup=2, repeats=3)
    assert len(calls) == 5
    assert r["min_ms"] <= r["median_ms"] <= r["p90_ms"] and r["median_ms"] >= 2.0
    assert r["threads"] == torch.get_num_threads() and r["repeats"] == 3
    with pytest.raises(ValueError):
        measure_latency(fn, "in", repeats=0)


def test_clip_latency_per_clip():
    sizes = []
    r = clip_latency(lambda b: sizes.append(len(b)), ["a", "b", "c"], batch_size=2, warmup=1, repeats=2)
    assert sizes == [1, 1, 1, 2, 2, 2] and r["batch_size"] == 2
    assert r["batched_ms"] == pytest.approx(r["batched"]["median_ms"] / 2)


def test_sizes(tmp_path):
    lin = torch.nn.Linear(4, 3)
    shared = torch.nn.Sequential(lin, lin)
    assert count_params(shared) == 15 and count_params(lin, [lin.weight]) == 15
    (tmp_path / "a").write_bytes(b"x" * 10)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"y" * 5)
    assert bytes_on_disk(tmp_path) == 15 and bytes_on_disk(tmp_path / "a") == 10
    with pytest.raises(FileNotFoundError):
        bytes_on_disk(tmp_path / "missing")
