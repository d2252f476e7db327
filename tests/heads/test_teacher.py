"""fit_head / predict train and evaluate the paper's head on pooled frames: check that this is
the same function as the head on the frames, and that fitting learns a separable task."""
import torch

from stackslim.heads import ClassifierHead, accuracy, fit_head, predict
from stackslim.models.cache import StateCache, pooled_cache
from stackslim.train import TrainConfig


def _cache(n: int = 24, D: int = 16, classes: int = 3, seed: int = 0) -> tuple[StateCache, torch.Tensor]:
    """Clips of 3..9 frames whose mean frame is shifted along one axis per class."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    seqs = []
    for i in range(n):
        T = int(torch.randint(3, 10, (1,), generator=g))
        x = torch.randn(T, D, generator=g)
        x[:, int(y[i])] += 3.0
        seqs.append(x)
    lengths = torch.tensor([s.shape[0] for s in seqs])
    return StateCache(states={-1: seqs}, lengths=lengths, indices=list(range(n))), y


def test_head_on_pooled_frames_equals_head_on_frames():
    cache, _ = _cache()
    head = ClassifierHead(16, 3, proj_size=8)
    h, n = cache.batch(-1, range(len(cache)))
    p, m = cache.as_pooled(-1).batch(-1, range(len(cache)))
    assert p.shape == (len(cache), 1, 16) and bool((m == 1).all())
    torch.testing.assert_close(head(p, m), head(h, n), rtol=1e-5, atol=1e-5)


def test_as_pooled_keeps_indices_and_is_idempotent():
    cache, _ = _cache()
    cache.indices = [10 + i for i in range(len(cache))]
    pooled = cache.as_pooled(-1)
    assert pooled.indices == cache.indices
    assert pooled.as_pooled(-1) is pooled
    single = pooled_cache(torch.zeros(4, 5), key=0)
    assert single.states[0][0].shape == (1, 5) and single.indices == [0, 1, 2, 3]


def test_predict_matches_argmax_of_head_on_frames():
    cache, _ = _cache(seed=1)
    head = ClassifierHead(16, 3, proj_size=8)
    h, n = cache.batch(-1, range(len(cache)))
    assert torch.equal(predict(head, cache), head(h, n).argmax(-1))


def test_fit_head_learns_a_separable_task():
    train_c, train_y = _cache(48, seed=2)
    val_c, val_y = _cache(24, seed=3)
    head, log = fit_head(train_c, train_y, val_c, val_y, 3, TrainConfig(epochs=40, lr=1e-2, seed=0),
                         proj_size=8, progress=False)
    assert accuracy(head, val_c, val_y) >= 0.9
    assert log.train_loss[-1] < log.train_loss[0]
