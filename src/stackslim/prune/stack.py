"""Running any subset of an encoder's layers from cached hidden state 0, re-using prefixes.

A model with kept layers k_1 < k_2 < ... < k_m (0-based) computes

    h_0 = front_end(x)                  # (B, T, D), cached once per clip
    h_j = layer_{k_j}(h_{j-1})          # j = 1..m, padded keys masked
    out = norm(h_m)                     # the family's final norm, when it has one
    p   = (1 / n) Σ_{t < n} out_t       # (B, D) mean over the clip's n valid frames

so the front end runs once per clip, not once per candidate, and the output of every prefix
(k_1..k_j) is kept up to a memory budget: two candidates that share their first j kept layers
share those j layer runs. `Encoder.without_layers` builds the same model as a copy; the tests
check that both compute the same thing.

The paper's head is linear up to the pooling (projector, mean over frames, classifier), so its
logits are a function of the pooled vector alone: head(h, n) = W_c (W_p p + b_p) + b_c.
Heads are therefore evaluated and re-fitted on pooled vectors (`head_logits`).

Under torchrun the layer runs are divided: of a split's clips in its (length-sorted) order,
rank r runs clips r, r + W, ... (`Split.shard`), and only per-clip results travel: the pooled
(N, D) vectors, pooled states, or a frame mean with its frame count. They are gathered back
into the split's order (`merge_shards`), so every rank holds the same numbers and takes the
same decisions (strategies branch on them; a rank that chose differently would wait forever in
the next collective). Each rank keeps only its own prefixes, within its own `cache_mb`.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import runtime
from ..data import AudioDataset
from ..heads import ClassifierHead
from ..models.base import Encoder, HiddenStates, as_waves
from ..models.cache import ShardedBatches, StateCache
from ..similarity import samples


def front_end_states(enc: Encoder, dataset: AudioDataset, indices: Sequence[int],
                     store: dict[int, torch.Tensor] | None = None, batch_size: int = 32,
                     progress: bool = True) -> dict[int, torch.Tensor]:
    """Hidden state 0 (T_i, D) of every clip in `indices`, added to `store` (kept entries re-used).

    `store` may be shared between calls on the same encoder front end (e.g. two tasks on one
    data set, or a teacher before and after fine-tuning the stack, which leaves the front end).
    """
    store = {} if store is None else store
    todo = sorted({int(i) for i in indices} - set(store))
    enc.model.eval()
    bar = tqdm(total=len(todo), desc="front end", unit="clip",
               disable=not progress or not todo or not runtime.is_main(), leave=False)
    new: dict[int, torch.Tensor] = {}
    with torch.no_grad():  # under torchrun each rank encodes its batches; all ranks get all below
        for waves, idx in ShardedBatches(dataset.batches(todo, batch_size)):
            x0, lengths = enc.front_end(as_waves(waves))  # (B, T, D), (B,)
            for b, (i, n) in enumerate(zip(idx, lengths.tolist())):
                new[i] = x0[b, :n].float().clone()
            bar.update(len(idx))
    bar.close()
    if runtime.is_distributed():  # every rank gets every rank's clips
        for part in runtime.all_gather_objects({i: t.cpu() for i, t in new.items()}):
            store.update(part)
    else:
        store.update(new)
    return store


@dataclass
class Split:
    """The clips of one split as padded batches of hidden state 0 (sorted by length).

    Attributes:
        x0: per batch (B, T, D) hidden state 0, zero past each clip's length.
        lengths: per batch (B,) valid frames.
        y: (N,) class ids, in batch order.
        rows: data set index of each clip, in batch order.
        batch_size: clips per batch (the last batch may hold fewer).
    """

    x0: list[torch.Tensor]
    lengths: list[torch.Tensor]
    y: torch.Tensor
    rows: list[int]
    batch_size: int = 32

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def build(cls, store: dict[int, torch.Tensor], indices: Sequence[int], y: torch.Tensor,
              batch_size: int = 32) -> "Split":
        """Batches of `store[i]` for `indices` (with labels `y` in the same order)."""
        order = sorted(range(len(indices)), key=lambda j: -store[int(indices[j])].shape[0])
        rows = [int(indices[j]) for j in order]
        cache = StateCache(states={0: [store[i] for i in rows]},
                           lengths=torch.tensor([store[i].shape[0] for i in rows]), indices=rows)
        xs, ns = [], []
        for s in range(0, len(rows), batch_size):
            x, n = cache.batch(0, range(s, min(s + batch_size, len(rows))))
            xs.append(x)
            ns.append(n)
        return cls(x0=xs, lengths=ns, y=y[torch.tensor(order, dtype=torch.long)], rows=rows,
                   batch_size=batch_size)

    def shard(self) -> "Split":
        """This rank's clips: positions r, r + W, ... of the split's order, batched again (the
        split itself in one process). Strided, so every rank gets the same mix of lengths;
        local clip i of rank r is clip i·W + r of the split (`merge_shards` undoes it)."""
        if runtime.world_size() == 1:
            return self
        mine = runtime.shard(range(len(self)))
        seqs = dict(zip(self.rows, self.as_cache().states[0]))
        return Split.build(seqs, [self.rows[j] for j in mine], self.y[torch.tensor(mine, dtype=torch.long)],
                           self.batch_size)

    def as_cache(self) -> StateCache:
        """The split as a StateCache of state 0 (one unpadded tensor per clip, batch order)."""
        seqs = [x[b, :n] for x, ns in zip(self.x0, self.lengths) for b, n in enumerate(ns.tolist())]
        return StateCache(states={0: seqs}, lengths=torch.cat(self.lengths), indices=list(self.rows))


def merge_shards(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-rank rows (n_r, ...) of `Split.shard`'s clips → (N, ...) rows in the split's order:
    row i·W + r is row i of part r."""
    if len(parts) == 1:
        return parts[0]
    out = parts[0].new_empty(sum(len(p) for p in parts), *parts[0].shape[1:])
    for r, p in enumerate(parts):
        out[r::len(parts)] = p
    return out


@torch.no_grad()
def head_logits(head: ClassifierHead, pooled: torch.Tensor) -> torch.Tensor:
    """(N, D) pooled last states → (N, C) logits: W_c (W_p p + b_p) + b_c."""
    head.eval()
    return head.classifier(head.projector(pooled))


class StackRunner:
    """Runs kept-layer subsets of `enc` on fixed splits; prefix outputs cached up to `cache_mb`.

    Layer indices are 0-based positions in `enc.layers`. `enc` must not change while a runner
    uses it (build a new runner after fine-tuning). Under torchrun each rank runs the layers on
    its shard of every split (`Split.shard`); `outputs` and `states` are this rank's clips,
    `pooled` and `pooled_states` every clip (gathered, so every rank must make those calls in
    the same order).
    """

    def __init__(self, enc: Encoder, splits: dict[str, Split], cache_mb: int = 2048):
        self.enc = enc
        self.splits = splits  # every clip: labels, sizes, the order of gathered rows
        self.local = {name: sp.shard() for name, sp in splits.items()}  # the clips this rank runs
        self.budget = int(cache_mb) * 2**20
        self._prefix: OrderedDict[tuple[str, tuple[int, ...]], list[torch.Tensor]] = OrderedDict()
        self._bytes = 0
        self._ctx: dict[str, list[dict]] = {}
        self._pooled: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}
        self.layer_runs = 0  # clips × layers this rank actually computed (for cost accounting)

    def _check(self, kept: Sequence[int]) -> tuple[int, ...]:
        kept = tuple(int(k) for k in kept)
        L = self.enc.num_layers
        if list(kept) != sorted(set(kept)) or any(not 0 <= k < L for k in kept):
            raise ValueError(f"kept layers must be increasing 0-based indices < {L}, got {list(kept)}")
        return kept

    def _store(self, key: tuple[str, tuple[int, ...]], hs: list[torch.Tensor]) -> None:
        size = sum(h.numel() * h.element_size() for h in hs)
        if size > self.budget:
            return
        while self._bytes + size > self.budget and self._prefix:
            _, old = self._prefix.popitem(last=False)
            self._bytes -= sum(h.numel() * h.element_size() for h in old)
        self._prefix[key] = hs
        self._bytes += size

    def _contexts(self, split: str) -> list[dict]:
        """Per-batch layer context. Layer 0 runs once while building it: WavLM's relative
        position bias is made by layer 0 and lives in the context, so every later layer finds
        it there even when layer 0 is deleted; its output is stored as prefix (0,)."""
        if split not in self._ctx:
            sp = self.local[split]
            ctxs, out0 = [], []
            for x, n in zip(sp.x0, sp.lengths):
                ctx = self.enc.stack_context(x, n)
                out0.append(self.enc.run_layer(0, x, ctx))
                ctxs.append(ctx)
            self.layer_runs += len(sp)
            self._ctx[split] = ctxs
            self._store((split, (0,)), out0)
        return self._ctx[split]

    @torch.no_grad()
    def outputs(self, split: str, kept: Sequence[int]) -> list[torch.Tensor]:
        """Per batch of this rank's clips (B, T, D): the raw output of the last kept layer (h_0
        when none is kept)."""
        kept = self._check(kept)
        self.enc.model.eval()
        ctxs = self._contexts(split)
        j = len(kept)
        while j > 0 and (split, kept[:j]) not in self._prefix:
            j -= 1
        hs = self._prefix[(split, kept[:j])] if j else self.local[split].x0
        if j:
            self._prefix.move_to_end((split, kept[:j]))
        for jj in range(j, len(kept)):
            hs = [self.enc.run_layer(kept[jj], h, ctx) for h, ctx in zip(hs, ctxs)]
            self.layer_runs += len(self.local[split])
            self._store((split, kept[: jj + 1]), hs)
        return hs

    def states(self, split: str, kept: Sequence[int]) -> list[HiddenStates]:
        """Per batch of this rank's clips, the raw hidden states 0..m of the pruned stack (no
        final norm)."""
        kept = self._check(kept)
        per_j = [self.outputs(split, kept[:j]) for j in range(len(kept) + 1)]
        sp = self.local[split]
        return [HiddenStates(states=[s[b] for s in per_j], lengths=sp.lengths[b], final_norm=False)
                for b in range(len(sp.x0))]

    def _gather(self, local: list[torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
        """Per-batch rows of this rank's clips → (N, *shape) rows of every clip, split order."""
        mine = torch.cat(local) if local else torch.zeros(0, *shape)  # a rank may have no clips
        return merge_shards(runtime.all_gather_objects(mine.cpu()))

    @torch.no_grad()
    def pooled(self, split: str, kept: Sequence[int]) -> torch.Tensor:
        """(N, D) mean over valid frames of the pruned model's last state (final norm applied)."""
        kept = self._check(kept)
        key = (split, kept)
        if key not in self._pooled:
            norm = self.enc.final_norm_module
            out = []
            for h, n in zip(self.outputs(split, kept), self.local[split].lengths):
                h = norm(h) if norm is not None else h
                m = (torch.arange(h.shape[1])[None] < n[:, None]).to(h.dtype).unsqueeze(-1)  # (B, T, 1)
                out.append((h * m).sum(1) / n.clamp(min=1).to(h.dtype)[:, None])
            self._pooled[key] = self._gather(out, (self.enc.hidden_size,))
        return self._pooled[key]

    @torch.no_grad()
    def pooled_states(self, split: str, kept: Sequence[int]) -> torch.Tensor:
        """(N, m+1, D) mean over valid frames of each raw state 0..m of the pruned stack."""
        kept = self._check(kept)
        local = [samples(hs, "pooled") for hs in self.states(split, kept)]  # (B, m+1, D) each
        return self._gather(local, (len(kept) + 1, self.enc.hidden_size))

    def frames_mean(self, split: str, kept: Sequence[int],
                    fn: Callable[[list[HiddenStates]], np.ndarray]) -> np.ndarray:
        """`fn` of `states(split, kept)` where `fn` is a mean over valid frames (e.g. cosine
        Block Influence on the frame view), over every clip: with n_r valid frames on rank r,

            mean = Σ_r n_r · fn(rank r's states) / Σ_r n_r

        (one process: `fn`'s value as it is)."""
        if runtime.world_size() == 1:
            return fn(self.states(split, kept))
        n = int(sum(int(ns.sum()) for ns in self.local[split].lengths))
        value = fn(self.states(split, kept)) if n else None
        parts = [(m, v) for m, v in runtime.all_gather_objects((n, value)) if m]
        return sum(m * np.asarray(v) for m, v in parts) / sum(m for m, _ in parts)

    def accuracy(self, head: ClassifierHead, split: str, kept: Sequence[int]) -> float:
        """Fraction of the split's clips that `head` classifies right on the pruned model."""
        pred = head_logits(head, self.pooled(split, kept)).argmax(-1)
        return float((pred == self.splits[split].y).float().mean())

    def nll(self, head: ClassifierHead, split: str, kept: Sequence[int]) -> float:
        """Mean cross-entropy of `head` on the pruned model (a finer score than accuracy)."""
        logits = head_logits(head, self.pooled(split, kept))
        return float(torch.nn.functional.cross_entropy(logits, self.splits[split].y))

    def kl(self, head: ClassifierHead, split: str, ref: Sequence[int], kept: Sequence[int]) -> float:
        """Mean KL(p_ref || p_kept) of `head`'s class distributions: how much deleting layers
        changes the predictions of the model with layers `ref` (label-free)."""
        return _kl(head_logits(head, self.pooled(split, ref)), head_logits(head, self.pooled(split, kept)))


@torch.no_grad()
def _kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """Mean over rows of KL(softmax(p) || softmax(q))."""
    lp, lq = p_logits.log_softmax(-1), q_logits.log_softmax(-1)
    return float((lp.exp() * (lp - lq)).sum(-1).mean())


def kept_layers(num_layers: int, deleted: Sequence[int]) -> list[int]:
    """0-based layers that remain after deleting `deleted`."""
    gone = set(int(d) for d in deleted)
    return [i for i in range(num_layers) if i not in gone]
