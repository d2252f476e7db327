"""Benchmark: layer pruning without retraining on the real whisper-base (synth-commands).

    .venv/bin/python bench/prune.py                  # ≈ 25 min on 2 CPU cores (1 torch thread)
    .venv/bin/python bench/prune.py --teachers frozen,finetuned                  # ≈ 15 min
    .venv/bin/python bench/prune.py --tasks word --teachers frozen --clips 300   # a quick look
    .venv/bin/python bench/prune.py --render-only    # rewrite prune.md from prune.json
    .venv/bin/python bench/prune.py --tasks word --teachers finetuned-layerdrop --merge
                                                     # rerun one setting, keep the others' rows

For each task (word: splits disjoint by speaker; speaker: disjoint by word) and each teacher
(frozen encoder + trained head; the encoder stack fine-tuned with the head, the paper's setting)
(and a third: fine-tuned with LayerDrop, which trains the stack to work with layers missing)
it runs every strategy and records, per strategy, the deletion order, the test-accuracy curve,
and the largest number of layers deletable at capacity >= 0.95, without post-training and with
only the head re-fitted. Orders are scored on validation only.

Writes bench/results/prune.json (command, machine, inputs, rows), bench/results/prune.md (the
tables) and bench/results/prune.<task>-<teacher>.png (the curves). Results are written after
every setting, so an interrupted run keeps what it finished.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

import benchlib  # (bench/benchlib.py)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results"


TEACHERS = {"frozen": "frozen encoder + trained head",
            "finetuned": "stack + head fine-tuned (the paper's setting)",
            "finetuned-layerdrop": "stack + head fine-tuned with LayerDrop (our --finetune default)"}
OURS = ("iterative", "greedy", "blocks", "greedy-refit", "beam", "beam-refit")


def _best(rows: list[dict], task: str, teacher: str, variant: str, source: str) -> tuple[int, str]:
    mine = [r for r in rows if r["task"] == task and r["teacher"] == teacher and r["from"] == source]
    if not mine:
        return -1, "not run"
    k = max(r[f"deletable_{variant}"] for r in mine)
    return k, ", ".join(r["strategy"] for r in mine if r[f"deletable_{variant}"] == k)


def _md_table(rows: list[dict], settings: list[dict]) -> str:
    order = list(TEACHERS)
    settings = sorted(settings, key=lambda s: (s["task"] != "word", s["task"],
                                               order.index(s["teacher"]) if s["teacher"] in order else 99))
    lines = ["# Layer pruning of whisper-base (synth-commands)", "",
             "Layers deletable (of 5: layer 1 is never deleted) with test capacity >= 0.95, i.e. test "
             "accuracy >= 95% of the teacher's. Orders are chosen on validation only. \"no post-training\" "
             "is the paper's claim; \"head re-fitted\" re-trains only the head after each deletion. "
             "Capacity can exceed 1: a pruned model with a re-fitted head may beat the teacher (the speaker "
             "task: Whisper's last layers discard speaker identity, its early layers keep it).", "",
             "## Summary: most layers deletable, best of the paper's four vs best of ours", "",
             "| task | teacher | teacher test acc. | no post-training: paper | ours "
             "| head re-fitted: paper | ours |", "|---|---|---|---|---|---|---|"]
    for s in settings:
        cells = []
        for variant in ("no_refit", "refit"):
            for source in ("paper", "ours"):
                k, who = _best(rows, s["task"], s["teacher"], variant, source)
                cells.append("–" if k < 0 else f"{k} ({who})" if k else "0")
        lines.append(f"| {s['task']} | {TEACHERS.get(s['teacher'], s['teacher'])} | "
                     f"{s['teacher_test_accuracy']:.3f} | " + " | ".join(cells) + " |")
    lines.append("")
    for s in settings:
        kind = TEACHERS.get(s["teacher"], s["teacher"])
        lines += [f"## task {s['task']}, teacher: {kind}", "",
                  f"Teacher test accuracy {s['teacher_test_accuracy']:.3f} (validation "
                  f"{s['teacher_val_accuracy']:.3f}, chance {s['chance']:.3f}); clips train/validation/test "
                  f"{s['clips']['train']}/{s['clips']['validation']}/{s['clips']['test']}; "
                  f"{s['seconds']:.0f} s" + (f"; run by `{s['command']}`" if s.get("command") else "") + ".", "",
                  "| strategy | from | order (layers) | deletable, no post-training | deletable, head re-fitted "
                  "| on validation (no post-training / re-fitted) | test acc. after 2 / 3 deleted (no post-training) |",
                  "|---|---|---|---|---|---|---|"]
        mine = [r for r in rows if r["task"] == s["task"] and r["teacher"] == s["teacher"]]
        for r in mine:
            acc = r["curve_no_refit"]
            lines.append(f"| {r['strategy']} | {r['from']} | {','.join(map(str, r['order']))} | "
                         f"{r['deletable_no_refit']} | {r['deletable_refit']} | "
                         + (f"{r['deletable_no_refit_val']} / {r['deletable_refit_val']} | "
                            if "deletable_refit_val" in r else "– | ")
                         + f"{acc[2]:.3f} / {acc[3]:.3f} |")
        for variant, label in (("no_refit", "no post-training"), ("refit", "head re-fitted")):
            paper = _best(rows, s["task"], s["teacher"], variant, "paper")[0]
            ours = _best(rows, s["task"], s["teacher"], variant, "ours")[0]
            lines.append(f"\nBest {label}: ours {ours}, paper's {paper}.")
        lines += ["", f"![curves](prune.{s['task']}-{s['teacher']}.png)", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="whisper-base")
    ap.add_argument("--data", default="synth-commands")
    ap.add_argument("--tasks", default="word,speaker")
    ap.add_argument("--teachers", default="frozen,finetuned,finetuned-layerdrop")
    ap.add_argument("--clips", type=int, default=800, help="clips per task (seeded subset)")
    ap.add_argument("--strategies",
                    default="forward,backward,bi,knn-bi,iterative,greedy,blocks,greedy-refit,beam,beam-refit")
    ap.add_argument("--finetune-epochs", type=int, default=8)
    ap.add_argument("--finetune-lr", type=float, default=1e-4)
    ap.add_argument("--layerdrop", type=float, default=0.5,
                    help="LayerDrop of the finetuned-layerdrop teacher")
    ap.add_argument("--finetune-minutes", type=float, default=10.0,
                    help="wall-clock cap per training (PruneConfig.train.max_minutes: the fine-tuning, "
                         "the heads)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1 is fastest on a loaded 2-core machine)")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--render-only", action="store_true", help="rewrite prune.md from prune.json")
    ap.add_argument("--merge", action="store_true",
                    help="keep the settings (task, teacher) of the existing prune.json that this run "
                         "does not redo; each setting records the command that produced it")
    args = ap.parse_args(argv)
    if args.render_only:
        import json

        sys.path.insert(0, str(ROOT / "src"))
        from stackslim.results import write_atomic

        from stackslim.prune.plots import plot_curves

        d = json.loads((Path(args.out) / "prune.json").read_text())
        write_atomic(Path(args.out) / "prune.md", _md_table(d["rows"], d["settings"]))
        for s in d["settings"]:
            mine = [r for r in d["rows"] if r["task"] == s["task"] and r["teacher"] == s["teacher"]]
            panels = [(label, {r["strategy"]: r[f"curve_{v}"] for r in mine})
                      for v, label in (("no_refit", "no post-training"), ("refit", "head re-fitted"))]
            plot_curves(panels, s["teacher_test_accuracy"], d["inputs"]["threshold"], s["chance"],
                        Path(args.out) / f"prune.{s['task']}-{s['teacher']}.png",
                        title=f"{d['inputs']['model']}, task {s['task']} ({TEACHERS.get(s['teacher'], s['teacher'])})",
                        paper=("forward", "backward", "bi", "knn-bi"))
        return 0
    benchlib.set_threads(args.threads)
    sys.path.insert(0, str(ROOT / "src"))
    from stackslim.data import load_dataset
    from stackslim.heads import prepare_task
    from stackslim.models import load_encoder
    from stackslim.prune import PruneConfig, run_pruning
    from stackslim.prune.pipeline import write_plot
    from stackslim.results import provenance, write_atomic, write_json

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    enc = load_encoder(args.model)
    ds = load_dataset(args.data)
    store: dict[int, torch.Tensor] = {}  # hidden state 0 per clip, shared by every setting
    rows, settings = [], []
    command = "python bench/prune.py " + " ".join(argv if argv is not None else sys.argv[1:])
    redo = {(t, te) for t in args.tasks.split(",") for te in args.teachers.split(",")}
    if args.merge and (out / "prune.json").is_file():
        import json

        old = json.loads((out / "prune.json").read_text())
        keep = [s for s in old["settings"] if (s["task"], s["teacher"]) not in redo]
        for s in keep:
            s.setdefault("command", old["command"])
        settings = keep
        rows = [r for r in old["rows"] if (r["task"], r["teacher"]) not in redo]
    t_all = time.monotonic()
    for task_name in args.tasks.split(","):
        task = prepare_task(ds, task_name, seed=0, max_clips=args.clips, fractions=(0.5, 0.2, 0.3))
        for teacher in args.teachers.split(","):
            cfg = PruneConfig(task=task_name, strategies=tuple(args.strategies.split(",")),
                              finetune=teacher.startswith("finetuned"),
                              finetune_layerdrop=args.layerdrop if teacher == "finetuned-layerdrop" else 0.0,
                              threshold=0.95,
                              finetune_epochs=args.finetune_epochs,
                              finetune_lr=args.finetune_lr,
                              train=replace(PruneConfig().train, max_minutes=args.finetune_minutes),
                              save_model=False)
            print(f"== {task_name} / {teacher}", flush=True)
            result, _, _ = run_pruning(enc, task, cfg, x0_store=store)
            write_plot(result, out / f"prune.{task_name}-{teacher}.png", chance=task.chance)
            t = result.teacher
            settings.append({"task": task_name, "teacher": teacher, "teacher_test_accuracy": t.test_accuracy,
                             "teacher_val_accuracy": t.val_accuracy, "chance": task.chance,
                             "clips": task.describe()["clips"], "classes": task.num_classes,
                             "seconds": result.seconds, "best_saved_model": result.best,
                             "command": command,
                             "finetuning": t.finetune_log.to_json() if t.finetune_log else None})
            for s in result.strategies:
                rows.append({
                    "task": task_name, "teacher": teacher, "strategy": s.name,
                    "from": "ours" if s.name in OURS else "paper",
                    "order": [i + 1 for i in s.order],
                    "deletable_no_refit": s.curves["no_refit"].max_deletable(cfg.threshold),
                    "deletable_refit": s.curves["refit"].max_deletable(cfg.threshold),
                    "deletable_no_refit_val": s.curves["no_refit"].max_deletable(cfg.threshold, "validation"),
                    "deletable_refit_val": s.curves["refit"].max_deletable(cfg.threshold, "validation"),
                    "deletable_unit": f"layers (of {result.num_layers - 1} deletable; test capacity >= {cfg.threshold})",
                    "teacher_test_accuracy": round(t.test_accuracy, 6),
                    "curve_no_refit": [round(a, 4) for a in s.curves["no_refit"].test_accuracy],
                    "curve_refit": [round(a, 4) for a in s.curves["refit"].test_accuracy],
                    "curve_unit": f"test accuracy after deleting k = 0..{result.num_layers - 1} layers",
                    "seconds": round(s.seconds, 1), "info": s.info,
                })
            print({r["strategy"]: (r["deletable_no_refit"], r["deletable_refit"]) for r in rows
                   if r["task"] == task_name and r["teacher"] == teacher}, flush=True)
            write_json(out / "prune.json", {
                "command": command,
                "machine": provenance(),
                "inputs": {"model": args.model, "data": args.data, "clips_per_task": args.clips,
                           "fractions": [0.5, 0.2, 0.3], "seed": 0, "threshold": cfg.threshold,
                           "finetune": {"epochs": args.finetune_epochs, "lr": args.finetune_lr,
                                        "minutes": args.finetune_minutes, "front_end": "frozen"},
                           "strategies": args.strategies.split(",")},
                "settings": settings, "rows": rows, "seconds": round(time.monotonic() - t_all, 1)})
            write_atomic(out / "prune.md", _md_table(rows, settings))
    main(["--render-only", "--out", str(out)])  # the same titles as a later --render-only
    print(f"done in {time.monotonic() - t_all:.0f} s: {out / 'prune.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
