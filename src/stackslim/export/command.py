"""`stackslim export MODEL_DIR --out DIR`: maps 1:1 to `stackslim.export.run`.

    stackslim export runs/share/model --out runs/share/onnx --format onnx --int8
    stackslim export runs/prune/model --out runs/prune/ct2 --format ct2
"""
from __future__ import annotations

import argparse

from ..config import add_config_args, config_from_args
from .config import ExportConfig
from .pipeline import EXPORT_JSON
from .pipeline import run as export

COMMAND = "export"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """export a model folder to ONNX (+ int8) or CTranslate2, with parity checked"""
    parser.add_argument("model", help="a folder stackslim wrote (pruned, shared, mimic), a model "
                                      "folder, random:<family> or a bundled name")
    parser.add_argument("--out", required=True, help="output folder")
    add_config_args(parser, ExportConfig)


def run(ns: argparse.Namespace) -> int:
    res = export(ns.model, ns.out, config_from_args(ExportConfig, ns))
    p = res.parity
    print(f"{res.kind} {res.family} model → {res.format} ({res.exporter}); parity on "
          f"{p['clips']} clips: max |diff| {p['max_abs_diff']:.2e} on valid frames")
    if res.int8:
        print(f"int8: relative error {res.int8['parity']['rel_error']:.3f}")
    for name, size in res.files.items():
        print(f"  {ns.out}/{name}: {size / 1e6:.2f} MB")
    print(f"results: {ns.out}/{EXPORT_JSON}")
    return 0
