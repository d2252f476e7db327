"""Alignment of FFN neurons and attention heads across a group: same function, lower spread."""
from __future__ import annotations

import copy

import pytest
import torch
from sharehelpers import FAMILIES, max_diff

from stackslim.models import load_encoder
from stackslim.share import to_residual
from stackslim.share.align import align_groups, match, permute_ffn, permute_heads, weight_spread
from stackslim.share.convert import layer_matrices


def test_match_recovers_a_permutation():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(10, 6, generator=g)
    perm = torch.randperm(10, generator=g)
    other = torch.empty_like(ref)
    other[perm] = ref  # other[perm[i]] = ref[i]
    assert torch.equal(match(ref, other), perm)


@pytest.mark.parametrize("family", FAMILIES)
def test_alignment_leaves_every_layer_unchanged(family, clips):
    enc = load_encoder(f"random:{family}")
    aligned = copy.deepcopy(enc)
    report = align_groups(aligned, [[0, 1], [2, 3]])
    assert report["reference"] == [1, 3] and report["heads"] == (family != "wavlm")
    fc1 = layer_matrices(enc.family)[4]
    assert not torch.equal(aligned.layers[0].get_submodule(fc1).weight,
                           enc.layers[0].get_submodule(fc1).weight)  # something moved
    assert max_diff(enc.hidden_states(clips), aligned.hidden_states(clips)) < 1e-5
    # the distance to the reference, summed over the maps permuted together, can only fall
    names = layer_matrices(enc.family)
    units = [names[4:]] + ([names[:4]] if report["heads"] else [])
    dist = {id(m): [_distance(m, unit, 0, 1) + _distance(m, unit, 2, 3) for unit in units]
            for m in (enc, aligned)}
    after, before = dist[id(aligned)], dist[id(enc)]
    assert all(a <= b + 1e-9 for a, b in zip(after, before)) and after[0] < before[0]


@torch.no_grad()
def _distance(enc, names, i, j) -> float:
    """Σ over maps `names` of ‖W_i − W_j‖² + ‖b_i − b_j‖² between layers i and j."""
    total = 0.0
    for n in names:
        a, b = enc.layers[i].get_submodule(n), enc.layers[j].get_submodule(n)
        total += float(((a.weight - b.weight) ** 2).sum())
        if a.bias is not None and n != names[-1]:  # the last map's bias is not permuted
            total += float(((a.bias - b.bias) ** 2).sum())
    return total


def _planted(family: str = "whisper"):
    """A random encoder whose layer 1 is layer 0 with its neurons and heads shuffled + noise."""
    enc = load_encoder(f"random:{family}")
    names = layer_matrices(family)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        enc.layers[1].load_state_dict(enc.layers[0].state_dict())
        for p in enc.layers[1].parameters():
            p.add_(0.05 * p.std() * torch.randn(p.shape, generator=g))
        f = enc.layers[1].get_submodule(names[4]).weight.shape[0]
        permute_ffn(enc.layers[1], torch.randperm(f, generator=g), names[4], names[5])
        permute_heads(enc.layers[1], torch.randperm(4, generator=g), names[:4], 4)
    return enc, names


def test_alignment_undoes_a_planted_shuffle_and_lowers_spread(clips):
    enc, names = _planted()
    before = {n: weight_spread([enc.layers[i].get_submodule(n).weight for i in (0, 1)]) for n in names}
    shared_plain = to_residual(enc, groups=[[0, 1], [2], [3]], rank=2)
    shared = to_residual(enc, groups=[[0, 1], [2], [3]], rank=2, align=True)
    rep = shared.alignment
    for n in names:
        assert rep["spread_before"][n] == pytest.approx(before[n])
        assert rep["spread_after"][n] < 0.01 < rep["spread_before"][n], n
    # same rank, same init: aligned layers share far better
    err = lambda s: sum(c["rel_error"] for c in s.conversion if c["layer"] in (0, 1))  # noqa: E731
    assert err(shared) < 0.2 * err(shared_plain)
    assert max_diff(enc.hidden_states(clips), shared.hidden_states(clips)) < \
        max_diff(enc.hidden_states(clips), shared_plain.hidden_states(clips))
