"""`--task asr` parts of `stackslim fit`: the sentence clips, the teacher's states of them
encoded once, and `AsrScorer`, which recovers and ranks Whisper candidates by transcription.

Clips (DATA's manifest: a text label and a split column, e.g. synth-sentences): of the
``split=pool`` clips, a seeded `score_clips` are held out to rank the candidates and the next
`asr_clips` of the same permutation are recovered on (the two never overlap); `eval_clips`
``split=eval`` clips, evenly spread, give every trained candidate's reported WER against
their references. Every clip is followed by silence to Whisper's 30 s window (T = 1500
frames, `evaluate.wer.WER_WINDOW_S`), as `whisper_wer` and `prune --task asr` read clips, so
that the student is trained on the window the decoder reads.

Recovery of a candidate s (a pruned or shared stack; the front end is the teacher's, so its
input is the cached state 0): the distillation of `share.recover.recover` (states "last")

    L = Σ_valid ‖norm(h_L^s) − norm(h_L^t)‖² / Σ_valid ‖norm(h_L^t)‖²  (+ μ · L_asr, μ = --asr-weight)

over the recovery clips, with L_asr the decoder loss of `share.asr` (teacher-forced on the
teacher's greedy transcripts; off by default: a decoder pass per clip and step). The best epoch
is kept by the last-state error on the held-out clips (by token agreement with μ > 0).

Ranking score (lower is better), on the held-out clips u:

    WER_agr(s) = Σ_u edits(hyp_t(u), hyp_s(u)) / Σ_u |hyp_t(u)|      (normalised words)

with hyp the frozen teacher decoder's greedy transcript of norm(h_L) (`share.asr.decoded_wer`),
hyp_t decoded once (`teacher_tokens`). An int8 variant is scored from its rounded copy.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..data import AudioDataset, load_dataset
from ..evaluate.wer import WER_WINDOW_S, pad_silence, whisper_wer
from ..mimic.asr import padded, sentence_splits, spread
from ..mimic.config import MimicError
from ..models.base import Encoder
from ..models.cache import StateCache
from ..share.asr import AsrRecovery, AsrTargets, decoded_wer, teacher_tokens
from ..share.recover import RecoveryLog, distill_cache, recover
from ..train import TrainConfig
from ..train.loop import TrainLog
from .config import FitConfig, FitError
from .int8 import int8_copy
from .predict import Candidate
from .search import Trial, rekey

MAX_TOKENS = 64  # greedy tokens a clip, for the teacher and every candidate alike (`whisper_wer`'s)
BATCH = 8  # clips per encoder batch: attention over 1500 frames is (B, H, 1500, 1500)
MIMIC_SKIPPED = ("mimic candidates are skipped for --task asr: fit's mimic is a frame-wise layer "
                 "without positions, trained on task-clip features; the decoder's cross-attention "
                 "reads positions from the encoder states, and training a mimic on 30 s sentence "
                 "windows is `stackslim mimic --task asr`'s own machinery")


@dataclass
class SentenceClips:
    """Data set indices of the recovery (`train`), ranking (`score`) and `eval` clips."""

    dataset: AudioDataset
    train: list[int]
    score: list[int]
    eval: list[int]

    def waves(self, part: str, pad: bool = False) -> list[np.ndarray]:
        """The clips of `part` (padded with silence to the 30 s window when `pad`)."""
        w = [self.dataset.load(i) for i in getattr(self, part)]
        return pad_silence(w, min_s=WER_WINDOW_S) if pad else w

    def references(self) -> list[str]:
        return [self.dataset.clips[i].label for i in self.eval]

    def describe(self) -> dict:
        return {"task": "asr", "data": self.dataset.name, "recovery_clips": len(self.train),
                "score_clips": len(self.score), "eval_clips": len(self.eval),
                "recovery_split": "split=pool (seeded subset)",
                "score_split": "split=pool, never trained on (seeded subset)",
                "eval_split": "split=eval (evenly spread)", "window_s": WER_WINDOW_S,
                "max_new_tokens": MAX_TOKENS}


def sentence_clips(data: str | os.PathLike | AudioDataset, cfg: FitConfig) -> SentenceClips:
    """The clips of the module docstring.

    Raises:
        FitError: DATA has no split=pool or split=eval clips, or too few pool clips to hold
            `score_clips` out and recover on at least one.
    """
    ds = data if isinstance(data, AudioDataset) else load_dataset(data)
    try:
        pool, ev = sentence_splits(ds, ds.name)
    except MimicError as e:
        raise FitError(str(e)) from None
    if len(pool) <= cfg.score_clips:
        raise FitError(f"{ds.name}: --task asr holds out --score-clips {cfg.score_clips} of its "
                       f"{len(pool)} split=pool clips and needs at least one more to recover on")
    perm = [pool[int(j)] for j in np.random.default_rng(cfg.train.seed).permutation(len(pool))]
    score = sorted(perm[: cfg.score_clips])
    train = sorted(perm[cfg.score_clips: cfg.score_clips + cfg.asr_clips])
    return SentenceClips(ds, train, score, spread(ev, cfg.eval_clips))


def teacher_cache(enc: Encoder, clips: SentenceClips, part: str, states: str,
                  progress: bool) -> StateCache:
    """The teacher's states of `part`'s clips in their 30 s windows (0 and L, or all)."""
    idx = getattr(clips, part)
    return distill_cache(enc, padded(clips.dataset.batches(idx, BATCH), WER_WINDOW_S), total=len(idx),
                         states=states, desc=f"teacher states ({part}, 30 s windows)", progress=progress)


def ends(cache: StateCache) -> StateCache:
    """`cache` with states 0 and -1 (L) only: what recovery and scoring read."""
    return StateCache(states={0: cache.states[0], -1: cache.states[-1]}, lengths=cache.lengths,
                      indices=cache.indices)


@dataclass
class AsrScorer:
    """Recovery and ranking of `--task asr` (module docstring); a `search.Scorer`.

    Attributes:
        whisper, tokenizer: the teacher's WhisperForConditionalGeneration (its frozen decoder
            reads every candidate) and its tokenizer.
        train, score_cache: the teacher's states 0 and L of the recovery and held-out clips.
        targets: the teacher's transcripts of the held-out clips (`teacher_tokens`).
        eval_waves, references: the eval clips and their transcripts.
        asr: the decoder loss of the recovery (None: off).
    """

    whisper: torch.nn.Module
    tokenizer: object
    train: StateCache
    score_cache: StateCache
    targets: AsrTargets
    eval_waves: list[np.ndarray]
    references: list[str]
    asr: AsrRecovery | None = None
    metric: str = "agreement_wer"
    lower_is_better: bool = True

    @classmethod
    def build(cls, whisper, tokenizer, train: StateCache, score: StateCache, clips: SentenceClips,
              asr_weight: float, progress: bool) -> "AsrScorer":
        """Decode the teacher's transcripts once (of the recovery clips too when μ > 0)."""
        targets = teacher_tokens(whisper, tokenizer, score, MAX_TOKENS, "teacher transcripts (score)",
                                 progress)
        asr = None
        if asr_weight > 0:
            asr = AsrRecovery(teacher_tokens(whisper, tokenizer, train, MAX_TOKENS,
                                             "teacher transcripts (recovery)", progress),
                              asr_weight, score, targets, "agreement", tokenizer)
        return cls(whisper, tokenizer, train, score, targets, clips.waves("eval"), clips.references(), asr)

    def recover(self, t: Trial, train: TrainConfig, progress: bool) -> RecoveryLog:
        """Distil `t.student` toward the teacher's last state; nothing for the whole stack
        (prune-d0: its float form is the teacher, the loss is 0 and the epochs would be
        wasted; they go to the other candidates)."""
        if t.comp.method == "prune" and not t.comp.deleted:
            return RecoveryLog(TrainLog(stopped_by="nothing to recover"))
        n = t.student.num_layers
        return recover(t.student, rekey(self.train, n), train, states="last",
                       val_cache=rekey(self.score_cache, n), progress=progress, asr=self.asr)

    def score(self, student: Encoder, v: Candidate) -> float:
        """Teacher-agreement WER of the held-out clips (a fraction; lower is better)."""
        model = int8_copy(student) if v.int8 else student
        return decoded_wer(model, self.targets, self.score_cache, self.tokenizer,
                           max_new_tokens=MAX_TOKENS)

    def eval_wer(self, enc: Encoder) -> dict:
        """WER of the eval clips against their references, bootstrap 95% interval, examples."""
        w = whisper_wer(enc, self.whisper, self.tokenizer, self.eval_waves, self.references,
                        batch_size=BATCH, max_new_tokens=MAX_TOKENS)
        return {"eval_wer": w["wer"], "eval_interval": w["interval"],
                "eval_examples": w["hypotheses"][:3]}

    def final(self, student: Encoder, v: Candidate) -> dict:
        return self.eval_wer(int8_copy(student) if v.int8 else student)
