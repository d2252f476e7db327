"""The search's budget is counted in work: the epoch schedule of the successive halving never
spends more than the budget, the same seed gives the same fit.json candidates, and an optional
wall-clock cap that bites is recorded."""
from __future__ import annotations

import hashlib
import json

import pytest

from stackslim.fit import FitConfig, FitError
from stackslim.fit.search import affordable, round_epochs, survivors

KEYS = ("name", "fits", "trained", "epochs", "stopped_by", "validation_accuracy", "accuracy",
        "written_bytes", "predicted_bytes")


@pytest.mark.parametrize("n, rounds", [(1, [1]), (2, [2, 1]), (3, [3, 2, 1]),
                                       (12, [12, 6, 3, 2, 1])])
def test_survivors_halve_to_one(n, rounds):
    assert survivors(n) == rounds


@pytest.mark.parametrize("n, budget", [(1, 1), (2, 4), (5, 20), (5, 23), (9, 45), (12, 60), (12, 1000)])
def test_schedule_spends_at_most_the_budget_and_gives_the_last_one_the_most(n, budget):
    plan, spent, each = survivors(n), 0, []
    for k, n_k in enumerate(plan):
        e = round_epochs(budget, spent, k, plan)
        each.append(e)
        spent += n_k * e
    assert each[0] >= 1 and spent <= budget
    assert each == sorted(each)  # later rounds, fewer survivors: at least as many epochs each
    assert budget - spent < len(plan) * n  # rounding leaves less than a round's worth


def test_affordable_trims_to_one_epoch_each_in_the_first_round():
    assert affordable(9, 45) == 9  # 5 rounds, 9 epochs in the first: 1 each
    assert affordable(9, 44) == 8  # 4 rounds: 11 in the first
    assert affordable(9, 1) == 1 and affordable(9, 0) == 0


def test_epochs_spent_never_exceed_the_budget(fit_run):
    out, res = fit_run
    s = json.loads((out / "fit.json").read_text())["search"]
    budget = res.config["epochs_budget"]
    assert s["epochs_budget"] == budget and 0 < s["epochs_spent"] <= budget
    comps = {r["name"].removesuffix("+int8"): r["epochs"] for r in res.candidates if r["trained"]}
    assert sum(comps.values()) == s["epochs_spent"]
    assert s["trained"] == s["selected"] == len(s["rounds"][0]["candidates"]) == len(comps)
    assert s["cap_bit"] is False and s["minutes_cap"] is None


def _pick(res) -> list[dict]:
    return [{k: r.get(k) for k in KEYS} for r in res.candidates]


def _rounds(res) -> list:
    """Every trained candidate's rounds without their wall-clock seconds."""
    return [[{k: v for k, v in rd.items() if k != "seconds"} for rd in r.get("rounds", [])]
            for r in res.candidates]


def _digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.suffix == ".safetensors"}


def test_same_seed_same_candidates_and_accuracies(fit_run, run_fit):
    out1, first = fit_run
    out2, again = run_fit()
    assert _pick(first) == _pick(again)
    assert _rounds(first) == _rounds(again)  # train losses to the last bit
    assert first.search["rounds"] == again.search["rounds"]
    assert first.winner["name"] == again.winner["name"]
    assert _digest(out1 / "model") and _digest(out1 / "model") == _digest(out2 / "model")


def test_a_small_budget_trains_fewer_candidates(run_fit):
    _, res = run_fit(epochs_budget=8)  # 3 candidates in 3 rounds would get ⌊8 / 9⌋ = 0 epochs
    s = res.search
    assert (s["trained"], s["epochs_spent"]) == (2, 8) and s["selected"] > 2
    assert [r["epochs_each"] for r in s["rounds"]] == [2, 4]  # ⌊8 / (2·2)⌋, then ⌊4 / 1⌋
    assert len({r["name"].removesuffix("+int8") for r in res.candidates if r["trained"]}) == 2


def test_a_wall_clock_cap_that_bites_is_recorded(run_fit):
    out, res = run_fit(minutes=1e-4)  # 6 ms: the first training stops at its first step
    s = json.loads((out / "fit.json").read_text())["search"]
    assert s["minutes_cap"] == 1e-4 and s["cap_bit"] is True
    stopped = [r for r in res.candidates if r.get("stopped_by") == "minutes cap"]
    assert stopped and s["epochs_spent"] <= res.config["epochs_budget"]


@pytest.mark.parametrize("kw, words", [({"epochs_budget": 0}, "--epochs-budget must be >= 1"),
                                       ({"minutes": -1}, "--minutes must be >= 0")])
def test_bad_budget_options_are_refused(kw, words):
    with pytest.raises(FitError, match=words):
        FitConfig(max_mb=1, **kw)
