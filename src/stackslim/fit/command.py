"""`stackslim fit MODEL DATA --out DIR --max-mb M`: argument parsing and printing; the work is
`stackslim.fit.run` (pipeline.py), with the settings of `FitConfig` (config.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..config import add_method_args, config_from_args
from .config import FitConfig, recovery_train
from .pipeline import COMMAND, RESULT, FitResult
from .pipeline import run as fit_run

__all__ = ["COMMAND", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The most accurate composition of pruning, sharing, mimicking and int8 within a budget."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Find the most accurate model that fits a memory budget (--max-mb, the encoder's\n"
        "stored weights) and optionally a latency budget (--max-ms), among compositions of\n"
        "layer deletion, weight sharing at a size fraction or a mimic layer, in float32 or\n"
        "int8. Sizes and latencies are predicted before any training; only candidates that\n"
        "fit are trained, by successive halving within --epochs-budget (recovery epochs of\n"
        "all candidates together; --minutes: an optional wall-clock cap). Writes fit.json,\n"
        "pareto.png, model/ (the winner) and onnx/ (its export).\n"
        "--task asr (a Whisper MODEL, DATA a sentences set such as synth-sentences): pruned\n"
        "and shared candidates recovered on --asr-clips sentence clips and ranked by their\n"
        "teacher-agreement WER on --score-clips held-out ones; every trained one's WER on\n"
        "--eval-clips split=eval clips against the references goes to fit.json.")
    parser.epilog = (
        "example:\n"
        "  stackslim fit whisper-base synth-commands --out runs/fit20 --max-mb 20 --epochs-budget 45\n"
        "  stackslim fit whisper-base synth-commands --out runs/fit10 --max-mb 10 --max-ms 40\n"
        "  stackslim fit whisper-tiny.en synth-sentences --task asr --out runs/fit-asr --max-mb 12 \\\n"
        "      --asr-clips 16 --score-clips 8 --eval-clips 8 --epochs-budget 12")
    # the recovery's epochs and time limit come from --epochs-budget and --minutes: no flags
    add_method_args(parser, FitConfig, skip=("epochs", "max_minutes"))
    parser.set_defaults(epochs=recovery_train().epochs, max_minutes=0.0)


def summary(r: FitResult) -> str:
    """One line: the winner, its accuracy (--task asr: agreement and eval WER) against the
    teacher, its bytes and latency."""
    w = r.winner
    if w is None:
        return f"{r.model}: no trained candidate fits the budget"
    if r.task.get("task") == "asr":
        score = (f"agreement WER {100 * w['agreement_wer']:.1f}%, eval WER {100 * w['eval_wer']:.1f}% "
                 f"(teacher {100 * r.teacher['eval_wer']:.1f}%)")
    else:
        score = f"accuracy {w['accuracy']:.3f} (teacher {r.teacher['accuracy']:.3f})"
    return (f"{r.model}: winner {w['name']}: {score}, {w['written_bytes'] / 1e6:.3f} MB (budget "
            f"{r.budget['max_mb']:g}), {w['measured_ms']:.1f} ms per 1 s clip; "
            f"{sum(c['trained'] for c in r.candidates)} of {len(r.candidates)} candidates trained "
            f"with {r.search['epochs_spent']} of {r.search['epochs_budget']} epochs"
            + (" (the --minutes cap bit)" if r.search["cap_bit"] else ""))


def run(ns: argparse.Namespace) -> int:
    cfg = config_from_args(FitConfig, ns)
    torch.manual_seed(cfg.train.seed)
    r = fit_run(ns.model, ns.data, ns.out, cfg, progress=not ns.quiet, force=ns.force,
                log=(lambda s: None) if ns.quiet else print)
    print(summary(r))
    print(f"wrote {Path(ns.out) / RESULT}, {Path(ns.out) / 'pareto.png'} and {Path(ns.out) / 'model'}")
    return 0
