"""Does the order of interleaved timing bias a latency? Three identical mimic models timed beside
whisper-base, in a fixed order and in shuffled orders (`stackslim.evaluate.interleaved_latency`).

    python bench/latency_order.py --repeats 60 --threads 1

Inputs: whisper-base + a fresh head (d → 256 → classes), three mimic models (transformer × 1,
z = 512, the same seed: identical weights) saved and loaded, the first 8 test clips of
synth-commands' word task (seed 0), Whisper log-mel by its torch implementation. The same
models are timed twice in one process: `shuffle=False` (teacher, a, b, c every round: a always
follows the teacher) and `shuffle=True` (a new seeded order each round). Identical models should
read the same; the spread between them is the bias of the order. Writes
bench/results/latency_order.json and .md.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from stackslim.heads import ClassifierHead, prepare_task
from stackslim.mimic import MimicModel
from stackslim.mimic.evaluate import teacher_logits
from stackslim.models import load_encoder
from stackslim.results import provenance, write_atomic, write_json
from stackslim.evaluate.latency import interleaved_latency

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402  (bench/benchlib.py)
from mimic import use_torch_mel  # noqa: E402  (bench/mimic.py)

OUT = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=60)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    benchlib.set_threads(args.threads)
    enc = load_encoder("whisper-base")
    use_torch_mel(enc)
    task = prepare_task("synth-commands", "word", seed=0)
    waves = [task.dataset.load(i) for i in task.splits["test"][:8]]
    head = ClassifierHead(enc.hidden_size, task.num_classes, 256).eval()
    fns = {"teacher": teacher_logits(enc, head)}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("a", "b", "c"):
            MimicModel.from_teacher(enc, head, "transformer", 1, 512, seed=0).save(Path(tmp) / name)
            m = MimicModel.load(Path(tmp) / name).eval()
            use_torch_mel(m.front)
            fns[name] = m
        res = {mode: interleaved_latency(fns, waves, repeats=args.repeats, shuffle=mode == "shuffled")
               for mode in ("fixed", "shuffled")}
    load = Path("/proc/loadavg").read_text().split()[0]
    doc = {"command": "python bench/latency_order.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average_1min": load,
           "repeats": args.repeats, "clips": len(waves), "results": res, "machine": provenance()}
    lines = [f"# Order bias of interleaved timing\n\nCommand: `{doc['command']}` at {doc['when']} "
             f"(load average {load}, {args.threads} thread). ms per clip, median of {args.repeats} "
             "rounds; a, b, c are identical models.\n",
             "| order | teacher b1 | a b1 | b b1 | c b1 | a / c b1 | teacher b8 | a b8 | b b8 | c b8 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for mode, r in res.items():
        lines.append(f"| {mode} | " + " | ".join(f"{r[k]['batch1_ms']:.2f}" for k in fns)
                     + f" | {r['a']['batch1_ms'] / r['c']['batch1_ms']:.2f} | "
                     + " | ".join(f"{r[k]['batched_ms']:.2f}" for k in fns) + " |")
    write_json(OUT / "latency_order.json", doc)
    write_atomic(OUT / "latency_order.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
