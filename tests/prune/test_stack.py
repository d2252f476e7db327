"""The runner computes what `Encoder.without_layers` computes, re-uses prefixes, divides its
layer runs between ranks, and the head on pooled vectors equals the head on frames."""
from __future__ import annotations

import itertools

import pytest
import torch

from stackslim import runtime
from stackslim.heads import ClassifierHead
from stackslim.models import RANDOM_FAMILIES, load_encoder
from stackslim.prune import Split, StackRunner, front_end_states, head_logits, kept_layers
from stackslim.prune.strategies import ScoringContext


def _runner(enc, ds, idx, batch_size=4):
    store = front_end_states(enc, ds, idx, progress=False)
    split = Split.build(store, idx, torch.zeros(len(idx), dtype=torch.long), batch_size=batch_size)
    return StackRunner(enc, {"s": split}), split


@pytest.mark.parametrize("family", RANDOM_FAMILIES)
def test_runner_matches_without_layers(family, tones):
    enc = load_encoder(f"random:{family}")
    runner, split = _runner(enc, tones, [0, 20, 50], batch_size=2)
    for deleted in ([1, 3], [0] if family == "wavlm" else [2]):
        kept = kept_layers(enc.num_layers, deleted)
        small = enc.without_layers(deleted)
        for b, (x0, n) in enumerate(zip(split.x0, split.lengths)):
            with torch.no_grad():
                ref = small.stack_forward(x0, n, keep=False).states[-1]
            mask = (torch.arange(ref.shape[1])[None] < n[:, None]).float()[..., None]
            want = (ref * mask).sum(1) / n[:, None]
            got = runner.pooled("s", kept)[2 * b: 2 * b + len(n)]
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_prefixes_are_reused(tones):
    enc = load_encoder("random:hubert")
    runner, _ = _runner(enc, tones, list(range(6)))
    runner.pooled("s", [0, 1, 2, 3])
    assert runner.layer_runs == 4 * 6
    runner.pooled("s", [0, 1, 2])  # a cached prefix: no layer runs
    runner.pooled("s", [0, 1, 3])  # re-uses (0, 1): one layer run
    assert runner.layer_runs == 5 * 6


def test_front_end_runs_once_per_clip(tones):
    enc = load_encoder("random:wav2vec2")
    store = front_end_states(enc, tones, [0, 1, 2], progress=False)
    again = front_end_states(enc, tones, [1, 2, 3], store=store, progress=False)
    assert again is store and sorted(store) == [0, 1, 2, 3]


def test_head_on_pooled_equals_head_on_frames():
    torch.manual_seed(0)
    head = ClassifierHead(16, 5, proj_size=8)
    h = torch.randn(3, 7, 16)
    n = torch.tensor([7, 4, 2])
    mask = (torch.arange(7)[None] < n[:, None]).float()[..., None]
    pooled = (h * mask).sum(1) / n[:, None]
    torch.testing.assert_close(head_logits(head, pooled), head(h, n), atol=1e-6, rtol=1e-5)


def test_kl_to_the_full_model(tones):
    enc = load_encoder("random:hubert")
    runner, split = _runner(enc, tones, [0, 20, 50])
    torch.manual_seed(0)
    head = ClassifierHead(enc.hidden_size, 3, proj_size=8)
    full = [0, 1, 2, 3]
    assert runner.kl(head, "s", full, full) == pytest.approx(0.0, abs=1e-7)
    assert runner.kl(head, "s", full, [0, 2]) > 0


def _as_ranks(monkeypatch, world: int, work):
    """`work()` as each of `world` ranks in this one process, as torch.distributed would run it:
    a first pass records what each rank sends to each all-gather (and gives it back its own
    part), a second answers each all-gather with every rank's part. Returns the second pass's
    results, one per rank."""
    sent: list[list] = [[] for _ in range(world)]
    monkeypatch.setattr(runtime, "world_size", lambda: world)
    for replay in (False, True):
        results = []
        for r in range(world):
            calls = itertools.count()

            def gather(obj, r=r, calls=calls):
                k = next(calls)
                if not replay:
                    sent[r].append(obj)
                    return [obj]
                return [sent[q][k] for q in range(world)]

            monkeypatch.setattr(runtime, "rank", lambda r=r: r)
            monkeypatch.setattr(runtime, "all_gather_objects", gather)
            results.append(work())
    return results


def test_two_ranks_divide_the_layer_runs_and_gather_the_one_process_scores(tones, monkeypatch):
    enc = load_encoder("random:hubert")
    idx = list(range(0, 54, 5))  # 11 clips: 6 on rank 0, 5 on rank 1
    store = front_end_states(enc, tones, idx, progress=False)
    split = Split.build(store, idx, torch.arange(len(idx)), batch_size=4)
    kept = [0, 2, 3]

    def work():
        runner = StackRunner(enc, {"validation": split})
        ctx = ScoringContext(runner, head=None, num_layers=enc.num_layers, knn_k=3)
        return (runner.local["validation"].rows, runner.pooled("validation", kept),
                runner.pooled_states("validation", kept), ctx.block_influence(kept, "cosine"),
                ctx.block_influence(kept, "mknn"), runner.layer_runs)

    rows, pooled, states, cos_bi, knn_bi, runs = work()  # one process
    assert runs == len(idx) * len(kept)  # layer 0 while building the contexts, then 2 and 3
    for r, (rows_r, pooled_r, states_r, cos_r, knn_r, runs_r) in enumerate(_as_ranks(monkeypatch, 2, work)):
        assert rows_r == split.rows[r::2]  # strided over the length-sorted clips
        assert runs_r == len(rows_r) * len(kept)  # only its own clips
        # every rank holds every clip's numbers, in the split's order (batching differs: rounding)
        torch.testing.assert_close(pooled_r, pooled, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(states_r, states, atol=1e-5, rtol=1e-4)
        assert cos_r == pytest.approx(cos_bi, abs=1e-6) and knn_r == pytest.approx(knn_bi, abs=1e-9)
