"""`stackslim share MODEL DATA --out DIR`: argument parsing and printing; the work is
`stackslim.share.run` (pipeline.py), with the settings of `ShareConfig` (config.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..config import add_method_args, config_from_args
from .config import ShareConfig
from .pipeline import COMMAND, RESULT, ShareResult
from .pipeline import run as share_run

__all__ = ["COMMAND", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Convert an encoder to shared weights + low-rank residuals, recover and compare."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Convert MODEL's stack to the ResidualTransformer form (per group of layers one\n"
        "shared weight, plus a low-rank residual and a diagonal per layer), recover it by\n"
        "distillation toward the dense teacher on DATA's train split and the --unlabelled\n"
        "clips (the task loss on the train split only) for --epochs (--max-minutes caps it),\n"
        "and compare it with the teacher: size, CPU latency, accuracy (and WER for Whisper).\n"
        "The training flags (--epochs, --batch-size, --lr, ...) are those of the recovery.")
    parser.epilog = (
        "example:\n"
        "  stackslim share whisper-base synth-commands --out runs/share --group 3 --rank 16 \\\n"
        "      --unlabelled synth-sentences --max-unlabelled 500 --epochs 3\n"
        "  stackslim share whisper-base synth-commands --out runs/half --group 3 --size 0.5 \\\n"
        "      --init aware --local-epochs 20 --epochs 0")
    add_method_args(parser, ShareConfig)


def summary(r: ShareResult) -> str:
    """One line: groups, size, accuracy (and WER) before and after recovery."""
    size = r.size
    rank = f"size {r.config['size']:g}" if r.config.get("size") else f"rank {r.config['rank']}"
    line = (f"{r.model}: groups {r.groups}, {rank}: stack "
            f"{size['stack_params']:,} / {size['dense_stack_params']:,} parameters "
            f"({100 * size['stack_ratio']:.1f}%), "
            f"accuracy {r.teacher['accuracy']:.3f} → {r.before['accuracy']:.3f}")
    if r.local is not None:
        line += f" → {r.local['eval']['accuracy']:.3f} after the layer-wise fit"
    if r.after is not None:
        line += f" → {r.after['accuracy']:.3f} after recovery"
        n = r.recovery["data"]
        if n["unlabelled_clips"]:
            how = ("whole, with the decoder loss" if "asr" in n
                   else f"in {n['unlabelled_windows']} windows")
            line += (f" (on {n['labelled_clips']} labelled clips + {n['unlabelled_clips']} "
                     f"unlabelled, {how})")
    if "wer" in r.teacher:
        line += (f"; WER {r.teacher['wer']:.3f} → {r.before['wer']:.3f}"
                 + (f" → {r.local['eval']['wer']:.3f}" if r.local else "")
                 + (f" → {r.after['wer']:.3f}" if r.after else ""))
    return line


def run(ns: argparse.Namespace) -> int:
    cfg = config_from_args(ShareConfig, ns)
    torch.manual_seed(cfg.train.seed)  # the CLI's runs are seeded as a whole
    r = share_run(ns.model, ns.data, ns.out, cfg, progress=not ns.quiet, force=ns.force)
    if r is None:  # a torchrun rank other than 0
        return 0
    print(summary(r))
    print(f"wrote {Path(ns.out) / RESULT} and {Path(ns.out) / 'model'}")
    return 0
