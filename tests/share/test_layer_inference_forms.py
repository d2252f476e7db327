"""ResidualLinear's inference forms (plain, fused, small-first) compute the same map as its
dense matrix, for every shape, rank, diagonal and bias combination, in eval mode without grad."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from stackslim.share import ResidualLinear


@pytest.fixture(autouse=True)
def _restore_impl():
    before = ResidualLinear.impl
    yield
    ResidualLinear.impl = before


@pytest.mark.parametrize("impl", ["plain", "fused", "small-first"])
@pytest.mark.parametrize("d_out,d_in", [(8, 8), (12, 8), (8, 12)])
@pytest.mark.parametrize("rank,diag,bias", [(3, True, True), (0, True, False), (2, False, True), (0, False, False)])
def test_inference_forms_equal_the_dense_map(impl, d_out, d_in, rank, diag, bias):
    g = torch.Generator().manual_seed(0)
    lin = ResidualLinear(nn.Parameter(torch.randn(d_out, d_in, generator=g)), rank, diag=diag,
                         bias=nn.Parameter(torch.randn(d_out, generator=g)) if bias else None).eval()
    with torch.no_grad():
        for p in (lin.A, lin.B) + ((lin.d,) if diag else ()):
            p.copy_(torch.randn(p.shape, generator=g))
        x = torch.randn(2, 7, d_in, generator=g)  # 14 rows: the factored path, not the dense one
        want = torch.nn.functional.linear(x, lin.weight, lin.bias)
        ResidualLinear.impl = impl
        got = lin(x)
    assert got.shape == (2, 7, d_out) and got.is_contiguous()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
