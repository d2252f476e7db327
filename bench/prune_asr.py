"""Benchmark: layer pruning scored by transcription (`stackslim prune --task asr`) on the real
bundled Whisper models, synth-sentences.

    .venv/bin/python bench/prune_asr.py                      # whisper-tiny.en and whisper-base
    .venv/bin/python bench/prune_asr.py --models whisper-base --asr-clips 24 --eval-clips 120
    .venv/bin/python bench/prune_asr.py --render-only        # rewrite prune_asr.md from the JSON
    .venv/bin/python bench/prune_asr.py --models whisper-base --merge   # one model again, keep the other

For each model it calls `stackslim.prune.run` (task asr) with the given strategies: orders scored
by the teacher-agreement WER of `--asr-clips` pool clips (never eval), the threshold agreement
WER <= `--wer-margin` points, and the eval clips (split=eval, `--eval-clips` evenly spread) read
against their references for the chosen strategy at k = 0 .. k*+1 deleted layers, each WER with
its bootstrap 95% interval. Rows: one per (model, k) of that eval curve, plus the per-strategy
deletable counts and the CPU minutes of the whole run (process CPU time, all threads).

Writes bench/results/prune_asr.json and .md, and keeps each run's folder (pruning.json,
pruning.png, the pruned model) under bench/results/prune_asr-<model>/ without the model weights.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time

import benchlib  # (bench/benchlib.py)

NAME = "prune_asr"
STRATEGIES = "forward,backward,bi,knn-bi,greedy"


def run_model(model: str, args: argparse.Namespace) -> dict:
    from stackslim.prune import PruneConfig, run

    cfg = PruneConfig(task="asr", strategies=tuple(args.strategies.split(",")), wer_margin=args.wer_margin,
                      asr_clips=args.asr_clips, eval_clips=args.eval_clips)
    out = benchlib.RESULTS / f"{NAME}-{model}"
    c0, t0 = benchlib.cpu_seconds(), time.monotonic()
    res = run(model, "synth-sentences", out, cfg, progress=False, force=True).to_json()
    cpu, wall = benchlib.cpu_seconds() - c0, time.monotonic() - t0
    shutil.rmtree(out / "model", ignore_errors=True)  # weights stay out of the repository
    ev, best = res["eval_curve"], res["best"]
    rows = []
    for k, wer, (lo, hi), layers in zip(ev["deleted"], ev["wer"], ev["interval"], ev["deleted_layers"]):
        curve = res["strategies"][ev["strategy"]]["curve"]["agreement_wer"]
        rows.append({"model": model, "strategy": ev["strategy"], "deleted": k, "deleted_layers": layers,
                     "num_layers": res["num_layers"] - k, "agreement_wer": curve[k], "eval_wer": wer,
                     "eval_interval": [lo, hi], "teacher_eval_wer": res["teacher"]["eval_wer"],
                     "within_margin_eval": wer <= res["teacher"]["eval_wer"] + args.wer_margin / 100 + 1e-12,
                     "chosen": k == len(best["deleted_layers"])})
    return {"model": model, "rows": rows, "deletable": res["summary"], "best": best,
            "curves": {s: v["curve"]["agreement_wer"] for s, v in res["strategies"].items()},
            "orders": {s: v["order"] for s, v in res["strategies"].items()},
            "cpu_minutes": round(cpu / 60, 2), "wall_minutes": round(wall / 60, 2),
            "scored_clips": res["task"]["scored_clips"], "eval_clips": res["task"]["eval_clips"]}


def markdown(doc: dict) -> str:
    inp = doc["inputs"]
    lines = ["# Pruning scored by transcription (whisper, synth-sentences)", "",
             f"`stackslim prune MODEL synth-sentences --task asr --wer-margin {inp['wer_margin']:g} "
             f"--asr-clips {inp['asr_clips']} --eval-clips {inp['eval_clips']} --strategies {inp['strategies']}`. "
             "Orders are scored by the teacher-agreement WER of pool clips (the pruned stack's transcripts "
             "against the teacher's, frozen original decoder, clips padded to 30 s); the model kept is the "
             "one with the most layers deleted at agreement WER <= the margin. Eval: split=eval clips "
             "against their references, bootstrap 95% interval, for the chosen strategy's order "
             "(k = 0 is the teacher; the last row is one deletion past the chosen one).", "",
             "| model | strategy | deleted | layers deleted | agreement WER (pool) | eval WER [95% CI] | "
             "teacher eval WER | within teacher + margin | chosen |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in doc["models"]:
        for r in m["rows"]:
            lo, hi = r["eval_interval"]
            lines.append(f"| {r['model']} | {r['strategy']} | {r['deleted']} | {r['deleted_layers'] or '-'} | "
                         f"{100 * r['agreement_wer']:.1f}% | {100 * r['eval_wer']:.1f}% [{100 * lo:.1f}, "
                         f"{100 * hi:.1f}] | {100 * r['teacher_eval_wer']:.1f}% | "
                         f"{'yes' if r['within_margin_eval'] else 'no'} | {'**yes**' if r['chosen'] else ''} |")
    lines += ["", "| model | layers deletable within the margin, per strategy | agreement WER curves (pool, %) "
              "| CPU minutes | scored / eval clips |", "|---|---|---|---|---|"]
    for m in doc["models"]:
        curves = "; ".join(f"{s}: " + " ".join(f"{100 * w:.0f}" for w in c) for s, c in m["curves"].items())
        lines.append(f"| {m['model']} | {', '.join(f'{s} {k}' for s, k in m['deletable'].items())} | {curves} | "
                     f"{m['cpu_minutes']:.1f} | {m['scored_clips']} / {m['eval_clips']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="whisper-tiny.en,whisper-base")
    p.add_argument("--strategies", default=STRATEGIES)
    p.add_argument("--wer-margin", type=float, default=1.0)
    p.add_argument("--asr-clips", type=int, default=24)
    p.add_argument("--eval-clips", type=int, default=120)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--merge", action="store_true", help="keep the other models' results of prune_asr.json")
    args = p.parse_args(argv)
    path = benchlib.RESULTS / f"{NAME}.json"
    if args.render_only:
        benchlib.rewrite_table(NAME, markdown)
        return 0
    benchlib.set_threads(args.threads)
    doc = {"command": "bench/prune_asr.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "machine": benchlib.machine(),
           "inputs": {"data": "synth-sentences", "strategies": args.strategies, "wer_margin": args.wer_margin,
                      "asr_clips": args.asr_clips, "eval_clips": args.eval_clips, "threads": args.threads},
           "models": [], "rows": []}
    for model in args.models.split(","):
        m = run_model(model, args)
        doc["models"].append(m)
        if args.merge and path.exists():  # read at write time: another run may have added a model
            mine = {x["model"] for x in doc["models"]}
            doc["models"] = [x for x in json.loads(path.read_text())["models"] if x["model"] not in mine] \
                + doc["models"]
        doc["rows"] = [r for x in doc["models"] for r in x["rows"]]
        benchlib.write_results(NAME, doc, markdown(doc))  # after every model: a cut run keeps it
        print(f"{model}: deletable {m['deletable']}, {m['cpu_minutes']:.1f} CPU min", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
