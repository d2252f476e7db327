"""`stackslim mimic MODEL DATA --out DIR`: maps 1:1 to `stackslim.mimic.run`.

    stackslim mimic whisper-base synth-commands --out runs/mimic --kind linear --hidden 512
    stackslim mimic random:wavlm my_data/ --out runs/m --layers 2 --epochs 10 --baseline
    stackslim mimic whisper-tiny.en synth-sentences --out runs/ma --task asr --kind transformer --positions

Writes ``DIR/config.json``, ``DIR/model/`` and ``DIR/mimic.json``, and prints the comparison
with the teacher.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import add_method_args, config_from_args
from . import pipeline
from .asr_pipeline import AsrMimicResult
from .config import MimicConfig

COMMAND = "mimic"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Train mimicking layers that replace the encoder's stack; compare with the teacher."""
    add_method_args(p, MimicConfig)


def run(ns: argparse.Namespace) -> int:
    cfg = config_from_args(MimicConfig, ns)
    res = pipeline.run(ns.model, ns.data, ns.out, cfg, progress=not ns.quiet, force=ns.force)
    if res is None:  # a torchrun rank other than 0
        return 0
    if isinstance(res, AsrMimicResult):
        print(f"{res.model} on {res.data} (asr: {res.sentences['train']} pool sentences, "
              f"{res.sentences['eval']} eval): {cfg.layers} x {cfg.kind} mimic layer(s), z={cfg.hidden}")
        print(res.table())
        print(f"wrote {Path(ns.out) / 'mimic.json'} and {res.model_dir}")
        return 0
    print(f"{res.model} on {res.data} ({res.task['task']}, {res.task['classes']} classes): "
          f"{cfg.layers} x {cfg.kind} mimic layer(s), z={cfg.hidden}"
          + (" (baseline: no stage 1)" if cfg.baseline else ""))
    print(res.table())
    print(f"wrote {Path(ns.out) / 'mimic.json'} and {res.model_dir}")
    return 0
