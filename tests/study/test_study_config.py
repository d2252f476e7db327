"""The study's grid specs (`parse_mimic`, `parse_share`), its quick preset, and the findings the
report states from the numbers."""
from __future__ import annotations

from dataclasses import replace

import pytest

from stackslim.study.config import QUICK, StudyConfig, StudyError, parse_mimic, parse_share, preset
from stackslim.study.report import findings


@pytest.mark.parametrize("spec, want", [
    ("linear-1-512", ("linear", 1, 512)),
    ("transformer-2-64", ("transformer", 2, 64)),
])
def test_parse_mimic(spec, want):
    assert parse_mimic(spec) == want


@pytest.mark.parametrize("spec, want", [
    ("K3-r16", ("adjacent", 3, 16, 0.0)),
    ("K2-r64", ("adjacent", 2, 64, 0.0)),
    ("blocks-r16", ("blocks", 0, 16, 0.0)),
    ("K3-s50", ("adjacent", 3, 0, 0.5)),
    ("K2-s35", ("adjacent", 2, 0, 0.35)),
    ("blocks-s100", ("blocks", 0, 0, 1.0)),
])
def test_parse_share(spec, want):
    assert parse_share(spec) == want


@pytest.mark.parametrize("spec", ["linear-1", "linear-one-512", "linear-1-512-x", ""])
def test_parse_mimic_refuses(spec):
    with pytest.raises(StudyError, match=f"--mimic-grid: variant '{spec}': expected kind-layers-z"):
        parse_mimic(spec)


@pytest.mark.parametrize("spec", ["K3", "K3-16x", "Kx-r16", "K3-r16-extra", "blocks-rx", "K3-s0.5",
                                  "K3-x50"])
def test_parse_share_refuses(spec):
    with pytest.raises(StudyError, match=f"--share-grid: variant '{spec}': expected K<k>-r<rank>"):
        parse_share(spec)


@pytest.mark.parametrize("spec, what", [("K3-s0", "size must be 1 to 100"), ("K3-s101", "size must be 1 to 100"),
                                        ("K3-r0", "rank must be >= 1"), ("K0-s50", "K \\(layers")])
def test_parse_share_refuses_out_of_range(spec, what):
    with pytest.raises(StudyError, match=what):
        parse_share(spec)


def test_default_grids_parse():
    cfg = StudyConfig()
    assert [parse_mimic(m) for m in cfg.mimic_grid] == [("linear", 1, 512), ("transformer", 1, 512)]
    assert [parse_share(s) for s in cfg.share_grid] == [("adjacent", 3, 0, 0.5), ("adjacent", 3, 0, 0.35)]


def test_quick_preset_changes_only_what_the_user_left_at_its_default():
    assert preset(StudyConfig()) == StudyConfig()  # not quick: untouched
    q = preset(StudyConfig(quick=True, max_clips=24, share_grid=("K4-r2",)))
    assert q.max_clips == 24 and q.share_grid == ("K4-r2",)  # the user's values
    assert q.analyze_clips == QUICK["analyze_clips"] and q.mimic_grid == QUICK["mimic_grid"]
    assert q.wer_clips == QUICK["wer_clips"] and q.strategies == QUICK["strategies"]
    assert replace(q, max_clips=QUICK["max_clips"], share_grid=QUICK["share_grid"]) == \
        preset(StudyConfig(quick=True))


def _results() -> dict:
    row = dict(stack_ratio=0.5, speedup=2.0)
    return {
        "num_layers": 4,
        "analyze": {"blocks": {"cka": {"blocks": [[1, 2, 3], [4]]}}, "robustness": "blocks are real"},
        "prune": {"threshold": 0.95, "teacher": {"test_accuracy": 0.8}, "task": {"chance": 0.25},
                  "summary": {"no_refit": {"forward": 1, "backward": 2, "greedy": 3},
                              "refit": {"forward": 2, "bi": 2}}},
        "compare": {"rows": [
            {"variant": "teacher", "kind": "teacher", "capacity": 1.0, "stack_ratio": 1.0, "speedup": 1.0},
            {"variant": "mimic: a", "kind": "mimic", "capacity": 0.9, **row},
            {"variant": "mimic: b", "kind": "mimic", "capacity": 0.95, "stack_ratio": 0.01, "speedup": 9.04},
            {"variant": "shared: K2-r8", "kind": "shared", "capacity": None, **row},
            {"variant": "pruned: backward (−2)", "kind": "pruned", "capacity": 0.97, **row},
        ]},
        "wer": {"clips": 8, "wer": {"teacher": 0.05, "pruned:backward": 0.2, "mimic:b": 0.9}},
    }


def test_findings_state_the_numbers():
    assert findings(_results()) == [
        "Linear CKA splits hidden states 1–4 into 2 block(s): 1–3, 4.",
        "Outlier channels: blocks are real.",
        "The teacher (frozen encoder + trained head) reaches 80.0% test accuracy (chance 25.0%).",
        "Pruning without post-training: at most 3 of 4 layers can go at ≥ 95% capacity on test "
        "(greedy). Our best strategy deletes 3 (greedy), the paper's best 2 (backward).",
        "Pruning with only the head re-fitted: at most 2 of 4 layers can go at ≥ 95% capacity on "
        "test (forward, bi).",
        "Best mimic variant by capacity: mimic: b: 95.0% capacity, stack at 1.0% of the teacher's, "
        "9.0× the teacher's speed at batch 1.",
        "Best shared variant by capacity: shared: K2-r8: – capacity, stack at 50.0% of the "
        "teacher's, 2.0× the teacher's speed at batch 1.",
        "Best pruned variant by capacity: pruned: backward (−2): 97.0% capacity, stack at 50.0% of "
        "the teacher's, 2.0× the teacher's speed at batch 1.",
        "Word error rate on 8 synth-sentences clips: teacher 5.0%; best compressed encoder "
        "pruned:backward 20.0%.",
    ]


def test_findings_of_a_partial_study():
    r = _results()
    assert findings({"num_layers": 4}) == []
    r["wer"]["wer"] = {"teacher": 0.1}  # no compressed encoder scored: the teacher alone
    assert findings(r)[-1] == "Word error rate on 8 synth-sentences clips: teacher 10.0%."
