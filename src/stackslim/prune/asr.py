"""Pruning scored by transcription (`stackslim prune MODEL DATA --task asr`, Whisper only).

A deleted set S is scored by what the frozen original decoder writes from the pruned stack:

    hyp_S(u)   = greedy transcript of clip u from norm(h_L^S(u))      (the decoder is the teacher's)
    WER_agr(S) = Σ_u edits(hyp_∅(u), hyp_S(u)) / Σ_u |hyp_∅(u)|         (normalised words)

over the scored clips u (DATA's clips outside split=eval|test|validation, `asr_clips` of them):
the teacher-agreement WER, 0 for the unpruned stack by construction, needing no transcripts.
A set passes when WER_agr(S) <= margin (`--wer-margin` points / 100). Since word edit distance
obeys the triangle inequality, a pruned model that passes transcribes the references within
about `margin` of the teacher's WER on the same clips; the eval clips (split=eval, never scored)
report that WER against their references.

Every clip is padded with silence to Whisper's 30 s window, as `evaluate.wer.whisper_wer` reads
clips: hidden state 0 (T = 1500 frames) is computed once per clip (`padded_states`), and a
`stack.StackRunner` keeps the outputs of the kept-layer prefixes, so scoring a set costs the
layers after its longest cached prefix plus one greedy decode per clip. Decoding of the scored
clips stops at 3·(the words of the teacher's longest transcript) + 8 tokens (about twice its
tokens): a transcript that runs past it already differs from the teacher's by more than any margin, and a broken stack that loops
would otherwise cost up to 64 decoder steps per clip. The eval clips decode up to 64 tokens, as
`whisper_wer` does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import runtime
from ..data import AudioDataset, load_dataset
from ..data.pool import HELD_OUT
from ..evaluate.wer import WER_WINDOW_S, pad_silence
from ..models.base import Encoder
from ..models.transcribe import corpus_wer, transcribe, wer_edits, wer_interval
from .config import PruneError
from .stack import Split, StackRunner

EVAL_MAX_TOKENS = 64  # as `whisper_wer`


class AsrClips(NamedTuple):
    """The clips of `--task asr`: scored (no transcripts read) and eval (with references)."""

    score: list[np.ndarray]
    eval: list[np.ndarray]
    references: list[str]
    name: str


def asr_clips(data: str | os.PathLike | AudioDataset, n_score: int, n_eval: int, seed: int = 0) -> AsrClips:
    """A seeded subset of `n_score` clips outside split=eval|test|validation, and `n_eval`
    split=eval clips evenly spread (as `evaluate.wer.sentence_clips` picks them; 0: all).

    Raises:
        PruneError: no split column with eval clips, or no clip left to score (the two must
            not overlap: a clip without a split value belongs to neither).
    """
    ds = data if isinstance(data, AudioDataset) else load_dataset(data)
    split = [c.get("split") or "" for c in ds.clips]
    ev = [i for i, s in enumerate(split) if s == "eval"]
    sc = [i for i, s in enumerate(split) if s and s not in HELD_OUT]
    if not ev or not sc:
        raise PruneError(f"{ds.name}: --task asr needs a transcribed data set whose split column marks "
                         f"eval clips (the reported WER) and others (scored), e.g. synth-sentences; "
                         f"found {len(ev)} eval and {len(sc)} other clips")
    if n_score < len(sc):
        sc = sorted(np.random.default_rng(seed).choice(sc, n_score, replace=False).tolist())
    if n_eval and n_eval < len(ev):
        ev = [ev[int(j)] for j in np.linspace(0, len(ev) - 1, n_eval).round()]
    return AsrClips([ds.load(i) for i in sc], [ds.load(i) for i in ev], [ds.clips[i].label for i in ev],
                    ds.name)


@torch.no_grad()
def padded_states(enc: Encoder, waves: Sequence[np.ndarray], batch_size: int = 8,
                  desc: str = "front end", progress: bool = False) -> dict[int, torch.Tensor]:
    """Hidden state 0 (T, D) of each clip padded with silence to 30 s, keyed by position: what
    `whisper_wer` feeds the stack (T = 1500 for every clip, so nothing is masked)."""
    store: dict[int, torch.Tensor] = {}
    for s in tqdm(range(0, len(waves), batch_size), desc=desc, unit="batch", leave=False, disable=not progress):
        chunk = pad_silence(waves[s: s + batch_size], min_s=WER_WINDOW_S)
        x0, n = enc.front_end(chunk)  # (B, 1500, D)
        for b, t in enumerate(n.tolist()):
            store[s + b] = x0[b, :t].float().clone()
    return store


def _merge(parts: list[list]) -> list:
    """Per-rank lists of `Split.shard`'s clips → one list in the split's order (as
    `stack.merge_shards` does for tensors): item i·W + r is item i of part r."""
    out: list = [None] * sum(len(p) for p in parts)
    for r, p in enumerate(parts):
        out[r::len(parts)] = p
    return out


def wer_with_interval(refs: Sequence[str], hyps: Sequence[str], seed: int = 0) -> dict:
    """Corpus WER and its bootstrap 95% interval over clips (`models.transcribe.wer_interval`:
    the score of a resample is Σ edits / Σ reference words of its clips)."""
    edits, words = wer_edits(refs, hyps)
    return {"wer": corpus_wer(edits, words), "interval": list(wer_interval(edits, words, seed=seed)),
            "clips": len(refs)}


class Transcripts:
    """Greedy transcripts of kept-layer stacks on the scored ("score") and eval clips, memoised.

    Args:
        enc: the Whisper encoder (not changed).
        whisper: WhisperForConditionalGeneration whose decoder reads the states (the teacher's).
        tokenizer: its tokenizer.
        score, eval: padded state 0 of the scored and eval clips (`padded_states`).
        batch_size: clips per layer run and per decode.
        cache_mb: memory for kept-prefix outputs (`StackRunner`).
    """

    def __init__(self, enc: Encoder, whisper, tokenizer, score: dict[int, torch.Tensor],
                 eval: dict[int, torch.Tensor], batch_size: int = 8, cache_mb: int = 2048):
        self.enc, self.whisper, self.tokenizer, self.batch_size = enc, whisper, tokenizer, batch_size
        splits = {name: Split.build(store, sorted(store), torch.zeros(len(store), dtype=torch.long), batch_size)
                  for name, store in (("score", score), ("eval", eval)) if store}
        self.runner = StackRunner(enc, splits, cache_mb)
        self.all = list(range(enc.num_layers))
        self._memo: dict[tuple[str, tuple[int, ...]], list[str]] = {}
        self.decoded = 0  # clips decoded (cost accounting)
        self.teacher = self.texts("score", self.all, EVAL_MAX_TOKENS)
        longest = max((len(t.split()) for t in self.teacher), default=0)  # words
        self.max_tokens = min(EVAL_MAX_TOKENS, 3 * longest + 8)  # ~1.3 tokens a word, twice over
        self._teacher_last = self._last("score", self.all)

    @torch.no_grad()
    def _last(self, split: str, kept: Sequence[int]) -> list[torch.Tensor]:
        """This rank's last states after the final norm, per batch (B, T, D)."""
        norm = self.enc.final_norm_module
        return [norm(h) if norm is not None else h for h in self.runner.outputs(split, kept)]

    def texts(self, split: str, kept: Sequence[int], max_tokens: int | None = None) -> list[str]:
        """The transcripts of every clip of `split` (in the order of its store) from the stack
        of `kept` layers (0-based)."""
        key = (split, tuple(kept))
        if key not in self._memo:
            cap = max_tokens or (self.max_tokens if split == "score" else EVAL_MAX_TOKENS)
            states = [h[b] for h in self._last(split, kept) for b in range(h.shape[0])]  # (T, D) each
            mine = transcribe(self.whisper, self.tokenizer, encoder_states=states,
                              batch_size=self.batch_size, max_new_tokens=cap)
            self.decoded += len(mine)
            texts = _merge(runtime.all_gather_objects(mine))
            rows = self.runner.splits[split].rows  # position in the split → key in the store
            out = [""] * len(texts)
            for pos, row in enumerate(rows):
                out[row] = texts[pos]
            self._memo[key] = out
        return self._memo[key]

    def agreement(self, kept: Sequence[int]) -> float:
        """WER of the scored clips' transcripts from `kept` against the teacher's."""
        return corpus_wer(*wer_edits(self.teacher, self.texts("score", kept)))

    @torch.no_grad()
    def distance(self, kept: Sequence[int]) -> float:
        """Σ ||norm(h_S) − norm(h_∅)||² / Σ ||norm(h_∅)||² over every frame of the scored clips:
        how far the decoder's input moved (a tie-break between sets of equal WER)."""
        num = den = 0.0
        for h, t in zip(self._last("score", kept), self._teacher_last):
            num += float((h - t).pow(2).sum())
            den += float(t.pow(2).sum())
        parts = runtime.all_gather_objects((num, den))
        return sum(p[0] for p in parts) / max(sum(p[1] for p in parts), 1e-30)

    def quality(self, kept: list[int]) -> tuple[float, float]:
        """(−agreement WER, −distance): the score the greedy and beam strategies maximise."""
        return -self.agreement(kept), -self.distance(kept)

    def eval_wer(self, kept: Sequence[int], references: Sequence[str], seed: int = 0) -> dict:
        """WER of the eval clips against their references, with its bootstrap 95% interval."""
        hyps = self.texts("eval", kept)
        return {**wer_with_interval(references, hyps, seed), "hypotheses": hyps}


@dataclass
class WerCurve:
    """Agreement WER of the scored clips after deleting the first k layers of `order`."""

    order: list[int]
    wer: list[float] = field(default_factory=list)

    def max_deletable(self, margin: float) -> int:
        """Largest k whose agreement WER is <= margin (a fraction; 0: none can go)."""
        return max(k for k, w in enumerate(self.wer) if w <= margin + 1e-12)

    def to_json(self, margin: float) -> dict:
        return {"deleted": list(range(len(self.order) + 1)),
                "agreement_wer": [round(w, 6) for w in self.wer],
                "max_deletable": self.max_deletable(margin)}


def wer_curve(scorer: Transcripts, order: list[int]) -> WerCurve:
    """The curve of `order` (sets already scored are not decoded again)."""
    c = WerCurve(order=list(order))
    for k in range(len(order) + 1):
        gone = set(order[:k])
        c.wer.append(scorer.agreement([i for i in scorer.all if i not in gone]))
    return c
