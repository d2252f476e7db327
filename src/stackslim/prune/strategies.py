"""Deletion orders: each strategy returns the order in which the deletable layers go.

Every score is computed on the validation split with the teacher's head (never on test).
Layers are 0-based here; layer 0 (the paper's "layer 1") is never deleted, so an order is a
permutation of 1..L-1. `info` dicts use the paper's 1-based layer numbers.

The paper's four (Dorszewski et al. 2025):
    forward   delete 2, 3, ..., L
    backward  delete L, L-1, ..., 2
    bi        ascending Block Influence BI(i) = 1 - cos(h_{i-1}, h_i) (ShortGPT), mean over
              frames, computed once on the full model
    knn-bi    ascending BI(i) = 1 - mKNN(h_{i-1}, h_i) on clip-pooled states (k neighbours)
Ours:
    iterative BI (cosine) re-measured on the pruned model after every deletion
    greedy    at each step delete the layer whose removal changes the teacher's validation
              outputs least: mean over clips of KL(p_teacher || p_pruned) of the class
              distributions (a smooth proxy for the validation accuracy it costs; ties: higher
              validation accuracy)
    blocks    measure the blocks (linear CKA on pooled validation states, `find_blocks`),
              delete the layers inside blocks first and keep each block's first and last
              layer to the end; ascending BI within each group
    greedy-refit  greedy, but each candidate is scored after re-fitting the head on train
              (validation accuracy of the re-fitted head): for the head re-fitted setting
    beam, beam-refit  beam search over deletion orders (width `beam_width`) instead of one
              greedy step at a time. A deleted set S is scored by a(S), the validation accuracy
              with the teacher's head (beam) or a head re-fitted on train (beam-refit); an
              order (l_1..l_m) by the curve objective itself, compared in order:
                  ( k* = max{k : a({l_1..l_k}) >= threshold · a(∅)},  a({l_1..l_k*+1}),
                    Σ_k a({l_1..l_k}) )
              i.e. the most layers deletable on validation, then the accuracy at the first
              depth that misses the threshold (the order nearest to deleting one more), then
              the area under the validation curve. Partial orders are ranked the same way at
              every step; the width keeps the W best. Greedy is beam search of width 1 with a
              one-step score; a greedy choice that looks best at step 1 can block the longest
              curve (greedy-refit's first pick on a LayerDrop teacher).

With `--task asr` (no head; `ScoringContext.quality` set by `prune.asr`) the two strategies that
read the head read the transcripts instead: greedy deletes the layer whose removal keeps the
scored clips' transcripts closest to the teacher's (agreement WER, then the distance of the last
states), and beam scores a set by −(agreement WER) and an order passes at depth k while
WER_k <= WER_0 + margin. The others read only hidden states and run unchanged.

Hidden states here are raw residual-stream states (no final norm): BI measures how much a
layer changes its own input. Under torchrun the runner divides the layer runs between the ranks
and gathers what the scores need (pooled vectors, frame means), so every rank computes the same
scores and follows the same order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from ..heads import ClassifierHead
from ..similarity import block_influence as _block_influence
from ..similarity import find_blocks, linear_cka, mutual_knn
from .stack import StackRunner


@dataclass
class ScoringContext:
    """What a strategy may look at: the validation split through a runner, the teacher head.

    Attributes:
        runner: holds the "validation" split (and "train" for greedy-refit).
        head: the teacher's head.
        num_layers: L, layers of the unpruned stack.
        knn_k: neighbours of the mutual-kNN BI (capped at the number of clips - 1).
        refit: kept layers → a head re-fitted on the train split (greedy-refit only).
        quality: kept layers → a score tuple, higher better, replacing the head's (task asr:
            (−agreement WER, −state distance), `prune.asr.Transcripts.quality`).
        quality_names: what the entries of `quality` are, for the results.
        margin: with `quality`, an order passes at depth k while quality_k[0] >= quality_0[0] −
            margin (beam); None: quality_k >= threshold · quality_0 (accuracies).
    """

    runner: StackRunner
    head: ClassifierHead
    num_layers: int
    knn_k: int = 8
    refit: Callable[[list[int]], ClassifierHead] | None = None
    progress: bool = False
    split: str = "validation"
    threshold: float = 0.95
    beam_width: int = 8
    quality: Callable[[list[int]], tuple[float, ...]] | None = None
    quality_names: tuple[str, ...] = ()
    margin: float | None = None

    def floor(self, a0: float) -> float:
        """The lowest passing score, given the unpruned stack's score a0."""
        return (a0 - self.margin if self.margin is not None else self.threshold * a0) - 1e-12

    @property
    def deletable(self) -> list[int]:
        return list(range(1, self.num_layers))

    @property
    def all_layers(self) -> list[int]:
        return list(range(self.num_layers))

    def block_influence(self, kept: list[int], metric: str = "cosine") -> dict[int, float]:
        """BI of every kept layer inside the stack of kept layers: 0-based layer → BI."""
        if metric == "cosine":  # a mean over frames: each rank's frames, weighted by their count
            bi = self.runner.frames_mean(self.split, kept,
                                         lambda hs: _block_influence(hs, metric="cosine", view="frames"))
        else:  # kNN needs every clip: on the pooled states of all of them
            k = max(1, min(self.knn_k, len(self.runner.splits[self.split]) - 1))
            z = self.runner.pooled_states(self.split, kept).to(torch.float64)  # (N, m+1, D)
            bi = [1.0 - mutual_knn(z[:, i - 1], z[:, i], k=k) for i in range(1, z.shape[1])]
        return {layer: float(b) for layer, b in zip(kept, bi)}


Order = tuple[list[int], dict]


def _ascending(scores: dict[int, float], layers: list[int]) -> list[int]:
    return sorted(layers, key=lambda i: (scores[i], i))


def _one_based(scores: dict[int, float]) -> dict[str, float]:
    return {str(i + 1): round(v, 6) for i, v in sorted(scores.items())}


def forward(ctx: ScoringContext) -> Order:
    return ctx.deletable, {}


def backward(ctx: ScoringContext) -> Order:
    return ctx.deletable[::-1], {}


def bi(ctx: ScoringContext) -> Order:
    scores = ctx.block_influence(ctx.all_layers, "cosine")
    return _ascending(scores, ctx.deletable), {"block_influence": _one_based(scores)}


def knn_bi(ctx: ScoringContext) -> Order:
    scores = ctx.block_influence(ctx.all_layers, "mknn")
    return _ascending(scores, ctx.deletable), {"block_influence": _one_based(scores)}


def iterative(ctx: ScoringContext) -> Order:
    kept, order, steps = ctx.all_layers, [], []
    while len(order) < len(ctx.deletable):
        scores = ctx.block_influence(kept, "cosine")
        pick = _ascending(scores, [i for i in kept if i != 0])[0]
        steps.append(_one_based(scores))
        order.append(pick)
        kept = [i for i in kept if i != pick]
    return order, {"block_influence_per_step": steps}


def _greedy(ctx: ScoringContext, score: Callable[[list[int]], tuple[float, float]], name: str,
            names: list[str]) -> Order:
    """Delete, step by step, the kept layer whose removal gives the highest `score` (a tuple
    compared in order; the later layer on exact ties)."""
    kept, order, steps = ctx.all_layers, [], []
    bar = tqdm(total=len(ctx.deletable), desc=name, unit="step", disable=not ctx.progress, leave=False)
    while len(order) < len(ctx.deletable):
        cands = {c: score([i for i in kept if i != c]) for c in kept if c != 0}
        pick = max(cands, key=lambda c: (cands[c], c))  # later layer on exact ties
        steps.append({"deleted": pick + 1, "score": names,
                      "candidates": {str(c + 1): [round(x, 6) for x in v] for c, v in sorted(cands.items())}})
        order.append(pick)
        kept = [i for i in kept if i != pick]
        bar.update(1)
    bar.close()
    return order, {"steps": steps}


def greedy(ctx: ScoringContext) -> Order:
    if ctx.quality is not None:
        return _greedy(ctx, ctx.quality, "greedy", list(ctx.quality_names))
    full = ctx.all_layers

    def score(kept: list[int]) -> tuple[float, float]:
        return -ctx.runner.kl(ctx.head, ctx.split, full, kept), ctx.runner.accuracy(ctx.head, ctx.split, kept)

    return _greedy(ctx, score, "greedy", ["-val_kl_to_teacher", "val_accuracy"])


def greedy_refit(ctx: ScoringContext) -> Order:
    if ctx.refit is None:
        raise ValueError("greedy-refit needs a head re-fitting function (ScoringContext.refit)")
    refit = ctx.refit

    def score(kept: list[int]) -> tuple[float, float]:
        head = refit(kept)
        return ctx.runner.accuracy(head, ctx.split, kept), -ctx.runner.nll(head, ctx.split, kept)

    return _greedy(ctx, score, "greedy-refit", ["val_accuracy_refit", "-val_nll_refit"])


def _beam(ctx: ScoringContext, acc: Callable[[list[int]], float], name: str) -> Order:
    """Beam search over orders of the deletable layers; `acc(kept)` = validation accuracy of
    the stack of `kept` layers (memoised here per deleted set)."""
    memo: dict[frozenset[int], float] = {}

    def a(deleted: list[int]) -> float:
        key = frozenset(deleted)
        if key not in memo:
            memo[key] = acc([i for i in ctx.all_layers if i not in key])
        return memo[key]

    need = ctx.floor(a([]))

    def objective(order: list[int]) -> tuple[int, float, float, tuple[int, ...]]:
        curve = [a(order[:k]) for k in range(len(order) + 1)]
        k = max(k for k, v in enumerate(curve) if v >= need)
        # among orders deleting k layers, the one nearest to deleting k + 1: the accuracy at the
        # first depth that fails (inf while the partial order has not failed yet). A validation
        # split of a few hundred clips misses the threshold by a clip or two, so this is the
        # order most likely to delete k + 1 on test; the area alone favours early steps.
        first_fail = curve[k + 1] if k + 1 < len(curve) else float("inf")
        return k, first_fail, sum(curve), tuple(order)  # the order itself: a deterministic last tie-break

    beams: list[list[int]] = [[]]
    bar = tqdm(total=len(ctx.deletable), desc=name, unit="step", disable=not ctx.progress, leave=False)
    steps = []
    for _ in ctx.deletable:
        grown = {tuple(b + [c]) for b in beams for c in ctx.deletable if c not in b}
        ranked = sorted((list(o) for o in grown), key=objective, reverse=True)
        # one order per deleted set (the best-ranked): what follows depends only on the set, so
        # orders of the same set would crowd distinct sets out of the beam
        best_per_set: dict[frozenset[int], list[int]] = {}
        for o in ranked:
            best_per_set.setdefault(frozenset(o), o)
        beams = list(best_per_set.values())[: max(1, ctx.beam_width)]
        steps.append([[i + 1 for i in b] for b in beams])
        bar.update(1)
    bar.close()
    best = beams[0]
    k, _, area, _ = objective(best)
    per_set = {",".join(str(i + 1) for i in sorted(s)) or "-": round(v, 6)
               for s, v in sorted(memo.items(), key=lambda x: (len(x[0]), sorted(x[0])))}
    return best, {"beam_width": ctx.beam_width, "beams_per_step": steps,
                  "val_deletable": k, "val_area": round(area, 6), "sets_scored": len(memo),
                  "val_accuracy_per_set" if ctx.quality is None else "score_per_set": per_set}


def beam(ctx: ScoringContext) -> Order:
    if ctx.quality is not None:
        quality = ctx.quality
        return _beam(ctx, lambda kept: quality(kept)[0], "beam")
    return _beam(ctx, lambda kept: ctx.runner.accuracy(ctx.head, ctx.split, kept), "beam")


def beam_refit(ctx: ScoringContext) -> Order:
    if ctx.refit is None:
        raise ValueError("beam-refit needs a head re-fitting function (ScoringContext.refit)")
    refit = ctx.refit
    return _beam(ctx, lambda kept: ctx.runner.accuracy(refit(kept), ctx.split, kept), "beam-refit")


def cka_matrix(ctx: ScoringContext) -> torch.Tensor:
    """(L+1, L+1) linear CKA between the clip-pooled validation states 0..L of the full stack."""
    z = ctx.runner.pooled_states(ctx.split, ctx.all_layers)  # (N, L+1, D)
    S = torch.eye(z.shape[1], dtype=torch.float64)
    for a in range(z.shape[1]):
        for b in range(a + 1, z.shape[1]):
            S[a, b] = S[b, a] = linear_cka(z[:, a], z[:, b])
    return S


def blocks(ctx: ScoringContext) -> Order:
    found = find_blocks(cka_matrix(ctx))
    edges = {layer - 1 for blk in found.blocks for layer in (blk[0], blk[-1])}  # 1-based → 0-based
    scores = ctx.block_influence(ctx.all_layers, "cosine")
    inner = _ascending(scores, [i for i in ctx.deletable if i not in edges])
    outer = _ascending(scores, [i for i in ctx.deletable if i in edges])
    return inner + outer, {"blocks": found.blocks, "block_influence": _one_based(scores)}


STRATEGIES: dict[str, Callable[[ScoringContext], Order]] = {
    "forward": forward,
    "backward": backward,
    "bi": bi,
    "knn-bi": knn_bi,
    "iterative": iterative,
    "greedy": greedy,
    "blocks": blocks,
    "greedy-refit": greedy_refit,
    "beam": beam,
    "beam-refit": beam_refit,
}


def deletion_order(name: str, ctx: ScoringContext) -> Order:
    """The order (0-based layers) of strategy `name`, and what it measured (1-based layers)."""
    order, info = STRATEGIES[name](ctx)
    if sorted(order) != ctx.deletable:
        raise AssertionError(f"strategy {name} returned {order}, not a permutation of {ctx.deletable}")
    return order, info


def each_order(names: list[str] | tuple[str, ...], ctx: ScoringContext, progress: bool = True
               ) -> Iterator[tuple[str, list[int], dict]]:
    """(name, order, info) of every strategy in turn, under one progress bar (the caller
    measures each order's curve before the next strategy runs)."""
    bar = tqdm(names, desc="strategies", unit="strategy", disable=not progress, leave=False)
    for name in bar:
        bar.set_postfix(strategy=name)
        yield (name, *deletion_order(name, ctx))
    bar.close()
