"""Benchmark: the all-pairs similarity engine versus the per-pair loop of common CKA packages.

    python bench/similarity.py                    # 13 states, D=768, n=2048 (a few minutes on 2 cores)
    python bench/similarity.py --n 256 --dim 64   # quick check

Inputs: S hidden states (n, D) float32, random Gaussian with correlated structure (a residual
stream h_i = h_{i-1} + 0.5 tanh(h_{i-1} W) + noise, W switching after 2/3 of the stack, so the
matrices have two blocks). Every variant computes cosine, linear CKA (biased) and mutual kNN
(k=8) over all pairs of states on the pooled view, in its own subprocess so that its peak
memory (ru_maxrss) is its own. Variants:

- `reference`: `pairwise_reference`, for each pair i <= j the metric from scratch (two n x n
  Grams per CKA pair, two kNN searches per mknn pair).
- `engine-gram`: `SimilarityEngine(estimator="dataset")`, fed 64 clips per update: every
  state's Gram once, CKA and kNN from one chunked pass over stored samples.
- `engine-feature`: the same with cka_space="feature": streamed D x D cross-covariances
  (memory independent of n; the frames-view default). mknn still uses stored samples.
- `engine-minibatch`: the paper's setting (batches of 128); a different estimator, so it is
  timed but not compared for equality.

Writes bench/results/similarity.json and bench/results/similarity.md.
`time_metrics_on_states` is the hook for timing the metrics on real model states.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import benchlib  # noqa: E402  (bench/benchlib.py)
from stackslim.similarity import METRICS, SimilarityEngine, pairwise_reference  # noqa: E402

RESULTS = ROOT / "bench" / "results"
VARIANTS = {
    "reference": "per-pair loop (pairwise_reference): Grams / kNN rebuilt for every pair i<=j",
    "engine-gram": "SimilarityEngine dataset, Gram space: each state's Gram once, one chunked pass",
    "engine-feature": "SimilarityEngine dataset, feature space: streamed DxD cross-covariances (i<=j)",
    "engine-minibatch": "SimilarityEngine minibatch B=128 (paper's estimator; not equal by design)",
}
K = 8


class _States:
    """Minimal HiddenStates stand-in (states, lengths): avoids importing transformers here."""

    def __init__(self, states: list[torch.Tensor], lengths: torch.Tensor):
        self.states, self.lengths, self.final_norm = states, lengths, None


def make_states(n: int, S: int, D: int, seed: int = 0) -> list[torch.Tensor]:
    """S float32 tensors (n, D) with two blocks of correlated states."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, D, generator=g)
    Wa, Wb = (torch.randn(D, D, generator=g) / D ** 0.5 for _ in range(2))
    out = [h]
    for i in range(1, S):
        W = Wa if i <= (2 * (S - 1)) // 3 else Wb
        h = h + 0.5 * torch.tanh(h @ W) + 0.3 * torch.randn(n, D, generator=g)
        out.append(h)
    return out


def as_batches(states: Sequence[torch.Tensor], clips_per_batch: int = 64) -> list[_States]:
    """Clips as (B, T=1, D) batches: the pooled view then equals the rows."""
    n = states[0].shape[0]
    return [_States([s[a:a + clips_per_batch, None, :] for s in states],
                    torch.ones(min(clips_per_batch, n - a), dtype=torch.long))
            for a in range(0, n, clips_per_batch)]


def time_metrics_on_states(batches: Sequence[Any], metrics: Sequence[str] = METRICS, view: str = "pooled",
                           estimator: str = "dataset", **engine_kw) -> dict[str, Any]:
    """Time the similarity engine on a list of HiddenStates (e.g. from real forward passes).

    Args:
        batches: HiddenStates (or objects with .states and .lengths), all with the same L.
        metrics, view, estimator, engine_kw: passed to SimilarityEngine.

    Returns:
        {"update_s": seconds in update() over all batches, "result_s": seconds in result(),
         "total_s", "per_batch_ms", "samples", "result": the SimilarityResult}.
    """
    if not batches:
        raise ValueError("no batches to time")
    eng = SimilarityEngine(len(batches[0].states), metrics=metrics, view=view, estimator=estimator, **engine_kw)
    t0 = time.perf_counter()
    for hs in batches:
        eng.update(hs)
    t1 = time.perf_counter()
    res = eng.result()
    t2 = time.perf_counter()
    return {"update_s": t1 - t0, "result_s": t2 - t1, "total_s": t2 - t0,
            "per_batch_ms": 1e3 * (t1 - t0) / len(batches), "samples": res.n_samples, "result": res}


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_variant(name: str, n: int, S: int, D: int, seed: int, out: Path) -> dict[str, Any]:
    """Run one variant in this process; save its matrices to `out` (npz); return its numbers."""
    X = make_states(n, S, D, seed)
    batches = as_batches(X) if name != "reference" else None
    rss0 = _maxrss_mb()
    info: dict[str, Any] = {}
    c0 = time.process_time()
    t0 = time.perf_counter()
    if name == "reference":
        mats = {}
        for m in METRICS:
            tm = time.perf_counter()
            mats[m] = pairwise_reference(X, m, k=K)
            info[f"{m}_s"] = round(time.perf_counter() - tm, 3)
    else:
        kw = {"engine-gram": dict(cka_space="gram"), "engine-feature": dict(cka_space="feature"),
              "engine-minibatch": dict(estimator="minibatch", batch_size=128)}[name]
        t = time_metrics_on_states(batches, METRICS, "pooled", k=K, **kw)
        mats = t["result"].matrices
        info = {"update_s": round(t["update_s"], 3), "result_s": round(t["result_s"], 3)}
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    np.savez(out, **mats)
    return {"time_s": round(seconds, 3), "cpu_s": round(cpu, 3), "peak_rss_mb": round(_maxrss_mb(), 1),
            "extra_peak_rss_mb": round(_maxrss_mb() - rss0, 1), **info}


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "ram_gib": round(mem, 1), "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "load_avg_1m_at_start": round(os.getloadavg()[0], 2)}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def markdown(doc: dict[str, Any]) -> str:
    i = doc["inputs"]
    lines = [f"# similarity: all-pairs engine vs per-pair loop", "",
             f"`{doc['command']}`  ", f"{i['states']} hidden states, D={i['dim']}, n={i['n']} samples "
             f"(pooled view), metrics {', '.join(i['metrics'])} (k={i['k']}), float64. "
             f"Machine: {doc['machine']['cpu']}, {doc['machine']['cores']} cores, torch threads "
             f"{doc['machine']['torch_threads']}, load average at start {doc['machine']['load_avg_1m_at_start']}.", "",
             "| variant | wall time (s) | CPU time (s) | speed-up vs reference (wall / CPU) | peak RSS (MB) "
             "| extra peak RSS over inputs (MB) | max abs diff vs reference (cosine / cka / mknn) | equal to 1e-6 |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for r in doc["rows"]:
        d = r.get("max_abs_diff_vs_reference")
        diff = " / ".join(f"{d[m]:.1e}" for m in ("cosine", "cka", "mknn")) if d else "n/a (other estimator)"
        eq = {True: "yes", False: "NO", None: "n/a"}[r.get("equal_1e-6")]
        lines.append(f"| {r['variant']} | {r['time_s']:.2f} | {r['cpu_s']:.2f} | {r['speedup_vs_reference']:.1f}x / "
                     f"{r['cpu_speedup_vs_reference']:.1f}x | "
                     f"{r['peak_rss_mb']:.0f} | {r['extra_peak_rss_mb']:.0f} | {diff} | {eq} |")
    lines += ["", "CPU time is the steadier number on a shared machine (wall time includes waiting for "
              "other processes).", "", "Variants:", ""] + [f"- `{r['variant']}`: {r['description']}" for r in doc["rows"]]
    ref = next((r for r in doc["rows"] if r["variant"] == "reference"), None)
    if ref:
        lines += ["", "Reference time per metric (s): " + ", ".join(
            f"{m} {ref[f'{m}_s']:.1f}" for m in ("cosine", "cka", "mknn"))]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2048, help="samples (clips)")
    p.add_argument("--states", type=int, default=13, help="hidden states L+1")
    p.add_argument("--dim", type=int, default=768, help="features D")
    p.add_argument("--seed", type=int, default=0)
    # One thread by default: on shared (loaded) machines multi-threaded BLAS timings swing by
    # 10x or more; the engine/reference ratio is what this bench reports.
    p.add_argument("--threads", type=int, default=1, help="torch threads per variant")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    p.add_argument("--out", default=str(RESULTS), help="folder for similarity.json / .md")
    p.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant in a subprocess
    p.add_argument("--npz", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    benchlib.set_threads(a.threads)
    if a.variant:
        print(json.dumps(run_variant(a.variant, a.n, a.states, a.dim, a.seed, Path(a.npz))))
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [v for v in a.variants.split(",") if v]
    if "reference" not in names:
        names.insert(0, "reference")
    rows, mats = [], {}
    for name in names:
        npz = out / f".similarity_{name}.npz"
        cmd = [sys.executable, __file__, "--variant", name, "--npz", str(npz), "--n", str(a.n), "--states",
               str(a.states), "--dim", str(a.dim), "--seed", str(a.seed), "--threads", str(a.threads)]
        print(f"[bench] {name} ...", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        row = {"variant": name, "description": VARIANTS[name], **json.loads(proc.stdout.strip().splitlines()[-1])}
        with np.load(npz) as f:
            mats[name] = {m: f[m] for m in f.files}
        npz.unlink()
        rows.append(row)
        print(f"[bench] {name}: {row['time_s']:.2f} s, peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
    ref = next(r for r in rows if r["variant"] == "reference")
    for r in rows:
        r["speedup_vs_reference"] = round(ref["time_s"] / r["time_s"], 2)
        r["cpu_speedup_vs_reference"] = round(ref["cpu_s"] / r["cpu_s"], 2)
        if r["variant"] in ("reference", "engine-minibatch"):
            r["max_abs_diff_vs_reference"] = ({m: 0.0 for m in METRICS} if r["variant"] == "reference" else None)
            r["equal_1e-6"] = True if r["variant"] == "reference" else None
            continue
        d = {m: float(np.abs(mats[r["variant"]][m] - mats["reference"][m]).max()) for m in METRICS}
        r["max_abs_diff_vs_reference"] = d
        r["equal_1e-6"] = bool(max(d.values()) <= 1e-6)
    doc = {"command": " ".join(["python bench/similarity.py", *(argv if argv is not None else sys.argv[1:])]),
           "machine": machine(),
           "inputs": {"states": a.states, "dim": a.dim, "n": a.n, "seed": a.seed, "view": "pooled",
                      "metrics": list(METRICS), "k": K, "dtype_inputs": "float32", "dtype_compute": "float64",
                      "data": "Gaussian residual stream with two regimes (make_states)"},
           "units": {"time_s": "seconds (wall, compute only, inputs excluded)",
                     "cpu_s": "seconds of CPU time of the variant's process (user + sys) during compute", "peak_rss_mb": "MiB (ru_maxrss)",
                     "extra_peak_rss_mb": "MiB above the RSS after building the inputs"},
           "rows": rows}
    _write_atomic(out / "similarity.json", json.dumps(doc, indent=1) + "\n")
    _write_atomic(out / "similarity.md", markdown(doc))
    print(markdown(doc))
    return 0 if all(r["equal_1e-6"] in (True, None) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
