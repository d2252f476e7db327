"""`stackslim prune MODEL DATA --out DIR`: maps 1:1 to `stackslim.prune.run`.

    stackslim prune whisper-base synth-commands --out runs/prune --task word --threshold 0.95
    stackslim prune random:wavlm my_data/ --out runs/p --strategies forward,greedy --finetune
    stackslim prune whisper-base synth-sentences --out runs/p-asr --task asr --wer-margin 1
"""
from __future__ import annotations

import argparse

from .. import runtime
from ..config import add_method_args, config_from_args
from . import pipeline
from .config import ASR, PruneConfig

COMMAND = "prune"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """delete layers by each strategy: curves, pruning.json, pruning.png, the pruned model"""
    add_method_args(parser, PruneConfig)


def run(ns: argparse.Namespace) -> int:
    cfg = config_from_args(PruneConfig, ns)
    result = pipeline.run(ns.model, ns.data, ns.out, cfg, progress=not ns.quiet, force=ns.force)
    if not runtime.is_main():  # under torchrun rank 0 alone reports
        return 0
    if cfg.task == ASR:
        return _report_asr(result, ns)
    t = result.teacher
    print(f"teacher ({'fine-tuned' if t.finetuned else 'frozen encoder + head'}): test accuracy "
          f"{t.test_accuracy:.4f}; layers deletable at capacity >= {cfg.threshold:g} (of "
          f"{result.num_layers - 1} deletable):")
    for variant, label in (("no_refit", "no post-training"), ("refit", "head re-fitted")):
        d = result.deletable(variant)
        if d:
            print(f"  {label:17s} " + ", ".join(f"{k} {v}" for k, v in d.items()))
    b = result.best
    print(f"saved model: {b['strategy']} ({b['variant']}), layers {b['deleted_layers']} deleted, "
          f"test accuracy {b['test_accuracy']:.4f} (capacity {b['test_capacity']:.3f})"
          + ("" if cfg.save_model else " [not written: --no-save-model]"))
    return _report_files(result, ns)


def _report_asr(result, ns: argparse.Namespace) -> int:
    cfg, t, b = result.config, result.teacher, result.best
    lo, hi = t["eval_interval"]
    print(f"teacher: eval WER {100 * t['eval_wer']:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}] on "
          f"{result.data['eval_clips']} clips; layers deletable at agreement WER <= {cfg.wer_margin:g} "
          f"points on {result.data['scored_clips']} scored clips (of {result.num_layers - 1} deletable):")
    print("  " + ", ".join(f"{k} {v}" for k, v in result.deletable().items()))
    lo, hi = b["eval_interval"]
    print(f"saved model: {b['strategy']}, layers {b['deleted_layers']} deleted, agreement WER "
          f"{100 * b['agreement_wer']:.2f}%, eval WER {100 * b['eval_wer']:.2f}% [{100 * lo:.2f}, "
          f"{100 * hi:.2f}] (teacher {100 * b['teacher_eval_wer']:.2f}%)"
          + ("" if cfg.save_model else " [not written: --no-save-model]"))
    return _report_files(result, ns)


def _report_files(result, ns: argparse.Namespace) -> int:
    """The lines both tasks end with: what an earlier run left and was removed, what was written."""
    if result.removed:
        print(f"removed {', '.join(f'{ns.out}/{r}' for r in result.removed)}: left by an earlier run "
              "(--no-save-model writes no model)")
    print(f"results: {ns.out}/pruning.json, {ns.out}/pruning.png"
          + (f", {ns.out}/model/" if result.config.save_model else ""))
    return 0
