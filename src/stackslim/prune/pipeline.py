"""`run(model, data, out, cfg)`: teacher, deletion orders, curves, the best pruned model.

    from stackslim.prune import PruneConfig, run
    result = run("whisper-base", "synth-commands", "runs/prune", PruneConfig(task="word"))

Steps: hidden state 0 of every clip (the front end runs once per clip); the teacher (head on
the frozen encoder, or fine-tuned); each strategy's order on validation; its curves on
validation and test, without post-training and with the head re-fitted; the saved model =
the most layers deleted at validation capacity >= threshold over all strategies (ties: no
re-fit first, then higher validation accuracy), so that test stays untouched by every choice.

Under torchrun the front end, the layer runs of every score and curve point (each rank runs
its shard of the clips, `stack.Split.shard`) and the heads' training (DDP) are divided between
the ranks; `pruning.json` records the clip × layer runs of each rank (`layer_runs`).
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import runtime
from ..data import AudioDataset
from ..heads import ClassifierHead, Task
from ..heads.own_head import load_own_head, restrict_head
from ..models import Encoder
from ..results import provenance
from ..run import start_run
from ..train import TrainConfig
from .config import ASR, PAPER_STRATEGIES, PruneConfig, PruneError
from .curves import VARIANTS, Curve, Evaluator
from .pipeline_asr import run_asr
from .plots import plot_curves
from .save import save_pruned
from .stack import Split, front_end_states, kept_layers
from .strategies import ScoringContext, each_order
from .teacher import Teacher, train_teacher

COMMAND = "prune"
SPLITS = ("train", "validation", "test")
WRITES = ("pruning.json", "pruning.png", "model")  # the results file first


@dataclass
class StrategyResult:
    name: str
    order: list[int]  # 0-based
    info: dict
    curves: dict[str, Curve]  # variant → curve
    seconds: float

    def to_json(self, threshold: float) -> dict:
        return {"family": "paper" if self.name in PAPER_STRATEGIES else "ours",
                "order": [i + 1 for i in self.order], "info": self.info,
                "curves": {v: c.to_json(threshold) for v, c in self.curves.items()},
                "seconds": round(self.seconds, 2)}


@dataclass
class PruneResult:
    """Everything `stackslim prune` measured; `to_json()` is DIR/pruning.json."""

    config: PruneConfig
    model: str
    family: str
    num_layers: int
    task: dict
    classes: list[str]
    teacher: Teacher
    strategies: list[StrategyResult]
    best: dict
    seconds: float
    layer_runs: list[int] = field(default_factory=list)  # clips × layers run, per rank
    removed: list[str] = field(default_factory=list)  # what an earlier run left in DIR, removed
    provenance: dict = field(default_factory=provenance)

    def deletable(self, variant: str = "no_refit") -> dict[str, int]:
        """Strategy → largest number of layers deleted with test capacity >= threshold."""
        return {s.name: s.curves[variant].max_deletable(self.config.threshold)
                for s in self.strategies if variant in s.curves}

    def to_json(self) -> dict:
        thr = self.config.threshold
        return {
            "model": self.model, "family": self.family, "num_layers": self.num_layers,
            "layer_numbering": "1-based: layer 1 is the first layer of the stack (never deleted)",
            "task": self.task, "threshold": thr, "teacher": self.teacher.to_json(),
            "strategies": {s.name: s.to_json(thr) for s in self.strategies},
            "summary": {v: self.deletable(v) for v in VARIANTS if self.strategies and v in self.strategies[0].curves},
            "best": self.best, "seconds": round(self.seconds, 1),
            "layer_runs": {"per_rank": self.layer_runs, "total": sum(self.layer_runs),
                           "counts": "clips × layers run from hidden state 0 (front end apart)"},
            "removed_from_earlier_run": self.removed,
            "config": asdict(self.config), "provenance": self.provenance,
        }


def _choose_best(strategies: list[StrategyResult], threshold: float) -> tuple[StrategyResult, str, int]:
    """(strategy, variant, k) with the most layers deleted at validation capacity >= threshold."""
    best, key = None, None
    for rank, s in enumerate(strategies):
        for v, c in s.curves.items():
            k = c.max_deletable(threshold, "validation")
            cand = (k, v == "no_refit", c.val_accuracy[k], -rank)
            if key is None or cand > key:
                best, key = (s, v, k), cand
    assert best is not None
    return best


def run_pruning(enc: Encoder, task: Task, cfg: PruneConfig = PruneConfig(),
                x0_store: dict[int, torch.Tensor] | None = None,
                head: ClassifierHead | None = None,
                progress: bool = True) -> tuple[PruneResult, Encoder, Evaluator]:
    """Teacher, orders and curves for `enc` on `task` (no files written).

    Args:
        enc: the encoder (not changed: fine-tuning works on a copy).
        task: the prepared task (classes and splits).
        cfg: the configuration.
        x0_store: hidden state 0 per clip index, re-used and filled (share it between calls
            on one data set and encoder front end).
        head: the model's own head for the task's classes (`heads.own_head`): no head trained.
        progress: show progress bars.

    Returns:
        The result, the teacher's encoder (the fine-tuned copy when `cfg.finetune`) and the
        evaluator holding the heads of every curve point.
    """
    t0 = time.monotonic()
    if enc.num_layers < 2:
        raise PruneError(f"{enc.name} has {enc.num_layers} layer(s): nothing to prune (layer 1 is kept)")
    if cfg.finetune:
        enc = copy.deepcopy(enc)
    torch.manual_seed(cfg.train.seed)
    batch = cfg.train.batch_size
    idx = sorted({i for p in SPLITS for i in task.splits[p]})
    store = front_end_states(enc, task.dataset, idx, x0_store, batch, progress)
    splits = {p: Split.build(store, task.splits[p], task.y(p), batch) for p in SPLITS}
    teacher, runner = train_teacher(enc, splits, task.num_classes, cfg, head=head, progress=progress)
    refit_cfg = TrainConfig(epochs=cfg.refit_epochs, lr=cfg.train.lr, patience=5, seed=cfg.train.seed)
    evaluator = Evaluator(runner, teacher.head, task.num_classes, refit_cfg)
    ctx = ScoringContext(runner, teacher.head, enc.num_layers, cfg.knn_k, refit=evaluator.refit_head,
                         progress=progress, threshold=cfg.threshold, beam_width=cfg.beam_width)
    results, t = [], time.monotonic()
    for name, order, info in each_order(cfg.strategies, ctx, progress):
        variants = VARIANTS if cfg.refit else ("no_refit",)
        curves = {v: evaluator.curve(order, v) for v in variants}
        results.append(StrategyResult(name, order, info, curves, time.monotonic() - t))
        t = time.monotonic()
    s, variant, k = _choose_best(results, cfg.threshold)
    deleted = sorted(s.order[:k])
    curve = s.curves[variant]
    best = {"strategy": s.name, "variant": variant, "deleted_layers": [d + 1 for d in deleted],
            "num_layers": enc.num_layers - k,
            "kept_layers": [i + 1 for i in kept_layers(enc.num_layers, deleted)],
            "val_accuracy": round(curve.val_accuracy[k], 6), "test_accuracy": round(curve.test_accuracy[k], 6),
            "test_capacity": round(curve.capacity("test")[k], 6),
            "stack_params": _stack_params(enc, deleted), "stack_params_teacher": enc.num_params(stack_only=True),
            "chosen_on": "validation"}
    result = PruneResult(config=cfg, model=enc.name, family=enc.family, num_layers=enc.num_layers,
                         task=task.describe(), classes=list(task.names), teacher=teacher,
                         strategies=results, best=best, seconds=time.monotonic() - t0,
                         layer_runs=runtime.all_gather_objects(runner.layer_runs))
    return result, enc, evaluator


def _stack_params(enc: Encoder, deleted: list[int]) -> int:
    gone = set(deleted)
    return sum(p.numel() for i, layer in enumerate(enc.layers) if i not in gone for p in layer.parameters())


def run(model: str | os.PathLike | Encoder, data: str | os.PathLike | AudioDataset,
        out: str | os.PathLike, cfg: PruneConfig = PruneConfig(), *, progress: bool = True,
        force: bool = False) -> PruneResult:
    """The `stackslim prune` command as a function: writes DIR/pruning.json, DIR/pruning.png,
    DIR/config.json and (unless `cfg.save_model` is False) DIR/model/ (see `save_pruned`).

    Under torchrun the ranks share the front-end encoding, train the heads with DDP and divide
    the layer runs of the scoring (every rank then holds the same numbers); rank 0 alone writes.
    What an earlier run wrote is removed first; with `cfg.save_model` False, a DIR/model/ left
    by an earlier run is listed in `removed_from_earlier_run`: the folder never mixes two runs.
    `force` takes over a folder that holds another command's run.

    With `cfg.task` "asr" (Whisper) the deletions are scored by transcription instead
    (`pipeline_asr.run_asr`, an `AsrPruneResult`)."""
    if cfg.task == ASR:
        return run_asr(model, data, out, cfg, progress=progress, force=force)
    with start_run(COMMAND, out, cfg, model=model, data=data, writes=WRITES, force=force) as r:
        enc = r.encoder(model)
        task = r.task(data, cfg.task, seed=cfg.train.seed, max_clips=cfg.max_clips)
        own = None
        if cfg.own_head and not isinstance(model, Encoder):
            found = load_own_head(model) if Path(model).is_dir() else None
            if found is not None:
                own = restrict_head(found[0], found[1], list(task.names))
        result, teacher_enc, evaluator = run_pruning(enc, task, cfg, head=own, progress=progress)
        if not r.is_main:
            return result
        # listed when this run writes no model: the earlier run's model/ is gone, not replaced
        result.removed = [] if cfg.save_model else ["model/" for g in r.removed if g.rstrip("/") == "model"]
        write_plot(result, r.out / "pruning.png", chance=task.chance)
        if cfg.save_model:
            b = result.best
            deleted = [d - 1 for d in b["deleted_layers"]]
            head = evaluator.head_for(deleted, b["variant"])
            save_pruned(teacher_enc, deleted, head, r.out / "model",
                        meta={"classes": list(task.names), "task": cfg.task, "strategy": b["strategy"],
                              "variant": b["variant"], "teacher_finetuned": cfg.finetune,
                              "test_accuracy": b["test_accuracy"], "source_model": result.model})
        r.write_json("pruning.json", result.to_json())  # last: it marks a finished run
    return result


def write_plot(result: PruneResult, path: str | os.PathLike, chance: float) -> Path:
    names = {"no_refit": "no post-training", "refit": "head re-fitted"}
    panels = [(names[v], {s.name: s.curves[v].test_accuracy for s in result.strategies})
              for v in VARIANTS if v in result.strategies[0].curves]
    ld = result.config.finetune_layerdrop
    kind = (f"fine-tuned, LayerDrop {ld:g}" if ld > 0 else "fine-tuned") if result.teacher.finetuned \
        else "frozen encoder + head"
    title = f"{result.model}, task {result.task['task']} ({kind} teacher)"
    return plot_curves(panels, result.teacher.test_accuracy, result.config.threshold, chance, path,
                       title=title, paper=PAPER_STRATEGIES)
