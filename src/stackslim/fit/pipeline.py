"""`stackslim.fit.run(model, data, out, cfg)`: the most accurate model that fits a budget.

Steps, before anything is written: load the teacher; predict every candidate's encoder bytes
(`predict.Account`) and latency (`latency.LatencyModel`, measured once here on a 1 s clip);
refuse a budget no candidate meets (one line naming the smallest that could be met). Then,
in the run folder: the teacher's states of the task's splits (cached once, for all
candidates); its head; the deletion order (Block Influence on validation states); the
compositions that fit, at most --max-candidates of them, built and trained by successive
halving (`search.halving`) within --epochs-budget (and the optional --minutes cap); every trained candidate's test accuracy, written
bytes (`int8.write_encoder`) and measured latency; the winner (best validation accuracy that
fits) saved and exported to ONNX. `--task asr` (Whisper, sentences) is `fit.pipeline_asr`:
the same search, recovered on sentence clips and ranked by teacher-agreement WER.

Writes ``out/fit.json`` (last: its presence marks a finished run), ``out/pareto.png``,
``out/model/`` and ``out/onnx/``, and ``out/config.json``.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict

from .. import runtime
from ..data import AudioDataset
from ..heads import accuracy, fit_head
from ..mimic.model import front_end_copy
from ..models import load_encoder
from ..models.base import Encoder
from ..run import start_run
from ..share.recover import distill_cache
from ..train import TrainConfig
from .config import FitConfig
from .grid import bi_order
from .predict import Candidate
from .search import Caches, Trial, WordScorer
from .steps import COMMAND, RESULT, WRITES, FitResult, check_budget, finish, search_candidates

__all__ = ["COMMAND", "RESULT", "FitResult", "run"]


def run(model: str | os.PathLike | Encoder, data: str | os.PathLike | AudioDataset,
        out: str | os.PathLike, cfg: FitConfig, *, progress: bool = True,
        force: bool = False, log=print, tokenizer=None) -> FitResult:
    """Search the compositions of pruning, sharing, mimicking and int8 for the most accurate
    model within `cfg.max_mb` (and `cfg.max_ms`); see the module docstring. With
    `cfg.task == "asr"`: `pipeline_asr.run_asr` (`tokenizer` stands in for the Whisper
    model's own, e.g. for a model given as an Encoder).

    Raises:
        FitError: a budget no candidate meets, before anything is written.
    """
    if cfg.task == "asr":
        from .pipeline_asr import run_asr

        return run_asr(model, data, out, cfg, progress=progress, force=force, log=log,
                       tokenizer=tokenizer)
    t0 = time.monotonic()
    seed = cfg.train.seed
    enc = (model if isinstance(model, Encoder) else load_encoder(model)).eval()
    account, lat = check_budget(enc, cfg)
    with start_run(COMMAND, out, cfg, model=model, data=data, writes=WRITES, force=force) as r:
        task = r.task(data, cfg.task, seed=seed, max_clips=cfg.max_clips)
        enc.to(runtime.choose_device(cfg.device))
        caches = Caches({p: distill_cache(enc, task.dataset.batches(task.splits[p], 16),
                                          total=len(task.splits[p]), states="last",
                                          desc=f"teacher states ({p})", progress=progress)
                         for p in ("train", "validation", "test")},
                        {p: task.y(p) for p in ("train", "validation", "test")})
        order_cache = distill_cache(enc, task.dataset.batches(task.splits["validation"], 16),
                                    total=len(task.splits["validation"]), states="all",
                                    desc="teacher states (order)", progress=progress)
        enc.cpu()
        order = bi_order(order_cache)
        del order_cache
        head, _ = fit_head(caches.teacher["train"], caches.labels["train"], caches.teacher["validation"],
                           caches.labels["validation"], task.num_classes,
                           TrainConfig(epochs=cfg.head_epochs, seed=seed), progress=progress)
        teacher = {"accuracy": accuracy(head, caches.teacher["test"], caches.labels["test"]),
                   "validation_accuracy": accuracy(head, caches.teacher["validation"], caches.labels["validation"]),
                   "bytes": account.predict(Candidate("prune")).bytes, "ms": lat.teacher_ms,
                   "num_layers": enc.num_layers}
        calib = [task.dataset.load(i) for i in task.splits["train"][: cfg.calib]]

        def prepare(trials: list[Trial]) -> None:
            if any(t.comp.method == "mimic" for t in trials):
                caches.ensure_mimic(front_end_copy(enc), task, progress)

        rows, search, winner = search_candidates(enc, order, cfg, account, lat, WordScorer(caches, head),
                                                 head, calib, progress, log, prepare)
        notes = ["latency: PyTorch float32 on this machine for float and int8 alike (int8 "
                 "weights are rounded, activations are not quantized in the accuracy)"]
        result = FitResult(
            model=str(getattr(model, "name", model)), data=str(data), config=asdict(cfg),
            task=task.describe(), budget={"max_mb": cfg.max_mb, "max_ms": cfg.max_ms or None,
                                          "front_end_bytes": account.front_bytes()},
            latency_model=lat.to_json(), deletion_order=[i + 1 for i in order], teacher=teacher,
            candidates=list(rows.values()), search=search, winner=None, seconds=0.0, notes=notes)
        meta = {"classes": list(task.names), "task": cfg.task}
        return finish(r, result, winner, rows, head, meta, cfg, t0)
