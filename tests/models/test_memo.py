"""remember_states: the same valid frames as a fresh forward, served without one; forgets when
weights change; tied to the encoder object."""
import numpy as np
import pytest
import torch

from stackslim.models import load_encoder
from stackslim.models.memo import clip_key, features_and_states, memo_of, remember_states


def _waves(seed: int = 0, n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(int(16000 * s)).astype(np.float32) * 0.1 for s in (0.6, 1.0, 0.8)[:n]]


def _valid(hs, b: int, j: int) -> torch.Tensor:
    return hs.states[j][b, : int(hs.lengths[b])]


@pytest.mark.parametrize("family", ["whisper", "wav2vec2"])
def test_memo_serves_the_same_valid_frames_in_any_batching(family):
    enc = load_encoder(f"random:{family}")
    waves = _waves()
    fresh = enc.hidden_states(waves)
    with remember_states(enc) as memo:
        enc.hidden_states(waves[:2])
        enc.hidden_states(waves[2:])
        assert memo.misses == 3 and memo.hits == 0
        again = enc.hidden_states(list(reversed(waves)))  # other order, other padding
        assert memo.hits == 3 and memo.misses == 3
    assert again.final_norm == fresh.final_norm and len(again.states) == len(fresh.states)
    for b_new, b_old in enumerate(reversed(range(3))):
        assert int(again.lengths[b_new]) == int(fresh.lengths[b_old])
        for j in range(len(fresh.states)):
            torch.testing.assert_close(_valid(again, b_new, j), _valid(fresh, b_old, j), rtol=1e-4, atol=2e-5)


def test_memo_keys_final_norm_apart_and_forgets_changed_weights():
    enc = load_encoder("random:whisper")
    waves = _waves(1, 2)
    with remember_states(enc) as memo:
        enc.hidden_states(waves)
        enc.hidden_states(waves, final_norm=False)
        assert memo.misses == 4  # final_norm is part of the key
        before = enc.hidden_states(waves).states[-1].clone()
        with torch.no_grad():
            enc.layers[-1].fc2.weight.add_(0.5)  # in place: bumps the version counter
        after = enc.hidden_states(waves).states[-1]
        assert memo.misses == 6
        assert not torch.allclose(before, after)


def test_memo_is_scoped_to_the_block_and_the_object():
    enc = load_encoder("random:whisper")
    with remember_states(enc) as memo:
        with remember_states(enc) as inner:
            assert inner is memo
        assert memo_of(enc) is memo
        assert memo_of(enc.without_layers([0])) is None
    assert memo_of(enc) is None


def test_clip_key_depends_on_samples_only():
    w = _waves(2, 1)[0]
    assert clip_key(w) == clip_key(w.copy()) == clip_key(torch.from_numpy(w))
    w2 = w.copy()
    w2[100] += 1e-3
    assert clip_key(w2) != clip_key(w)


def test_features_and_states_from_the_memo():
    enc = load_encoder("random:whisper")
    waves = _waves(3)
    h0, hs0 = features_and_states(enc, waves)
    with remember_states(enc) as memo:
        enc.hidden_states(waves)  # computes and keeps the features too
        h1, hs1 = features_and_states(enc, waves)
        enc.hidden_states(waves)
        assert (memo.misses, memo.hits) == (3, 6)
    for b in range(3):
        n = int(hs0.lengths[b])
        torch.testing.assert_close(h1[b, :n], h0[b, :n], rtol=1e-4, atol=2e-5)
        torch.testing.assert_close(hs1.states[-1][b, :n], hs0.states[-1][b, :n], rtol=1e-4, atol=2e-5)
