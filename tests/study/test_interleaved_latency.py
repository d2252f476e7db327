"""`evaluate.latency.interleaved_latency`: variants timed round-robin, each round in a new seeded order,
medians per variant."""
from __future__ import annotations

import numpy as np
import pytest

from stackslim.evaluate import latency as study_run


@pytest.fixture
def timed(monkeypatch):
    """Variants a, b, c, d; a fake clock: the r-th timing of variant k reads COST[k] · (r + 1) ms
    per clip. Returns the list of (variant, clips) calls, in order, warm-up included."""
    cost = {"a": 1.0, "b": 2.0, "c": 4.0, "d": 8.0}
    calls: list[tuple[str, int]] = []
    rounds = {k: 0 for k in cost}

    def fake_measure(fn, inputs, warmup=0, repeats=1):
        k = fn(inputs)
        r = rounds[k] // 2  # two timings (batch 1, batched) per round
        rounds[k] += 1
        return {"median_ms": cost[k] * (r + 1) * len(inputs)}

    monkeypatch.setattr(study_run, "measure_latency", fake_measure)

    def fn(k):
        return lambda w: calls.append((k, len(w))) or k

    return {k: fn(k) for k in cost}, calls


def _rounds(calls, n_keys, waves):
    timed_calls = calls[2 * n_keys:]  # after the warm-up: f(one clip), f(all) per variant
    order = [k for k, n in timed_calls[::2]]
    assert all(n == 1 for _, n in timed_calls[::2]) and all(n == waves for _, n in timed_calls[1::2])
    return [order[i:i + n_keys] for i in range(0, len(order), n_keys)]


def test_each_round_takes_the_variants_in_a_new_seeded_order(timed):
    fns, calls = timed
    waves = [np.zeros(160, np.float32)] * 3
    out = study_run.interleaved_latency(fns, waves, repeats=5)
    assert calls[:8] == [(k, n) for k in "abcd" for n in (1, 3)]  # warm-up, in the given order
    rounds = _rounds(calls, 4, 3)
    rng = np.random.default_rng(0)
    assert rounds == [[list(fns)[i] for i in rng.permutation(4)] for _ in range(5)]
    assert len({tuple(r) for r in rounds}) > 1 and any(r[0] != "a" for r in rounds)
    # medians over the 5 rounds of each variant's own timings: COST · 3 ms per clip
    assert out == {k: {"batch1_ms": c * 3, "batched_ms": c * 3}
                   for k, c in {"a": 1.0, "b": 2.0, "c": 4.0, "d": 8.0}.items()}


def test_fixed_order_without_shuffle(timed):
    fns, calls = timed
    study_run.interleaved_latency(fns, [np.zeros(160, np.float32)] * 2, repeats=3, shuffle=False)
    assert _rounds(calls, 4, 2) == [list("abcd")] * 3
