"""Conversion of pretrained (here: random) encoders: exactness at full rank, errors, groups."""
from __future__ import annotations

import pytest
import torch
from sharehelpers import FAMILIES, max_diff

from stackslim.models import EncoderError, load_encoder, wrap_model
from stackslim.models.random_configs import random_model
from stackslim.share import ResidualLinear, SharedEncoder, block_groups, from_config, to_residual
from stackslim.share.grouping import fixed_groups, resolve_groups, split_run


@pytest.mark.parametrize("family", FAMILIES)
def test_full_rank_reproduces_dense_outputs(family, clips):
    enc = load_encoder(f"random:{family}")
    shared = to_residual(enc, groups=3, rank="full", diag=True)
    assert isinstance(shared, SharedEncoder) and shared.family == enc.family
    assert shared.groups == [[0, 1, 2], [3]]
    assert all(isinstance(shared.residual(i, m), ResidualLinear)
               for i in range(4) for m in shared.spec.matrices)
    assert max(c["rel_error"] for c in shared.conversion) < 1e-5
    assert max_diff(enc.hidden_states(clips), shared.hidden_states(clips)) < 1e-4
    assert not any(isinstance(m, ResidualLinear) for m in enc.modules())  # enc untouched


def test_rank_64_and_no_diag_is_also_exact(clips):
    enc = load_encoder("random:whisper")  # d = 64: rank 64 is full for every matrix
    shared = to_residual(enc, groups=[[0, 1, 2, 3]], rank=64, diag=False)
    assert max_diff(enc.hidden_states(clips), shared.hidden_states(clips)) < 1e-4


def test_rank_above_matrix_size_names_the_matrix():
    enc = load_encoder("random:whisper")
    with pytest.raises(EncoderError, match=r"rank 65 .*self_attn\.q_proj \(64x64\) in layer 0"):
        to_residual(enc, rank=65)
    with pytest.raises(EncoderError, match="rank must be"):
        to_residual(enc, rank=-1)


def test_error_falls_with_rank_and_diag_helps():
    enc = load_encoder("random:hubert")
    errs = {}
    for r in (0, 8, 32):
        for diag in (False, True):
            s = to_residual(enc, groups=2, rank=r, diag=diag)
            errs[r, diag] = sum(c["rel_error"] for c in s.conversion)
            assert set(s.conversion_summary()) == set(s.spec.matrices)
    assert errs[0, False] > errs[8, False] > errs[32, False]
    assert errs[8, True] < errs[8, False]


def test_shared_objects_and_shared_norms(clips):
    enc = load_encoder("random:wav2vec2")
    s = to_residual(enc, groups=2, rank=4, share_norms=True)
    q = [s.residual(i, "attention.q_proj") for i in range(4)]
    assert q[0].shared is q[1].shared and q[1].shared is not q[2].shared
    assert q[0].bias is q[1].bias and q[0].A is not q[1].A
    assert s.layers[0].layer_norm is s.layers[1].layer_norm
    assert s.layers[1].final_layer_norm is not s.layers[2].final_layer_norm
    per = to_residual(enc, groups=2, rank=4, share_norms=False)
    assert per.residual(0, "attention.q_proj").bias is not per.residual(1, "attention.q_proj").bias
    assert s.num_params() < per.num_params() < enc.num_params()
    # a gradient through layer 0 alone reaches the group's W_shared and moves layer 1's copy
    x0, n = s.front_end(clips)
    ctx = s.stack_context(x0, n)
    s.run_layer(0, x0, ctx).pow(2).mean().backward()
    assert q[1].shared.grad is not None and q[1].A.grad is None


def test_groups_fixed_blocks_explicit():
    assert fixed_groups(7, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert split_run(range(8), 3) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert block_groups([[1, 2, 3, 4, 5], [6, 7]], 7) == [[0, 1, 2, 3, 4], [5, 6]]
    assert block_groups([[1, 2, 3, 4, 5], [6, 7]], 7, max_size=2) == [[0, 1], [2, 3], [4], [5, 6]]
    enc = load_encoder("random:hubert")
    assert resolve_groups(enc, [[3, 2], [0, 1]]) == [[0, 1], [2, 3]]
    for bad, msg in (([[0, 1], [1, 2, 3]], "two groups"), ([[0, 1, 2]], "layer 3 is in no group"),
                     ([[0, 1, 2, 3, 4]], "layer 4"), ("blocks", "needs the blocks"), ("x", "groups must")):
        with pytest.raises(EncoderError, match=msg):
            resolve_groups(enc, bad)


def test_groups_from_measured_blocks(clips):
    pytest.importorskip("stackslim.similarity")
    enc = load_encoder("random:whisper")
    waves = clips * 3
    s = to_residual(enc, groups="blocks", rank=4, waves=waves)
    assert sorted(i for g in s.groups for i in g) == [0, 1, 2, 3]
    s2 = to_residual(enc, groups="blocks", rank=4, waves=waves, max_size=1)
    assert s2.groups == [[0], [1], [2], [3]]


def test_from_scratch_starts_at_the_shared_map(clips):
    cfg = random_model("whisper").config
    s = from_config(cfg, groups=2, rank=4, diag=True, share_norms=True)
    lin0, lin1 = s.residual(0, "fc1"), s.residual(1, "fc1")
    assert torch.count_nonzero(lin0.A) == 0 and torch.count_nonzero(lin0.B) > 0
    torch.testing.assert_close(lin0.weight, lin1.weight)  # A = 0, d = 0: both are W_shared
    assert s.hidden_states(clips).states[-1].isfinite().all()


def test_without_layers_keeps_groups(clips):
    enc = wrap_model(random_model("wav2vec2", num_layers=6))
    s = to_residual(enc, groups=3, rank=4)
    pruned = s.without_layers([1])
    assert isinstance(pruned, SharedEncoder) and pruned.groups == [[0, 1], [2, 3, 4]]
    assert pruned.hidden_states(clips).num_layers == 5
    with pytest.raises(EncoderError, match="already shared"):
        to_residual(s)


def test_config_group_spec():
    from stackslim.share.config import ShareConfig, ShareError

    assert ShareConfig().group_spec() == (3, None)
    assert ShareConfig(group=2).group_spec() == (2, None)
    assert ShareConfig(groups="blocks").group_spec() == ("blocks", None)
    assert ShareConfig(groups="blocks", group=4).group_spec() == ("blocks", 4)
    assert ShareConfig(groups="0-2,3,4-5").group_spec() == ([[0, 1, 2], [3], [4, 5]], None)
    with pytest.raises(ShareError, match="ranges"):  # refused when the config is made
        ShareConfig(groups="first-two")


def test_delegates_adapter_attributes():
    s = to_residual(load_encoder("random:whisper"), rank=2)
    assert s.mode == "unpadded" and s.max_frames == 1500
    with pytest.raises(AttributeError):
        s.no_such_attribute


def test_a_new_init_method_plugs_in():
    from stackslim.share import INITS, register_init
    from stackslim.share.convert import GroupInit

    seen = []

    @register_init("test-first-layer")
    def first(weights, ranks, diag, info):
        seen.append((info["layers"], info["matrix"], info["calib"]))
        z = torch.zeros_like(weights[0])
        return GroupInit(weights[0], [(z[:, :r], z[:r], z.diagonal() if diag else None)
                                      for r in ranks])

    try:
        enc = load_encoder("random:hubert")
        s = to_residual(enc, groups=2, rank=2, init="test-first-layer", init_options={"calib": 7})
        assert seen[0] == ([0, 1], "attention.q_proj", 7) and len(seen) == 12
        err = {(c["layer"], c["matrix"]): c["rel_error"] for c in s.conversion}
        assert err[0, "feed_forward.intermediate_dense"] == 0.0
        assert err[1, "feed_forward.intermediate_dense"] > 0.1
    finally:
        INITS.pop("test-first-layer")
