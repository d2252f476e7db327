"""Re-time the saved mimic models of bench/results/mimic.json against the teacher, interleaved.

    python bench/mimic_retime.py                          # every row whose saved model exists
    python bench/mimic_retime.py --rows distilled --repeats 15 --threads 1

Why: bench/mimic.py times each model right after the teacher, once, inside a long run; on this
shared 2-core machine a row trained while other jobs ran gets a speed-up that measures the load
(the same architecture read 3.3x in one run and 6.3-7.6x in others). This script loads each saved
artefact (what `MimicModel.load` gives a user) and times it round-robin with the teacher on the
same clips (`stackslim.evaluate.interleaved_latency`), so both see the same load, and writes
the new latencies into the row (`retimed`: when, how, by which command), keeping the old ones
under `first_timing`. Accuracy, sizes and training are not touched.

    python bench/mimic_retime.py --rows distilled --untrained --repeats 15 --threads 1

`--untrained`: rows whose saved model is gone (the models live in ~/.cache, not in the repo)
are timed on a model of the same architecture (kind, layers, z) with fresh weights, saved and
loaded through `MimicModel.save/load` like the trained one: a forward pass costs the same
whatever the weights hold (float32 either way). The row's `retimed.model` says which was timed.

The teacher is whisper-base + a head of the same shape as the bench's (d → 256 → classes); the
head's weights do not change its cost, so a fresh head stands in for the fitted one (the bench
does not save it). Clips: the first --batch clips of the word task's test split (seed 0), the
bench's own latency clips; Whisper log-mel by its torch implementation for every model.
"""
from __future__ import annotations

import argparse
import json
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
from mimic_table import markdown  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", default="", help="comma-separated substrings of row names (default: all saved)")
    p.add_argument("--repeats", type=int, default=15, help="interleaved rounds (median)")
    p.add_argument("--batch", type=int, default=8, help="clips of the batched timing")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--untrained", action="store_true",
                   help="time rows without a saved model on the same architecture, fresh weights")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    benchlib.set_threads(args.threads)
    out = Path(args.out)
    doc = json.loads((out / "mimic.json").read_text())
    inp = doc["inputs"]
    wanted = [s for s in args.rows.split(",") if s]
    def saved(r: dict) -> bool:
        return bool(r.get("saved_to")) and Path(r["saved_to"]).is_dir()

    rows = [r for r in doc["rows"] if (saved(r) or (args.untrained and r.get("kind")))
            and (not wanted or any(s in r["name"] for s in wanted))]
    if not rows:
        print("no saved mimic model matches --rows", file=sys.stderr)
        return 2

    enc = load_encoder(inp["model"])
    use_torch_mel(enc)
    task = prepare_task(inp["data"], inp["task"], seed=0)
    waves = [task.dataset.load(i) for i in task.splits["test"][: args.batch]]
    head = ClassifierHead(enc.hidden_size, task.num_classes, 256).eval()
    fns = {"teacher": teacher_logits(enc, head)}
    timed = {}  # row index -> what was timed
    tmp = tempfile.TemporaryDirectory()
    for i, r in enumerate(rows):
        folder = r["saved_to"] if saved(r) else Path(tmp.name) / f"row{i}"
        if not saved(r):  # same architecture, fresh weights, through the same save/load
            MimicModel.from_teacher(enc, head, r["kind"], r["layers"], r["hidden"],
                                    class_names=task.names, seed=0).save(folder)
        timed[i] = ("the saved model" if saved(r) else
                    "an untrained model of the same architecture (saved and loaded)")
        model = MimicModel.load(folder).eval()
        use_torch_mel(model.front)
        if model.num_params() != r["params"]:
            raise SystemExit(f"{r['name']}: {model.num_params()} parameters, the row says {r['params']}")
        fns[f"row{i}"] = model
    command = " ".join(["python bench/mimic_retime.py", *(sys.argv[1:] if argv is None else argv)])
    t0 = time.monotonic()
    lat = interleaved_latency(fns, waves, repeats=args.repeats)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    ref = lat["teacher"]
    for i, r in enumerate(rows):
        mine = lat[f"row{i}"]
        r.setdefault("first_timing", {k: r[k] for k in (
            "teacher_ms_per_clip_batch1_paired", "teacher_ms_per_clip_batched_paired",
            "ms_per_clip_batch1", "ms_per_clip_batched", "speedup_batch1", "speedup_batched")})
        r.update({"teacher_ms_per_clip_batch1_paired": round(ref["batch1_ms"], 3),
                  "teacher_ms_per_clip_batched_paired": round(ref["batched_ms"], 3),
                  "ms_per_clip_batch1": round(mine["batch1_ms"], 3),
                  "ms_per_clip_batched": round(mine["batched_ms"], 3),
                  "speedup_batch1": round(ref["batch1_ms"] / mine["batch1_ms"], 2),
                  "speedup_batched": round(ref["batched_ms"] / mine["batched_ms"], 2)})
        r["goal"]["pipeline_5x_faster"] = r["speedup_batch1"] >= 5.0
        r["retimed"] = {"command": command, "when": when, "load_average_1min": load,
                        "model": timed[i],
                        "repeats": args.repeats, "batch": len(waves), "threads": args.threads,
                        "how": "interleaved with the teacher, each round in a seeded random order (same clips, one process)"}
        print(f"{r['name']}: {mine['batch1_ms']:.2f} ms/clip at batch 1, teacher {ref['batch1_ms']:.2f} "
              f"-> {r['speedup_batch1']:.1f}x; batched {r['speedup_batched']:.1f}x", flush=True)
    print(f"timed in {time.monotonic() - t0:.0f} s (load average {load}, {provenance()['torch_threads']} threads)")
    write_json(out / "mimic.json", doc)
    write_atomic(out / "mimic.md", markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
