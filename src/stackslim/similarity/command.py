"""`stackslim analyze MODEL DATA --out DIR`: maps 1:1 to `stackslim.similarity.run`.

    stackslim analyze whisper-base synth-commands --out runs/analyze
    torchrun --nproc_per_node=2 -m stackslim analyze random:wavlm DATA --out DIR   # sharded
"""
from __future__ import annotations

import argparse

from .. import runtime
from ..config import add_method_args, config_from_args
from . import pipeline
from .config import AnalyzeConfig

COMMAND = "analyze"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """similarity matrices, blocks and heatmaps of a model's hidden states"""
    add_method_args(p, AnalyzeConfig)


def run(ns: argparse.Namespace) -> int:
    cfg = config_from_args(AnalyzeConfig, ns)
    res = pipeline.run(ns.model, ns.data, ns.out, cfg, progress=not ns.quiet, force=ns.force)
    if runtime.is_main():
        for m, b in res.blocks.items():
            print(f"{m:>6}: blocks {b.blocks}")
        if res.robustness is not None:
            print(f"robustness: {res.robustness.verdict}")
        print(f"wrote {ns.out}/similarity.json, blocks.json, heatmaps ({round(res.seconds, 2)} s, "
              f"{res.clips} clips)")
    return 0
