"""The size account: the paper's size column, and the real unique-parameter count."""
from __future__ import annotations

import pytest

from stackslim.models import wrap_model
from stackslim.models.random_configs import random_model
from stackslim.share import paper_size_ratio, paper_stack_params, to_residual


def test_paper_dense_size():
    assert round(paper_stack_params(18, 512, 2048, 3, 2)["dense"] / 1e6, 1) == 56.7


@pytest.mark.parametrize("k,r,expected", [(3, 2, 34.0), (3, 16, 38.1), (6, 16, 21.5), (9, 16, 15.9)])
def test_paper_size_column(k, r, expected):
    assert abs(paper_size_ratio(18, 512, 2048, k, r, diag=True, share_norms=True) - expected) <= 0.1


@pytest.mark.parametrize("k,r,diag,share_norms", [(3, 4, True, True), (2, 0, False, False),
                                                  (4, 8, True, False)])
def test_formula_matches_converted_model(k, r, diag, share_norms):
    enc = wrap_model(random_model("wav2vec2", num_layers=6))  # d = 64, ffn = 128, all biases
    shared = to_residual(enc, groups=k, rank=r, diag=diag, share_norms=share_norms)
    want = paper_stack_params(6, 64, 128, k, r, diag, share_norms)
    rep = shared.size_report()
    assert shared.num_params(stack_only=True) == rep["stack_params"] == want["shared"]
    assert enc.num_params(stack_only=True) == rep["dense_stack_params"] == want["dense"]
    assert shared.materialize().num_params() == enc.num_params() == rep["dense_encoder_params"]
    assert rep["stack_ratio"] == pytest.approx(want["ratio"])
