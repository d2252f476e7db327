"""The findings name the pruning strategies compared and say when the time cap cut training."""
from __future__ import annotations

from stackslim.study.report import findings


def _results(capped: str | None) -> dict:
    rows = [{"variant": "teacher", "kind": "teacher", "capacity": 1.0, "stack_ratio": 1.0, "speedup": 1.0},
            {"variant": "mimic: linear-1-512", "kind": "mimic", "capacity": 0.9, "stack_ratio": 0.03,
             "speedup": 11.0, "capped": capped}]
    strategies = {n: {"order": [2, 3], "family": "x"} for n in ("forward", "bi", "greedy", "beam-refit")}
    return {"num_layers": 6, "config": {"max_minutes": 0.5},
            "prune": {"threshold": 0.95, "teacher": {"test_accuracy": 0.9}, "task": {"chance": 0.1},
                      "strategies": strategies,
                      "summary": {"refit": {"forward": 2, "bi": 3, "greedy": 2, "beam-refit": 4}}},
            "compare": {"rows": rows}}


def test_findings_name_the_strategies_and_the_best_of_each_side():
    text = "\n".join(findings(_results(None)))
    assert "Pruning strategies compared: the paper's forward, bi; ours greedy, beam-refit." in text
    assert "Our best strategy deletes 4 (beam-refit), the paper's best 3 (bi)." in text
    assert "cut training" not in text


def test_findings_say_when_the_cap_cut_training_short():
    text = "\n".join(findings(_results("stage1")))
    assert "--max-minutes 0.5" in text and "mimic: linear-1-512" in text
