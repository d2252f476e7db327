"""Benchmark: where a deployed model's memory goes while it runs (PyTorch, one thread).

    python bench/memory_breakdown.py                 # teacher and shared (3 forms), about 2 min

Uses the folders that `bench/deploy.py --shared svd` built (``--work``). Each row is a fresh
process (`benchlib.run_child`) that imports and warms the libraries as deploy.py does
(`deploy.warm_base`), loads the variant, runs the traced forward (`export.graphs.EncoderGraph`)
at batch 1 twice, then at batch 8 twice and once more sampled on 2 s noise clips, and reports, above the
imported libraries:

- ``peak_mib`` / ``peak_mib_batch1``: VmHWM after the batch-8 (batch-1) forwards, before the
  sampled one (what deploy.py reports);
- ``weights_file_mib``: resident pages of the model's own files (weights read in place);
- ``code_file_mib``: the other file-backed pages that appeared (libraries' code);
- ``live_tensor_peak_mib``: the most memory glibc malloc had handed out and not yet taken
  back (``mallinfo2``: uordblks + hblkhd) after any aten op of the last batch-8 forward,
  above its value before that forward: the activations the forward holds at once;
- ``heap_held_peak_mib``: the most memory malloc held from the kernel (arena + hblkhd) over
  that forward, above the same point: live tensors plus what freed blocks leave behind
  (fragmentation), which is what RssAnon sees.

Variants: ``teacher``; ``shared-fused``, ``shared-small-first``, ``shared-plain``: the shared
model with `ResidualLinear.impl` set to that form. Linux with glibc only.
Writes bench/results/memory_breakdown.json and memory_breakdown.md.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import benchlib  # noqa: E402

VARIANTS = ("teacher", "shared-fused", "shared-small-first", "shared-plain")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def malloc_mib() -> tuple[float, float]:
    """(in use, held) MiB of glibc malloc: (uordblks + hblkhd, arena + hblkhd)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    m = libc.mallinfo2()
    return (m.uordblks + m.hblkhd) / 2**20, (m.arena + m.hblkhd) / 2**20


def child(variant: str, work: Path) -> dict:
    """One row, in this fresh process."""
    import numpy as np
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    import deploy
    from stackslim.export.graphs import EncoderGraph
    from stackslim.export.onnx import graph_inputs
    from stackslim.export.pipeline import load_model
    from stackslim.share.layer import ResidualLinear

    torch.set_num_threads(1)
    deploy.SHARED_SVD = True
    base = deploy.warm_base("whisper")
    file0 = benchlib.proc_status_mib("RssFile")
    path = deploy.folder(work, variant.split("-")[0])
    loaded = load_model(path)
    if variant.startswith("shared-"):
        ResidualLinear.impl = variant.split("-", 1)[1]
    graph = EncoderGraph(loaded.model).eval()
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(32000)).astype(np.float32) for _ in range(8)]
    samples: list[tuple[float, float]] = []

    class Sample(TorchDispatchMode):  # malloc's counters after every aten op
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            samples.append(malloc_mib())
            return out

    out = {"variant": variant}
    with torch.inference_mode():
        x, n = graph_inputs(loaded.encoder, clips[:1])
        graph(x, n), graph(x, n)
        out["peak_mib_batch1"] = round(benchlib.proc_status_mib("VmHWM") - base, 1)
        x, n = graph_inputs(loaded.encoder, clips)
        graph(x, n), graph(x, n)
        out["peak_mib"] = round(benchlib.proc_status_mib("VmHWM") - base, 1)  # before sampling
        used0, held0 = malloc_mib()
        with Sample():
            graph(x, n)
    weights = benchlib.resident_mib_under(path)
    out["weights_file_mib"] = round(weights, 1)
    out["code_file_mib"] = round(benchlib.proc_status_mib("RssFile") - file0 - weights, 1)
    out["live_tensor_peak_mib"] = round(max(s[0] for s in samples) - used0, 2)
    out["heap_held_peak_mib"] = round(max(s[1] for s in samples) - held0, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="whisper-base")
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "stackslim" / "bench-deploy"))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--child")
    ap.add_argument("--json")
    args = ap.parse_args()
    work = Path(args.work) / args.model.replace(":", "-")
    if args.child:
        Path(args.json).write_text(json.dumps(child(args.child, work)))
        return
    missing = [v for v in ("teacher", "shared") if not (work / v).is_dir()]
    if missing:
        sys.exit(f"{work}: no {missing} folder; run bench/deploy.py --shared svd first")
    rows = []
    for v in args.variants:
        r = benchlib.run_child(Path(__file__), [v, "--model", args.model, "--work", args.work],
                               threads=1, timeout=900)
        rows.append(r)
        print(r, flush=True)
    mach = benchlib.machine()
    doc = {"command": "python bench/memory_breakdown.py " + " ".join(sys.argv[1:]), "machine": mach,
           "inputs": {"model": args.model, "shared": "K3-r16 svd init (deploy.py --shared svd)",
                      "clip_seconds": 2.0, "batch": 8, "threads": 1, "units": "MiB"},
           "rows": rows}
    t = next((r for r in rows if r["variant"] == "teacher"), None)
    md = ["# Where the memory goes: teacher vs shared (PyTorch)", "",
          f"`{doc['command']}`: {args.model}, 2 s clips, 1 thread, a fresh process per row; "
          "MiB above the imported and warmed libraries. live tensors: the most malloc had "
          "handed out at once during a batch-8 forward (after every aten op); heap held: the "
          "most malloc held from the kernel then (live + fragmentation).", "",
          "| variant | peak batch 1 | peak batch 8 | vs teacher (1 / 8) | weights pages | code pages | "
          "live tensors (batch 8) | heap held (batch 8) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = (f"{r['peak_mib_batch1'] / t['peak_mib_batch1']:.0%} / {r['peak_mib'] / t['peak_mib']:.0%}"
                 if t else "–")
        md.append(f"| {r['variant']} | {r['peak_mib_batch1']:.1f} | {r['peak_mib']:.1f} | {ratio} | "
                  f"{r['weights_file_mib']:.1f} | {r['code_file_mib']:.1f} | "
                  f"{r['live_tensor_peak_mib']:.1f} | {r['heap_held_peak_mib']:.1f} |")
    md.append(f"\nMachine: {mach['cpu']}, load {mach['load_avg_1m_at_start']} at start; {mach['note']}.\n")
    for p in benchlib.write_results("memory_breakdown", doc, "\n".join(md)):
        print("wrote", p)


if __name__ == "__main__":
    main()
