"""The two kinds of mimicking layer: shapes, masking, parameter counts by hand."""
from __future__ import annotations

import pytest
import torch

from stackslim.mimic import LinearMimic, MimicError, TransformerMimic, make_layer
from stackslim.mimic.model import MimicModel  # noqa: F401  (import check)

D, Z = 64, 32


def hand_count(kind: str, d: int, z: int) -> int:
    if kind == "linear":
        # fc1 W + b, LayerNorm gamma + beta, fc2 W + b
        return d * z + z + z + z + z * d + d
    # in_proj W (3d x d) + b (3d), out_proj W + b, linear1 W + b, linear2 W + b, 2 LayerNorms
    return 3 * d * d + 3 * d + d * d + d + z * d + z + d * z + d + 2 * (2 * d)


@pytest.mark.parametrize("kind", ["linear", "transformer"])
def test_parameter_counts_match_a_hand_count(kind):
    layer = make_layer(kind, D, Z)
    n = sum(p.numel() for p in layer.parameters())
    assert n == hand_count(kind, D, Z)
    cls = LinearMimic if kind == "linear" else TransformerMimic
    assert n == cls.expected_params(D, Z)
    assert hand_count("linear", 512, 512) == 526_336  # whisper-base, z = 512: 2·512² + 3·512 + 512


@pytest.mark.parametrize("kind", ["linear", "transformer"])
@pytest.mark.parametrize("train_mode", [False, True])
def test_shapes_and_padding_does_not_leak(kind, train_mode):
    torch.manual_seed(0)
    layer = make_layer(kind, D, Z).train(train_mode)
    x = torch.randn(3, 10, D)
    lengths = torch.tensor([10, 6, 3])
    with torch.set_grad_enabled(train_mode):
        y = layer(x, lengths)
        assert y.shape == (3, 10, D)
        # garbage in the padded frames changes no valid output
        x2 = x.clone()
        for b, n in enumerate(lengths.tolist()):
            x2[b, n:] = 100 * torch.randn(10 - n, D)
        y2 = layer(x2, lengths)
        for b, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(y[b, :n], y2[b, :n], atol=1e-5, rtol=1e-5)
            # and each clip alone gives the same valid frames as in the batch
            alone = layer(x[b : b + 1, :n], lengths[b : b + 1])
            torch.testing.assert_close(alone[0], y[b, :n], atol=1e-5, rtol=1e-5)


def test_transformer_attends_over_time():
    torch.manual_seed(0)
    layer = make_layer("transformer", D, Z).eval()
    x = torch.randn(1, 8, D)
    x2 = x.clone()
    x2[0, 5] += 1.0
    y, y2 = layer(x, torch.tensor([8])), layer(x2, torch.tensor([8]))
    assert not torch.allclose(y[0, 0], y2[0, 0])  # frame 0 sees frame 5
    lin = make_layer("linear", D, Z)
    torch.testing.assert_close(lin(x, torch.tensor([8]))[0, 0], lin(x2, torch.tensor([8]))[0, 0])


def test_heads_default_and_errors():
    assert make_layer("transformer", 512, 64).heads == 8
    assert make_layer("transformer", 200, 64).heads == 2  # largest divisor of d <= d // 64
    with pytest.raises(ValueError, match="kind"):
        make_layer("conv", D, Z)
    with pytest.raises(ValueError, match="divisible"):
        make_layer("transformer", 64, 32, heads=5)
    assert issubclass(MimicError, ValueError)
