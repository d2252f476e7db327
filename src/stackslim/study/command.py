"""`stackslim study [MODEL] [DATA] --out DIR [--task word] [--quick]`: the whole study.

Argument parsing and printing only; the work is `stackslim.study.run`.
"""
from __future__ import annotations

import argparse

from ..config import add_config_args, config_from_args
from .config import StudyConfig
from .pipeline import DEFAULT_DATA, DEFAULT_MODEL, run as run_study
from .report import findings

COMMAND = "study"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """the whole study on one model and data set, with an HTML report"""
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=f"encoder (default: {DEFAULT_MODEL})")
    p.add_argument("data", nargs="?", default=DEFAULT_DATA, help=f"labelled data (default: {DEFAULT_DATA})")
    p.add_argument("--out", default="runs/study", help="output folder (default: runs/study)")
    add_config_args(p, StudyConfig)


def run(ns: argparse.Namespace) -> int:
    cfg = config_from_args(StudyConfig, ns)
    r = run_study(ns.model, ns.data, ns.out, cfg, progress=not ns.quiet, force=ns.force)
    if r.stopped_after:
        print(f"stopped after step {r.stopped_after}; run the same command again to go on")
        return 0
    for f in findings(r.to_json()):
        print(f"- {f}")
    print(f"wrote {ns.out}/results.json and {ns.out}/report.html")
    return 0
