"""`stackslim prune MODEL DATA --task asr`: deletion orders scored by transcription (Whisper).

    from stackslim.prune import PruneConfig, run
    result = run("whisper-base", "synth-sentences", "runs/prune-asr",
                 PruneConfig(task="asr", wer_margin=1.0, strategies=("forward", "greedy")))

Steps (`prune.asr` has the formulas):
1. DATA's clips: `asr_clips` scored ones (outside split=eval|test|validation, no transcript
   read) and `eval_clips` eval ones (split=eval, with references), each padded to 30 s; hidden
   state 0 of each once.
2. The teacher's transcripts of the scored clips (the frozen original decoder on the full stack).
3. Each strategy's order (greedy and beam maximise −agreement WER), then its curve: the
   agreement WER of the scored clips after deleting the first k layers, k = 0..L−1.
4. The saved model: the most layers deleted with agreement WER <= `wer_margin` points over all
   strategies (ties: lower agreement WER, then lower agreement WER one deletion further, then
   the strategy listed first). Chosen on the scored
   clips only; the eval clips report.
5. The eval clips transcribed against their references (WER, bootstrap 95% interval) for the
   chosen strategy's order at k = 0 (the teacher) .. k* + 1 (one past the chosen depth, the
   first that failed: a broken stack decodes up to 64 tokens a clip, so deeper points cost most
   and tell least).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


from ..data import AudioDataset
from ..errors import StackslimError
from ..evaluate.wer import load_tokenizer, pad_silence, whisper_wer
from ..models import Encoder, load_encoder
from ..results import provenance
from ..run import start_run
from ..share.local import fit_local
from ..share.recover import distill_cache
from ..train import TrainConfig
from .asr import AsrClips, Transcripts, WerCurve, asr_clips, padded_states, wer_curve
from .config import PAPER_STRATEGIES, PruneConfig, PruneError
from .plots import plot_curves
from .save import save_pruned
from .stack import kept_layers
from .strategies import ScoringContext, each_order

COMMAND = "prune"
WRITES = ("pruning.json", "pruning.png", "model")  # as the classification tasks write
BATCH = 8  # clips per layer run and decode: attention over 1500 frames is (B, H, 1500, 1500)


@dataclass
class AsrStrategyResult:
    name: str
    order: list[int]  # 0-based
    info: dict
    curve: WerCurve
    seconds: float

    def to_json(self, margin: float) -> dict:
        return {"family": "paper" if self.name in PAPER_STRATEGIES else "ours",
                "order": [i + 1 for i in self.order], "info": self.info,
                "curve": self.curve.to_json(margin), "seconds": round(self.seconds, 2)}


@dataclass
class AsrPruneResult:
    """Everything `stackslim prune --task asr` measured; `to_json()` is DIR/pruning.json.
    WERs are fractions (0.012 = 1.2 points); `config.wer_margin` is in points."""

    config: PruneConfig
    model: str
    family: str
    num_layers: int
    data: dict
    teacher: dict  # eval WER, interval, transcripts
    strategies: list[AsrStrategyResult]
    best: dict
    eval_curve: dict  # the chosen strategy's eval WER at k = 0..k*+1
    seconds: float
    cpu_seconds: float
    decoded_clips: int = 0
    removed: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=provenance)

    @property
    def margin(self) -> float:
        return self.config.wer_margin / 100.0

    def deletable(self) -> dict[str, int]:
        """Strategy → most layers deleted with agreement WER <= margin on the scored clips."""
        return {s.name: s.curve.max_deletable(self.margin) for s in self.strategies}

    def to_json(self) -> dict:
        return {
            "model": self.model, "family": self.family, "num_layers": self.num_layers,
            "layer_numbering": "1-based: layer 1 is the first layer of the stack (never deleted)",
            "task": {"task": "asr", **self.data}, "wer_margin_points": self.config.wer_margin,
            "scored_by": "teacher-agreement WER: the pruned stack's transcripts of the scored clips "
                         "against the teacher's own (the frozen original decoder, clips padded to 30 s)",
            "teacher": self.teacher,
            "strategies": {s.name: s.to_json(self.margin) for s in self.strategies},
            "summary": self.deletable(), "best": self.best, "eval_curve": self.eval_curve,
            "seconds": round(self.seconds, 1), "cpu_seconds": round(self.cpu_seconds, 1),
            "decoded_clips": self.decoded_clips, "removed_from_earlier_run": self.removed,
            "config": asdict(self.config), "provenance": self.provenance,
        }


def _choose_best(strategies: list[AsrStrategyResult], margin: float) -> tuple[AsrStrategyResult, int]:
    """(strategy, k): the most layers deleted within the margin, then the lowest agreement WER
    there, then the lowest at k + 1 (the order nearest to deleting one more, whose eval WER the
    eval curve's last point reports), then the strategy listed first."""
    def key(rs: tuple[int, AsrStrategyResult]) -> tuple:
        i, s = rs
        k, w = s.curve.max_deletable(margin), s.curve.wer
        return k, -w[k], -w[k + 1] if k + 1 < len(w) else 0.0, -i

    _, s = max(enumerate(strategies), key=key)
    return s, s.curve.max_deletable(margin)


def run_pruning_asr(enc: Encoder, whisper, tokenizer, clips: AsrClips, cfg: PruneConfig,
                    progress: bool = True) -> AsrPruneResult:
    """Orders, curves and the chosen deletion of `enc` scored by transcription (no files written).

    Args:
        enc: a Whisper encoder (not changed).
        whisper, tokenizer: the WhisperForConditionalGeneration whose decoder transcribes (the
            teacher's own) and its tokenizer.
        clips: the scored and eval clips (`prune.asr.asr_clips`).
    """
    t0, c0 = time.monotonic(), time.process_time()
    if enc.family != "whisper":
        raise PruneError(f"--task asr transcribes with Whisper's decoder: {enc.name} is a {enc.family!r} model")
    if enc.num_layers < 2:
        raise PruneError(f"{enc.name} has {enc.num_layers} layer(s): nothing to prune (layer 1 is kept)")
    margin = cfg.wer_margin / 100.0
    enc.eval()
    scorer = Transcripts(enc, whisper, tokenizer,
                         padded_states(enc, clips.score, BATCH, "front end (scored)", progress),
                         padded_states(enc, clips.eval, BATCH, "front end (eval)", progress),
                         batch_size=BATCH, cache_mb=cfg.cache_mb)
    ctx = ScoringContext(scorer.runner, None, enc.num_layers, cfg.knn_k, progress=progress, split="score",
                         beam_width=cfg.beam_width, quality=scorer.quality,
                         quality_names=("-agreement_wer", "-state_distance"), margin=margin)
    results, t = [], time.monotonic()
    for name, order, info in each_order(cfg.strategies, ctx, progress):
        results.append(AsrStrategyResult(name, order, info, wer_curve(scorer, order), time.monotonic() - t))
        t = time.monotonic()
    s, k = _choose_best(results, margin)
    deleted = sorted(s.order[:k])
    points = []
    for j in range(min(k + 1, len(s.order)) + 1):  # the teacher .. one past the chosen depth
        w = scorer.eval_wer(kept_layers(enc.num_layers, s.order[:j]), clips.references, seed=cfg.train.seed)
        points.append(w)
    teacher, chosen = points[0], points[k]
    rnd = lambda x: round(x, 6)  # noqa: E731
    best = {"strategy": s.name, "deleted_layers": [d + 1 for d in deleted], "num_layers": enc.num_layers - k,
            "kept_layers": [i + 1 for i in kept_layers(enc.num_layers, deleted)],
            "agreement_wer": rnd(s.curve.wer[k]), "eval_wer": rnd(chosen["wer"]),
            "eval_interval": [rnd(x) for x in chosen["interval"]],
            "teacher_eval_wer": rnd(teacher["wer"]),
            "eval_within_margin": chosen["wer"] <= teacher["wer"] + margin + 1e-12,
            "stack_params": sum(p.numel() for i, layer in enumerate(enc.layers) if i not in set(deleted)
                                for p in layer.parameters()),
            "stack_params_teacher": enc.num_params(stack_only=True),
            "chosen_on": "agreement WER of the scored clips", "recovered": None}
    eval_curve = {"strategy": s.name, "deleted": list(range(len(points))),
                  "deleted_layers": [[i + 1 for i in sorted(s.order[:j])] for j in range(len(points))],
                  "wer": [rnd(p["wer"]) for p in points],
                  "interval": [[rnd(x) for x in p["interval"]] for p in points]}
    return AsrPruneResult(
        config=cfg, model=enc.name, family=enc.family, num_layers=enc.num_layers,
        data={"data": clips.name, "scored_clips": len(clips.score), "eval_clips": len(clips.eval),
              "scored_split": "clips outside split=eval|test|validation (seeded subset)",
              "eval_split": "split=eval (evenly spread)", "window_s": 30.0,
              "max_new_tokens_scored": scorer.max_tokens},
        teacher={"eval_wer": rnd(teacher["wer"]), "eval_interval": [rnd(x) for x in teacher["interval"]],
                 "agreement_wer": 0.0, "eval_transcripts": {"references": clips.references,
                                                           "teacher": teacher["hypotheses"],
                                                           "best": chosen["hypotheses"]}},
        strategies=results, best=best, eval_curve=eval_curve, seconds=time.monotonic() - t0,
        cpu_seconds=time.process_time() - c0, decoded_clips=scorer.decoded)


def whisper_and_tokenizer(enc: Encoder, model, tokenizer, error: type[StackslimError] = PruneError):
    """The decoder's model (the teacher's own weights) and the tokenizer (`tokenizer`, or the
    one of `model`'s spec), or a one-line `error` (the calling command's: `prune`, `fit`) for a
    model that is not Whisper or a spec without a tokenizer."""
    if enc.family != "whisper":
        raise error(f"--task asr transcribes with Whisper's decoder: {enc.name} is a {enc.family!r} "
                    "model, not Whisper")
    if tokenizer is None:
        found, tok = load_tokenizer(str(model)) if isinstance(model, (str, os.PathLike)) \
            else (None, "give the model as a spec (a name or folder) to find its tokenizer")
        if found is None:  # then `tok` says why
            raise error(f"--task asr needs Whisper's tokenizer: {tok}")
        tokenizer = tok
    return enc.model, tokenizer


def run_asr(model: str | os.PathLike | Encoder, data: str | os.PathLike | AudioDataset,
            out: str | os.PathLike, cfg: PruneConfig, *, progress: bool = True, force: bool = False,
            tokenizer=None) -> AsrPruneResult:
    """`stackslim prune --task asr` as a function: DIR/pruning.json, pruning.png, config.json
    and (unless `cfg.save_model` is False) DIR/model/, the pruned Whisper model with its own
    decoder (a plain Hugging Face folder, `pruned.json` beside it).

    The model, its tokenizer and DATA's clips are checked before anything is written: a
    non-Whisper model or a data set without eval and other clips is refused with one line.
    `tokenizer` stands in for the model's own (a model given as an Encoder has no spec)."""
    enc = model if isinstance(model, Encoder) else load_encoder(model)
    whisper, tokenizer = whisper_and_tokenizer(enc, model, tokenizer)
    clips = asr_clips(data, cfg.asr_clips, cfg.eval_clips, cfg.train.seed)
    with start_run(COMMAND, out, cfg, model=model, data=data, writes=WRITES, force=force) as r:
        enc = r.encoder(enc)
        result = run_pruning_asr(enc, whisper, tokenizer, clips, cfg, progress=progress)
        if not r.is_main:
            return result
        result.removed = [] if cfg.save_model else ["model/" for g in r.removed if g.rstrip("/") == "model"]
        write_plot(result, r.out / "pruning.png")
        if cfg.save_model:
            b = result.best
            deleted = [d - 1 for d in b["deleted_layers"]]
            small = None
            if cfg.recover == "local" and deleted:
                small, b["recovered"] = recover_local(enc, deleted, whisper, tokenizer, clips, cfg, progress)
            save_pruned(enc, deleted, None, r.out / "model", small=small,
                        meta={"task": "asr", "strategy": b["strategy"], "agreement_wer": b["agreement_wer"],
                              "eval_wer": b["eval_wer"], "teacher_eval_wer": b["teacher_eval_wer"],
                              "wer_margin_points": cfg.wer_margin, "source_model": result.model,
                              "recovered": b["recovered"]})
        r.write_json("pruning.json", result.to_json())  # last: it marks a finished run
    return result


def recover_local(enc: Encoder, deleted: list[int], whisper, tokenizer, clips: AsrClips,
                  cfg: PruneConfig, progress: bool = True) -> tuple[Encoder, dict]:
    """`--recover local`: the pruned stack with each kept layer fitted to the teacher state it
    stands for (`share.local.fit_local`, sequential: kept layer j of teacher index k_j matches
    state k_j + 1, the last kept layer the teacher's last state L), on the scored clips (never
    eval), each followed by silence as the decoder loss reads sentences; and its eval WER."""
    t0 = time.monotonic()
    L = enc.num_layers
    small = enc.without_layers(deleted)
    targets = [k + 1 for k in kept_layers(L, deleted)]
    targets[-1] = L  # what the decoder reads: the teacher's last state, after the final norm
    waves = pad_silence(clips.score)
    cache = distill_cache(enc, ((waves[i : i + BATCH], list(range(i, min(i + BATCH, len(waves)))))
                                for i in range(0, len(waves), BATCH)),
                          total=len(waves), states="all", desc="teacher states (recovery)", progress=progress)
    fit = TrainConfig(epochs=cfg.recover_epochs, lr=cfg.recover_lr, batch_size=8, seed=cfg.train.seed)
    log = fit_local(small, cache, fit, "sequential", progress=progress, targets=targets)
    w = whisper_wer(small, whisper, tokenizer, clips.eval, clips.references)
    rnd = lambda x: round(x, 6)  # noqa: E731
    return small, {"method": "local", "eval_wer": rnd(w["wer"]), "eval_interval": [rnd(x) for x in w["interval"]],
                   "eval_transcripts": w["hypotheses"][:5], "clips": len(waves), "epochs": cfg.recover_epochs,
                   "lr": cfg.recover_lr, "groups": log.groups, "seconds": time.monotonic() - t0}


def write_plot(result: AsrPruneResult, path: str | os.PathLike) -> Path:
    """Agreement WER (%) per strategy on the scored clips, and the chosen order's eval WER."""
    margin = result.config.wer_margin
    ev = result.eval_curve
    panels = [("agreement with the teacher (scored clips)",
               {s.name: [100 * w for w in s.curve.wer] for s in result.strategies}),
              (f"eval WER against references ({ev['strategy']})", {ev["strategy"]: [100 * w for w in ev["wer"]]})]
    lines = [(margin, f"margin {margin:g} points"),
             (100 * result.teacher["eval_wer"] + margin, f"teacher + {margin:g} points")]
    return plot_curves(panels, 0.0, 0.0, None, path, title=f"{result.model}, task asr (frozen decoder)",
                       paper=PAPER_STRATEGIES, ylabel="WER (%)", lines=lines, ylim=None)
