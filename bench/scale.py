"""Benchmark: time and peak memory of `stackslim analyze` on 1×, 4× and 16× the data.

    python bench/scale.py                                   # whisper-tiny.en, synth-commands, 16/64/256 clips
    python bench/scale.py --model random:wav2vec2 --base 8  # quick check

Every point is one fresh process (`benchlib.run_child`), so its peak resident memory (VmHWM)
is its own. Modes, each on the same seeded clips (`--max-clips N`):

- `forward`: the forward passes alone, exactly as analyze runs them (model and data set
  loaded, the clips encoded `encode_batch` at a time, every hidden state computed), no metric.
- `exact`: `stackslim analyze` defaults: cosine, linear CKA and mutual kNN over all clips,
  pooled view, Gram space (every clip's pooled states go to a temporary file, S·D float64 per
  clip, read back in blocks).
- `feature`: `--metrics cosine,cka --cka-space feature`: exact CKA from streamed D×D sums,
  nothing per clip kept.
- `minibatch`: `--estimator minibatch` (the paper's batch-128 setting), all three metrics.

The analyze modes include everything analyze does besides encoding (blocks, outlier check,
heatmaps, resume checkpoints, JSON); "metrics cost" = (analyze time − forward time) / forward
time at the same size. Writes bench/results/scale.json and bench/results/scale.md.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import benchlib  # noqa: E402

MODES = {
    "forward": ("forward passes only (no metric)", {}),
    "exact": ("analyze defaults: cosine, CKA, mkNN, exact over all clips (Gram space)", {}),
    "feature": ("analyze --metrics cosine,cka --cka-space feature (exact, streamed D×D sums)",
                {"metrics": ("cosine", "cka"), "cka_space": "feature"}),
    "minibatch": ("analyze --estimator minibatch (paper's batch-128 estimator, 3 metrics)",
                  {"estimator": "minibatch"}),
}
FLAGS = {"forward": "", "exact": "", "feature": "--metrics cosine,cka --cka-space feature",
         "minibatch": "--estimator minibatch"}


def child(mode: str, model: str, data: str, clips: int, threads: int) -> dict:
    """One measurement in this (fresh) process."""
    import torch

    benchlib.set_threads(threads)
    from stackslim.similarity import AnalyzeConfig, run, select_clips

    rss0 = benchlib.proc_status_mib("VmRSS")  # after importing torch and stackslim
    cfg = AnalyzeConfig(max_clips=clips, device="cpu", **MODES[mode][1])
    t0, c0 = time.perf_counter(), benchlib.cpu_seconds()
    if mode == "forward":
        from stackslim.data import load_dataset
        from stackslim.models import load_encoder

        enc = load_encoder(model)
        ds = load_dataset(data)
        idx = select_clips(ds, cfg)
        for s in range(0, len(idx), cfg.encode_batch):
            enc.hidden_states([ds.load(i) for i in idx[s : s + cfg.encode_batch]])
        n = len(idx)
    else:
        with tempfile.TemporaryDirectory() as out:
            n = run(model, data, out, cfg, progress=False).clips
    return {"mode": mode, "clips": n, "seconds": time.perf_counter() - t0,
            "cpu_seconds": benchlib.cpu_seconds() - c0,
            "peak_rss_mib": benchlib.proc_status_mib("VmHWM"), "rss_after_imports_mib": rss0}


def markdown(doc: dict) -> str:
    inp = doc["inputs"]
    lines = [f"# scale: `stackslim analyze` on 1×, 4×, 16× the data\n",
             f"`{doc['command']}`  ",
             f"Model {inp['model']} on {inp['data']}, {', '.join(map(str, inp['clips']))} clips "
             f"(seeded subsets), torch threads {inp['threads']}, one fresh process per row. Machine: "
             f"{doc['machine']['cpu']}, {doc['machine']['cpus']} cores, load average "
             f"{doc['machine']['load_avg_1m_at_start']} at start (shared with other jobs: compare "
             f"within this table).\n",
             "| mode | clips | wall (s) | CPU (s) | CPU ms/clip | peak RSS (MiB) | metrics cost vs forward (CPU) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in doc["rows"]:
        cost = "–" if r["metrics_cost"] is None else f"{100 * r['metrics_cost']:+.0f}%"
        lines.append(f"| {r['mode']} | {r['clips']} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
                     f"{1000 * r['cpu_seconds'] / r['clips']:.0f} | {r['peak_rss_mib']:.0f} | {cost} |")
    lines += ["", "Per mode: CPU time = fixed cost (imports, model and data set loading, plots) + a cost "
              "per clip; linear time means the same marginal cost per added clip between each pair "
              "of sizes; flat memory means no growth of the peak:", "",
              "| mode | marginal CPU ms per added clip | CPU time ratio largest/smallest | "
              "peak RSS growth smallest→largest (MiB) |", "|---|---|---:|---:|"]
    for m, s in doc["summary"].items():
        marg = " → ".join(f"{v:.0f}" for v in s["marginal_cpu_ms_per_clip"])
        lines.append(f"| {m} | {marg} | {s['cpu_ratio']:.1f}× | {s['peak_rss_growth_mib']:+.0f} |")
    lines += ["", "Modes:", ""] + [f"- `{m}`: {d}" for m, d in inp["modes"].items()]
    lines += ["", "Rerun: `" + doc["command"] + "`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="whisper-tiny.en")
    p.add_argument("--data", default="synth-commands")
    p.add_argument("--base", type=int, default=16, help="clips at 1×")
    p.add_argument("--factors", default="1,4,16")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the cores here are shared)")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--name", default="scale", help="bench/results/NAME.json and NAME.md")
    p.add_argument("--child", nargs=3, metavar=("MODE", "CLIPS", "_"), help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        import json

        res = child(a.child[0], a.model, a.data, int(a.child[1]), a.threads)
        Path(a.json).write_text(json.dumps(res))
        return 0
    sizes = [a.base * int(f) for f in a.factors.split(",")]
    modes = a.modes.split(",")
    command = "python bench/scale.py" + "".join(
        f" --{k} {v}" for k, v in (("model", a.model), ("data", a.data), ("base", a.base),
                                   ("factors", a.factors), ("threads", a.threads), ("modes", a.modes),
                                   ("name", a.name))
        if str(v) != str(p.get_default(k)))
    doc = {"command": command, "machine": benchlib.machine(),
           "inputs": {"model": a.model, "data": a.data, "clips": sizes, "threads": a.threads,
                      "modes": {m: MODES[m][0] for m in modes}},
           "units": {"seconds": "wall s of the work (model load included)", "cpu_seconds":
                     "user+sys s of the process during the work", "peak_rss_mib": "VmHWM, MiB",
                     "metrics_cost": "(CPU s of the mode − CPU s of forward) / CPU s of forward"},
           "rows": []}
    for n in sizes:  # interleaved: every mode at one size before the next size
        fwd = None
        for m in modes:
            r = benchlib.run_child(Path(__file__), [m, str(n), "_", "--model", a.model, "--data", a.data,
                                                    "--threads", str(a.threads)], a.threads)
            fwd = r if m == "forward" else fwd
            r["metrics_cost"] = None if fwd is None or m == "forward" else \
                (r["cpu_seconds"] - fwd["cpu_seconds"]) / fwd["cpu_seconds"]
            doc["rows"].append(r)
            print(f"{m:>9} {n:>5} clips: {r['seconds']:.1f} s wall, {r['cpu_seconds']:.1f} s CPU, "
                  f"peak {r['peak_rss_mib']:.0f} MiB", flush=True)
    doc["summary"] = {}
    for m in modes:
        rs = [r for r in doc["rows"] if r["mode"] == m]
        doc["summary"][m] = {"cpu_ratio": rs[-1]["cpu_seconds"] / rs[0]["cpu_seconds"],
                             "marginal_cpu_ms_per_clip": [
                                 1000 * (b["cpu_seconds"] - a["cpu_seconds"]) / (b["clips"] - a["clips"])
                                 for a, b in zip(rs, rs[1:])],
                             "wall_ratio": rs[-1]["seconds"] / rs[0]["seconds"],
                             "peak_rss_growth_mib": rs[-1]["peak_rss_mib"] - rs[0]["peak_rss_mib"]}
    js, md = benchlib.write_results(a.name, doc, markdown(doc))
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
