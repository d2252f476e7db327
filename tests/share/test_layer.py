"""ResidualLinear: the formula, the dense matrix, one shared object per group."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from stackslim.share import ResidualLinear


def _layer(d_out, d_in, rank, diag=True, bias=True, shared=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = shared if shared is not None else nn.Parameter(torch.randn(d_out, d_in, generator=g))
    b = nn.Parameter(torch.randn(d_out, generator=g)) if bias else None
    lin = ResidualLinear(W, rank, diag=diag, bias=b)
    with torch.no_grad():
        lin.A.copy_(torch.randn(d_out, rank, generator=g))
        lin.B.copy_(torch.randn(rank, d_in, generator=g))
        if diag:
            lin.d.copy_(torch.randn(min(d_in, d_out), generator=g))
    return lin


@pytest.mark.parametrize("d_out,d_in", [(8, 8), (12, 8), (8, 12)])
@pytest.mark.parametrize("rank,diag,bias", [(3, True, True), (0, True, False), (2, False, True)])
def test_equals_explicit_dense_matrix(d_out, d_in, rank, diag, bias):
    lin = _layer(d_out, d_in, rank, diag, bias)
    W = lin.shared.detach() + lin.A.detach() @ lin.B.detach()
    if diag:
        k = min(d_in, d_out)
        W[torch.arange(k), torch.arange(k)] += lin.d.detach()
    x = torch.randn(2, 5, d_in)
    y = x @ W.T + (lin.bias.detach() if bias else 0)
    torch.testing.assert_close(lin(x), y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lin.weight.detach(), W)
    torch.testing.assert_close(lin.to_linear()(x), y, atol=1e-5, rtol=1e-5)


def test_shared_weight_is_one_object():
    W = nn.Parameter(torch.randn(6, 6))
    a, b = _layer(6, 6, 2, shared=W, seed=1), _layer(6, 6, 2, shared=W, seed=2)
    assert a.shared is b.shared
    params = {id(p) for p in nn.ModuleList([a, b]).parameters()}
    assert len(params) == 2 * 4 + 1  # A, B, d, bias per layer + one W
    before = b.shared.detach().clone()
    opt = torch.optim.SGD(a.parameters(), lr=0.1)
    a(torch.randn(4, 6)).pow(2).sum().backward()  # a step through layer a only
    opt.step()
    assert not torch.equal(b.shared.detach(), before)  # b's weight moved too
    assert torch.equal(a.shared, b.shared)


def test_weight_is_differentiable():
    lin = _layer(5, 4, 2)
    lin.weight.sum().backward()
    assert lin.A.grad is not None and lin.d.grad is not None and lin.shared.grad is not None


def test_training_forward_equals_factored_forward():
    lin = _layer(16, 8, 3)  # 40 rows > 16·8/24: training builds W_l once
    x = torch.randn(5, 8, 8)
    lin.eval()
    y_eval = lin(x)
    lin.train()
    torch.testing.assert_close(lin(x), y_eval, atol=1e-5, rtol=1e-5)
