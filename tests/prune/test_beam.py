"""Beam search over deletion orders finds a longer validation curve than one greedy step."""
from __future__ import annotations

from stackslim.prune.strategies import ScoringContext, _beam

# validation accuracy after deleting each set of layers (0-based; layer 0 is never deleted)
ACC = {frozenset(): 1.0, frozenset({1}): 0.99, frozenset({2}): 0.98, frozenset({3}): 0.97,
       frozenset({1, 2}): 0.5, frozenset({1, 3}): 0.5, frozenset({2, 3}): 0.97,
       frozenset({1, 2, 3}): 0.1}


def _run(width: int):
    ctx = ScoringContext(runner=None, head=None, num_layers=4, threshold=0.95, beam_width=width)
    calls = []

    def acc(kept):
        calls.append(tuple(kept))
        return ACC[frozenset({1, 2, 3}) - set(kept)]

    order, info = _beam(ctx, acc, "beam")
    return order, info, calls


def test_width_one_follows_the_best_first_step_and_is_blocked():
    order, info, _ = _run(1)
    assert order[0] == 1 and info["val_deletable"] == 1


def test_a_wider_beam_finds_the_longest_curve():
    order, info, calls = _run(3)
    assert sorted(order) == [1, 2, 3]
    assert set(order[:2]) == {2, 3} and info["val_deletable"] == 2
    assert len(calls) == len(set(calls))  # every deleted set is scored once
    assert info["val_accuracy_per_set"]["2,3"] == 0.5  # 1-based layer names: {1, 2} 0-based


def test_the_beam_keeps_distinct_sets_not_reorderings():
    # width 2: without de-duplication [2, 3] and [3, 2] would fill the beam at step 2
    _, info, _ = _run(2)
    for step in info["beams_per_step"]:
        assert len({frozenset(b) for b in step}) == len(step)


def test_among_equally_long_curves_the_beam_takes_the_one_nearest_one_more_deletion():
    # both [1, 2, ...] and [2, 3, ...] delete 1 layer on validation; [1, 2] has the larger area
    # (0.99 + 0.93 against 0.96 + 0.94) but [2, 3] misses the threshold (0.95) by less
    acc_of = {frozenset(): 1.0, frozenset({1}): 0.99, frozenset({2}): 0.96, frozenset({3}): 0.955,
              frozenset({1, 2}): 0.93, frozenset({1, 3}): 0.5, frozenset({2, 3}): 0.94,
              frozenset({1, 2, 3}): 0.1}
    ctx = ScoringContext(runner=None, head=None, num_layers=4, threshold=0.95, beam_width=3)
    order, info = _beam(ctx, lambda kept: acc_of[frozenset({1, 2, 3}) - set(kept)], "beam")
    assert order == [2, 3, 1] and info["val_deletable"] == 1
