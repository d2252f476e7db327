"""Benchmark: what a device runs. whisper-base variants in PyTorch, onnxruntime float and int8.

    python bench/deploy.py                   # whisper-base: teacher, pruned, shared (about 10 min)
    python bench/deploy.py --model random:whisper --seconds 1 --repeats 2    # quick check

Variants, built once into ``--work`` with the library (reused by a rerun):

- ``teacher``: the bundled whisper-base (a plain Hugging Face folder);
- ``pruned``: the teacher without its 5th layer (`Encoder.without_layers`, saved);
- ``shared``: `stackslim.share.to_residual` with groups of K = 3 layers, rank 16 (svd init, no
  recovery: speed and memory do not depend on the values), saved in the compact format without
  its decoder (``decoder=False``): the teacher's and the pruned model's decoders are
  memory-mapped by `transformers` and never read by the encoder, so they take no memory; the
  compact format reads what it stores, so a stored decoder would be counted for it alone.

Each is exported with `stackslim.export.run` (ONNX + int8; its parity lands in the rows).
Then every (variant, runtime) pair runs in a fresh process, one thread: load the model, run
the encoder on Whisper log-mel features of `--seconds` s clips (stackslim's unpadded mode,
features prepared before timing) at batch 1 and batch 8, median of `--repeats` runs after a
warm-up. PyTorch runs the library's traceable forward (`export.graphs.EncoderGraph`, what was
exported). Peak memory above imports: the process's VmHWM after loading and running minus
its VmHWM once the libraries are imported. The ONNX files hold the encoder only.
Writes bench/results/deploy.json and bench/results/deploy.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import benchlib  # noqa: E402

VARIANTS = ("teacher", "pruned", "shared")
RUNTIMES = ("pytorch", "onnxruntime", "onnxruntime-int8")


def build(model: str, work: Path) -> dict[str, Path]:
    """Model folders and their ONNX exports; existing ones are reused."""
    from stackslim.export import ExportConfig, run
    from stackslim.models import load_encoder
    from stackslim.share import to_residual

    work.mkdir(parents=True, exist_ok=True)
    folders = {v: work / v for v in VARIANTS}
    enc = None
    for v, path in folders.items():
        if not path.is_dir():
            enc = enc or load_encoder(model)
            if v == "teacher":
                enc.save(path)
            elif v == "pruned":
                enc.without_layers([min(4, enc.num_layers - 1)]).save(path)
            else:
                to_residual(enc, groups=3, rank=16).save(path, decoder=False)
        if not (work / f"{v}-onnx" / "export.json").is_file():
            run(path, work / f"{v}-onnx", ExportConfig(format="onnx", int8=True, parity_clips=2))
    return folders


def child(variant: str, runtime: str, work: Path, seconds: float, repeats: int) -> dict:
    """One measurement in this (fresh) process."""
    import numpy as np
    import torch

    from stackslim.export.graphs import EncoderGraph
    from stackslim.export.onnx import graph_inputs, session
    from stackslim.models import load_encoder

    torch.set_num_threads(1)
    base = benchlib.proc_status_mib("VmHWM")
    t0 = time.perf_counter()
    if runtime == "pytorch":
        enc = load_encoder(work / variant)
        graph = EncoderGraph(enc).eval()
        run = lambda x, n: graph(x, n)  # noqa: E731
    else:
        onnx = work / f"{variant}-onnx" / ("model.int8.onnx" if runtime.endswith("int8") else "model.onnx")
        sess = session(onnx, threads=1)
        run = lambda x, n: sess.run(None, {"features": x.numpy(), "lengths": n.numpy()})  # noqa: E731
    load_s = time.perf_counter() - t0
    from stackslim.models.whisper import WhisperEncoderAdapter  # features only: a tiny front end
    from transformers import WhisperFeatureExtractor

    class _Mel:  # graph_inputs needs an object with `family` and `log_mel`
        family = "whisper"
        log_mel = WhisperEncoderAdapter.log_mel
        max_frames, mode = 1500, "unpadded"
        feature_extractor = WhisperFeatureExtractor(feature_size=80)

    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32) for _ in range(8)]
    out = {"variant": variant, "runtime": runtime, "load_s": round(load_s, 3)}
    with torch.inference_mode():
        for B in (1, 8):
            x, n = graph_inputs(_Mel(), clips[:B])
            run(x, n)  # warm-up
            ts = []
            for _ in range(repeats):
                t = time.perf_counter()
                run(x, n)
                ts.append((time.perf_counter() - t) * 1000)
            out[f"batch{B}_ms"] = round(statistics.median(ts), 2)
    out["peak_mib_above_imports"] = round(benchlib.proc_status_mib("VmHWM") - base, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="whisper-base")
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "stackslim" / "bench-deploy"))
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "RUNTIME"))
    ap.add_argument("--json")
    args = ap.parse_args()
    work = Path(args.work) / args.model.replace(":", "-")
    if args.child:
        res = child(*args.child, work, args.seconds, args.repeats)
        Path(args.json).write_text(json.dumps(res))
        return
    mach = benchlib.machine()
    t = time.perf_counter()
    build(args.model, work)
    print(f"built in {time.perf_counter() - t:.0f} s", flush=True)
    rows = []
    for runtime in RUNTIMES:  # interleaved: every variant once per runtime
        for v in VARIANTS:
            r = benchlib.run_child(Path(__file__), [v, runtime, "--model", args.model, "--work",
                                                    args.work, "--seconds", str(args.seconds),
                                                    "--repeats", str(args.repeats)], threads=1)
            exp = json.loads((work / f"{v}-onnx" / "export.json").read_text())
            f = "model.int8.onnx" if runtime.endswith("int8") else "model.onnx"
            r["onnx_mb"] = round(exp["files"][f] / 1e6, 2) if runtime != "pytorch" else None
            r["parity_max_abs"] = (exp["parity"]["max_abs_diff"] if runtime == "onnxruntime" else
                                   exp["int8"]["parity"]["max_abs_diff"] if runtime.endswith("int8") else None)
            r["int8_rel_error"] = exp["int8"]["parity"]["rel_error"] if runtime.endswith("int8") else None
            rows.append(r)
            print(r, flush=True)
    doc = {"command": "python bench/deploy.py " + " ".join(sys.argv[1:]), "machine": mach,
           "inputs": {"model": args.model, "clip_seconds": args.seconds, "repeats": args.repeats,
                      "threads": 1, "pruned": "5th layer deleted", "shared": "K=3, rank 16, svd init",
                      "units": {"load_s": "s", "batchB_ms": "ms per call, median",
                                "peak_mib_above_imports": "MiB", "onnx_mb": "MB"}},
           "rows": rows}
    md = ["# Deployment: PyTorch vs onnxruntime (float, int8)", "",
          f"`{doc['command']}`: {args.model}, {args.seconds:g} s clips, 1 thread, median of "
          f"{args.repeats}; a fresh process per row. PyTorch: teacher and pruned "
          f"memory-map the whole HF model (the decoder is never read), the shared folder holds the "
          f"encoder only; ONNX files hold the encoder.", "",
          "| variant | runtime | load s | batch 1 ms | batch 8 ms | peak MiB above imports | file MB | max abs diff vs PyTorch | int8 rel. error |",
          "|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v, p="{:.2f}": "–" if v is None else p.format(v)  # noqa: E731
    for r in rows:
        md.append(f"| {r['variant']} | {r['runtime']} | {r['load_s']:.2f} | {r['batch1_ms']:.1f} | "
                  f"{r['batch8_ms']:.1f} | {r['peak_mib_above_imports']:.0f} | {fmt(r['onnx_mb'])} | "
                  f"{fmt(r['parity_max_abs'], '{:.1e}')} | {fmt(r['int8_rel_error'], '{:.3f}')} |")
    md.append(f"\nMachine: {mach['cpu']}, load {mach['load_avg_1m_at_start']} at start; {mach['note']}.\n")
    for p in benchlib.write_results("deploy", doc, "\n".join(md)):
        print("wrote", p)


if __name__ == "__main__":
    main()
