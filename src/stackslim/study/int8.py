"""The study's int8 columns: what a device would run. Every variant of the side-by-side table
(teacher, the best pruned, each mimic, each shared) exported to ONNX with int8 weights by
`stackslim.export` (`export_loaded`: the same exporter and parity checks as `stackslim export`),
then measured beside its PyTorch row:

- bytes: ``model.int8.onnx`` (front end + stack + head; the float ``model.onnx`` beside it);
- CPU latency, audio → logits at batch 1 and batched: timed by the compare step's one
  `interleaved_latency` pass together with the PyTorch rows (same clips, same rounds, the
  session on as many threads as torch), so ``speedup`` = PyTorch ms / int8 ms is fair;
- accuracy on the test split, twice with one head: the PyTorch float model and the int8 model,
  so that ``accuracy_change`` = int8 − float is the cost of int8 alone.

    prep = Int8Columns(enc, task, cfg, folder / "int8")
    fns.update(prep.prepare(rows, models))       # exports, accuracies; latency fns to time
    lat = interleaved_latency(fns, waves)
    prep.attach(rows, lat)                       # row["int8"] = {...} or {"error": reason}

Heads: a mimic's own head; for the teacher, pruned and shared rows the teacher's head, refit
here on the teacher's last states of the train split as the prune step fits its teacher head
(`PruneConfig().train`, the study's seed; validation keeps the best epoch). An export or a
measurement that fails for one variant is recorded on its row (``error``), not raised.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..evaluate.accuracy import clip_accuracy
from ..export import ExportConfig
from ..export.onnx import graph_inputs, run_onnx, session
from ..export.pipeline import Loaded, export_loaded
from ..heads import ClassifierHead, Task, fit_head
from ..prune.config import PruneConfig
from .config import StudyConfig

INT8 = "int8"
#: the study measures int8's cost by accuracy, so it accepts an int8 model the exporter's default
#: (--int8-tolerance 0.25) would refuse, up to a relative error of 1 (its output then is noise)
INT8_TOLERANCE = 1.0
TEACHER_HEAD = "the teacher's head, refit on its train-split states as the prune step fits it"


def teacher_head(enc, task: Task, seed: int) -> ClassifierHead:
    """The teacher's head on `task`, fitted as the prune step fits it: `fit_head` on the
    teacher's last states (train split; validation keeps the best epoch), `PruneConfig().train`
    with `seed`."""
    caches = {p: task.cache(enc, p, which=(-1,), progress=False) for p in ("train", "validation")}
    head, _ = fit_head(caches["train"], task.y("train"), caches["validation"], task.y("validation"),
                       task.num_classes, replace(PruneConfig().train, seed=seed), desc="teacher head",
                       progress=False)
    return head.eval()


def best_pruned(rows: list[dict]) -> str | None:
    """The pruned row that deletes the most layers (the first of them on a tie), or None."""
    pruned = [r for r in rows if r["kind"] == "pruned"]
    return min(pruned, key=lambda r: r["layers"])["variant"] if pruned else None


def slug(variant: str) -> str:
    """A folder name for a row: "pruned: bi+greedy (−2)" → "pruned-bi+greedy-2"."""
    return re.sub(r"[^A-Za-z0-9+._-]+", "-", variant.replace("−", "")).strip("-")


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}"


class Int8Columns:
    """Exports and measures the int8 variants of a compare step (module docstring)."""

    def __init__(self, enc, task: Task, cfg: StudyConfig, folder: Path):
        self.enc, self.task, self.cfg, self.folder = enc, task, cfg, Path(folder)
        self.export_cfg = ExportConfig(format="onnx", int8=True, int8_tolerance=INT8_TOLERANCE,
                                       seed=cfg.seed)
        self.info: dict[str, dict] = {}
        self.seconds: dict[str, float] = {}
        self.phases = {"head": 0.0, "export": 0.0, "accuracy": 0.0}  # wall seconds of each part
        self.threads = torch.get_num_threads()

    def prepare(self, rows: list[dict], models: dict[str, tuple[str, Any, str | None]]
                ) -> dict[str, Callable]:
        """Export and score every row to measure; returns the latency functions to time
        ("<variant> · int8" → clips → logits).

        Args:
            rows: the side-by-side rows (``variant``, ``kind``, ``layers``).
            models: row variant → (kind, model, saved folder or None): the teacher and pruned
                variants as Encoders, a mimic as its MimicModel, a shared one as its encoder.
        """
        t0, c0 = time.monotonic(), time.process_time()
        best = best_pruned(rows)
        todo = [r["variant"] for r in rows if r["kind"] != "pruned" or r["variant"] == best]
        waves = [self.task.dataset.load(i) for i in self.task.splits["test"]]
        y = self.task.y("test")
        head = None
        fns: dict[str, Callable] = {}
        for v in todo:
            kind, model, source = models[v]
            try:
                if kind == "mimic":
                    loaded = Loaded("mimic", model, model.head, model.front,
                                    Path(source) if source else None)
                    float_fn, used = model, "own"
                else:
                    if head is None:
                        t = time.monotonic()
                        head = teacher_head(self.enc, self.task, self.cfg.seed)
                        self.phases["head"] += time.monotonic() - t
                    loaded = Loaded(kind, model, head, model, Path(source) if source else None)
                    float_fn, used = (lambda w, m=model, h=head: h(*m.encode(w))), TEACHER_HEAD
                fns[f"{v} · {INT8}"] = self._measure(v, loaded, float_fn, used, waves, y)
            except Exception as e:  # one variant's failure is its row's, not the study's
                self.info[v] = {"error": _reason(e)}
        self.seconds = {"wall": round(time.monotonic() - t0, 1), "cpu": round(time.process_time() - c0, 1),
                        **{k: round(v, 1) for k, v in self.phases.items()}}
        return fns

    def _measure(self, v: str, loaded: Loaded, float_fn: Callable, head: str, waves: list,
                 y: torch.Tensor) -> Callable:
        out = self.folder / slug(v)
        t = time.monotonic()
        res = export_loaded(loaded, out, self.export_cfg, source=f"study variant {v}")
        self.phases["export"] += time.monotonic() - t
        sess = session(out / "model.int8.onnx", threads=self.threads)
        front = loaded.encoder

        def int8_fn(w: list) -> np.ndarray:  # clips → (B, C) logits, all in onnxruntime
            return run_onnx(sess, *graph_inputs(front, w))[2]

        t = time.monotonic()
        with torch.inference_mode():
            acc_float = clip_accuracy(float_fn, waves, y, batch_size=16)
            acc_int8 = clip_accuracy(int8_fn, waves, y, batch_size=16)
        self.phases["accuracy"] += time.monotonic() - t
        self.info[v] = {"bytes": res.files["model.int8.onnx"], "float_onnx_bytes": res.files["model.onnx"],
                        "accuracy": acc_int8, "float_accuracy": acc_float,
                        "accuracy_change": acc_int8 - acc_float, "rel_error": res.int8["parity"]["rel_error"],
                        "float_parity_max_abs_diff": res.parity["max_abs_diff"], "head": head,
                        "test_clips": len(waves), "dir": str(out), "error": None}
        return int8_fn

    def attach(self, rows: list[dict], lat: dict[str, dict]) -> None:
        """Put each measured variant's int8 numbers on its row (``row["int8"]``; None for a
        pruned row that is not the best), with its latency from `lat` and the ratios."""
        for r in rows:
            got = self.info.get(r["variant"])
            if got is None:
                r[INT8] = None
                continue
            if got["error"] is None:
                t = lat[f"{r['variant']} · {INT8}"]
                got.update(t, speedup=r["batch1_ms"] / t["batch1_ms"], size_ratio=got["bytes"] / r["bytes"])
            r[INT8] = got

    def summary(self) -> dict:
        """What the compare step's summary records about the int8 columns (``seconds``: wall and
        CPU (this process) seconds of the exports, the head and the accuracies, and the wall
        seconds of each of those parts; their latency rounds are the compare step's)."""
        return {"seconds": self.seconds, "threads": self.threads,
                "teacher_head": TEACHER_HEAD, "export": asdict(self.export_cfg),
                "variants": len(self.info), "failed": sorted(v for v, i in self.info.items() if i["error"])}
