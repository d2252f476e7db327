"""Converting the real whisper-base into the shared form: plain against activation-aware, with and
without alignment, then recovery of the most promising variants (issue #7).

    python bench/convert.py                         # the default plan below (~50 min here)
    python bench/convert.py --quick                 # a smoke run, to the temp folder
    python bench/convert.py --groupings 2,3,6,blocks --recover-top 3 --recover-minutes 8

Plan, for a 2-core CPU shared with other jobs:

1. Right after conversion, every variant (cheap: seconds to a minute each): groups K ∈ {3, 6}
   (K = 2 is above 50% of the stack already at r = 16: 54.9% in bench/share.py; add it with
   ``--groupings 2,3,6,blocks``) and the measured blocks (linear CKA, 64 train clips),
   r ∈ {16, 64}; per grouping and rank
   ``svd`` (group mean + truncated SVD: the plain conversion of bench/share.py), ``aware``
   (calibrated whitened SVD, shared weight chosen by output error) and ``aware+align`` (FFN
   neurons and heads permuted to the group's middle layer first). Per-layer biases and norms,
   diagonal on. Measured: stack size, weight and output errors per map (output error on the
   calibration statistics), keyword accuracy on `synth-commands` through the teacher's head,
   WER on `synth-sentences` through the original decoder.
2. Recovery (`recover`, states all-then-last, task loss on the labelled clips, unlabelled pool
   sentences for distillation) only for the `--recover-top` variants at ≤ 50% of the stack
   with the best accuracy right after conversion, plus the plain ``svd`` variant of the best
   one's grouping and rank, all with the same budget (`--recover-minutes`).

Calibration: `--calib-commands` clips of the commands' train split and `--calib-sentences`
pool sentences (the calibration never sees the test or WER clips).

Writes bench/results/convert.json (`command`, `machine`, `inputs`, `rows`; rewritten after
every row, so a killed run keeps what it measured) and convert.md.
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

import benchlib  # (bench/benchlib.py)
from share import _eval, whisper_setup
from stackslim.results import provenance, write_atomic, write_json
from stackslim.share import collect_calibration, layer_matrices, resolve_groups, to_residual
from stackslim.share.align import align_groups
from stackslim.share.grouping import fixed_groups
from stackslim.share.recover import recover
from stackslim.share.size import disk_report
from stackslim.train import TrainConfig

OUT = Path(__file__).parent / "results"
METHODS = ("svd", "aware", "aware+align")
GOAL = {"stack_size_pct": 50.0, "accuracy_of_teacher_pct": 95.0, "wer_relative_pct": 10.0}


def short(errors: dict, key: str) -> dict:
    return {m.split(".")[-1]: round(v[key], 4) for m, v in errors.items() if key in v}


def make_student(ctx, grouping: str, groups, rank: int, method: str, stats):
    """The converted encoder of one variant (aligned variants start from the aligned teacher)."""
    base = ctx["aligned"][grouping] if method.endswith("align") else ctx["teacher"]
    return to_residual(base, groups=groups, rank=rank, diag=True, share_norms=False,
                       init=method.split("+")[0], calib=stats)


def convert_row(ctx, grouping: str, groups, rank: int, method: str, stats, timing: float) -> dict:
    """Convert and measure right after conversion."""
    t0 = time.monotonic()
    student = make_student(ctx, grouping, groups, rank, method, stats)
    conv_s = time.monotonic() - t0 + timing
    size = student.size_report()
    summ = student.conversion_summary()
    out_all = [c["out_error"] for c in student.conversion if "out_error" in c]
    row = {"part": "convert", "variant": f"{grouping} r={rank} {method}", "grouping": grouping,
           "groups": size["groups"], "rank": rank, "method": method,
           "stack_params": size["stack_params"], "stack_size_pct": round(100 * size["stack_ratio"], 2),
           "convert_seconds": round(conv_s, 1),
           "weight_error_mean": short(summ, "mean"), "output_error_mean": short(summ, "out_mean"),
           "output_error_all_maps_mean": round(sum(out_all) / max(len(out_all), 1), 4),
           "shared_choice": sorted({c["shared"] for c in student.conversion if "shared" in c})}
    if method.endswith("align"):
        row["alignment_spread"] = {k: {m.split(".")[-1]: round(v, 4) for m, v in d.items()}
                                   for k, d in ctx["align_reports"][grouping].items()
                                   if k.startswith("spread")}
    row["before"] = _eval(student, ctx["head"], ctx["test_cache"], ctx["y_test"], ctx["wer_ctx"])
    return row


def goal_check(row: dict, teacher: dict, stage: str) -> dict:
    m = row[stage]
    acc_rel = 100 * m["accuracy_pct"] / teacher["accuracy_pct"]
    wer_rel = 100 * (m["wer_pct"] - teacher["wer_pct"]) / max(teacher["wer_pct"], 1e-9)
    return {"accuracy_of_teacher_pct": round(acc_rel, 1), "wer_relative_change_pct": round(wer_rel, 1),
            "met": bool(row["stack_size_pct"] <= GOAL["stack_size_pct"]
                        and acc_rel >= GOAL["accuracy_of_teacher_pct"]
                        and wer_rel <= GOAL["wer_relative_pct"])}


def fmt(v) -> str:
    return "" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


def to_markdown(res: dict) -> str:
    rows = res["rows"]
    t = rows[0]
    inp = res["inputs"]
    conv_cmds = list(dict.fromkeys(r.get("command", res["command"]) for r in rows
                                   if r["part"] == "convert" and "method" in r))
    lines = ["# Converting whisper-base into the shared form (`bench/convert.py`)", "",
             "Conversions: " + "; then ".join(f"`{c}`" for c in conv_cmds or [res["command"]]), "",
             res["notes"], "",
             f"Teacher: keyword accuracy {fmt(t['accuracy_pct'])}% (test split, {inp['kws_clips']}-clip "
             f"subset of synth-commands), WER {fmt(t['wer_pct'])}% ({inp['wer_clips']} synth-sentences "
             f"eval clips), stack {t['stack_params']:,} parameters. Calibration: "
             f"{inp['calib_commands']} command clips + {inp['calib_sentences']} pool sentences.", "",
             "## Right after conversion (no training)", "",
             "Output error: ‖(W−Ŵ)C^½‖/‖WC^½‖ on the calibration statistics, mean over layers; weight "
             "error ‖W−Ŵ‖/‖W‖; both per map q k v o fc1 fc2. Convert s: wall time including the "
             "calibration pass (and for +align the alignment and its own calibration pass), which "
             "the variants of a grouping share; svd needs calibration only to report output errors.",
             "",
             "| variant | stack size % | output error q k v o fc1 fc2 | weight error q k v o fc1 fc2 | "
             "KWS accuracy % | WER % | shared weight | convert s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["part"] != "convert" or "method" not in r:
            continue
        o = " ".join(f"{v:.2f}" for v in r["output_error_mean"].values())
        w = " ".join(f"{v:.2f}" for v in r["weight_error_mean"].values())
        lines.append(f"| {r['variant']} | {fmt(r['stack_size_pct'])} | {o} | {w} | "
                     f"{fmt(r['before']['accuracy_pct'])} | {fmt(r['before'].get('wer_pct'))} | "
                     f"{', '.join(r['shared_choice'])} | {fmt(r['convert_seconds'])} |")
    rec = [r for r in rows if r["part"] == "recover"]
    if rec:
        lines += ["", f"## After recovery ({inp['recover_minutes']} min budget each, states all then last)", "",
                  "; then ".join(f"`{c}`" for c in dict.fromkeys(r["command"] for r in rec)), "",
                  "Goal (issue #7): stack ≤ 50%, KWS accuracy ≥ 95% of the teacher's, WER within +10% "
                  "relative of the teacher's.", "",
                  "| variant | stack size % | KWS accuracy % (after conversion → recovery) | "
                  "WER % | % of teacher accuracy | WER change % rel. | goal met | recovery | encoder MB "
                  "(compact / dense) |", "|---|---|---|---|---|---|---|---|---|"]
        for r in rec:
            b, a, g, rc = r["before"], r["after"], r["goal_after"], r["recovery"]
            lines.append(f"| {r['variant']} | {fmt(r['stack_size_pct'])} | {fmt(b['accuracy_pct'])} → "
                         f"{fmt(a['accuracy_pct'])} | {fmt(b.get('wer_pct'))} → {fmt(a.get('wer_pct'))} | "
                         f"{g['accuracy_of_teacher_pct']} | {g['wer_relative_change_pct']} | {g['met']} | "
                         f"{rc['seconds']:.0f} s, {rc['epochs_run']} ep | "
                         f"{r['compact_encoder_mb']:.1f} / {r['dense_encoder_mb']:.1f} |")
    lines.append("")
    return "\n".join(lines)


def rewrite_markdown(path: Path = OUT / "convert.json") -> None:
    """convert.md again from convert.json (after a change of the table's layout)."""
    import json

    write_atomic(path.with_suffix(".md"), to_markdown(json.loads(path.read_text())))


def _kept_rows(path: Path, teacher_row: dict, groupings: str) -> list[dict]:
    """The rows of an earlier convert.json (with their commands) whose grouping this run does
    not convert; refused unless that run measured the same teacher (accuracy and WER)."""
    import json

    old = json.loads(path.read_text())
    t = old["rows"][0]
    if (t["accuracy_pct"], t["wer_pct"]) != (teacher_row["accuracy_pct"], teacher_row["wer_pct"]):
        raise SystemExit(f"--merge: {path} measured another teacher (accuracy {t['accuracy_pct']}%, "
                         f"WER {t['wer_pct']}%; this run {teacher_row['accuracy_pct']}%, "
                         f"{teacher_row['wer_pct']}%): rerun the whole sweep")
    redo = {g if g == "blocks" else f"K={g}" for g in groupings.split(",")}
    return [{**r, "command": r.get("command", old["command"])} for r in old["rows"][1:]
            if r.get("grouping") not in redo]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run")
    p.add_argument("--kws-clips", type=int, default=1200)
    p.add_argument("--pool-clips", type=int, default=120)
    p.add_argument("--wer-clips", type=int, default=16)
    p.add_argument("--calib-commands", type=int, default=96)
    p.add_argument("--calib-sentences", type=int, default=32)
    p.add_argument("--groupings", default="3,6,blocks", help="K values and/or 'blocks'")
    p.add_argument("--ranks", default="16,64")
    p.add_argument("--recover-top", type=int, default=2)
    p.add_argument("--recover-minutes", type=float, default=4.0)
    p.add_argument("--recover-lr", type=float, default=3e-4)
    p.add_argument("--recover", default="", help="only recover these variants (comma-separated, "
                   "e.g. 'K=3 r=16 aware+align,K=3 r=16 svd'), converted again; the conversion rows "
                   "of convert.json are kept")
    p.add_argument("--merge", action="store_true", help="keep the rows of convert.json for the "
                   "groupings this run does not convert (refused when its teacher row differs: "
                   "another head or clip set); recovery then picks among this run's conversions")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--machine-note", default="", help="what else ran on the machine (for the notes)")
    args = p.parse_args(argv)
    if args.quick:
        args.kws_clips, args.pool_clips, args.wer_clips = 200, 8, 4
        args.calib_commands, args.calib_sentences, args.recover_minutes = 16, 4, 0.2
        args.groupings, args.ranks, args.recover_top = "3", "16", 1
    benchlib.set_threads(args.threads)
    out_json = Path(tempfile.gettempdir()) / "convert_quick.json" if args.quick else OUT / "convert.json"
    command = " ".join(["python bench/convert.py", *(sys.argv[1:] if argv is None else argv)])
    t_start = time.monotonic()
    ctx = whisper_setup(args.kws_clips, args.pool_clips, args.wer_clips, tag="convert")
    teacher, task = ctx["teacher"], ctx["task"]
    rows = [ctx["teacher_row"]]
    if args.merge and out_json.exists():
        rows += _kept_rows(out_json, ctx["teacher_row"], args.groupings)
    n_kept = len(rows) - 1
    only = [v.strip() for v in args.recover.split(",") if v.strip()]
    if only:  # keep the sweep's conversion rows (with the command that made them)
        import json

        old = json.loads(out_json.read_text())
        rows += [r for r in old["rows"][1:] if r["part"] == "convert"]
        args.groupings = ",".join(sorted({r["grouping"].removeprefix("K=") for r in rows[1:]
                                          if r["variant"] in only}))
    res = {"command": command, "machine": {**provenance(), "platform": platform.platform()},
           "inputs": vars(args), "goal": GOAL,
           "notes": (f"CPU only, {args.threads} torch thread(s) on a {os.cpu_count()}-core machine"
                     f"{'; ' + args.machine_note if args.machine_note else ''}: times are indicative. "
                     "Recovery budgets are minutes (stated per row), not the 20 minutes of the "
                     "issue's goal nor the paper's training."), "rows": rows}

    def save() -> None:
        res["seconds"] = round(time.monotonic() - t_start, 1)
        write_json(out_json, res)
        write_atomic(out_json.with_suffix(".md"), to_markdown(res))

    train_rows = task.splits["train"]
    calib = [task.dataset.load(i) for i in train_rows[: args.calib_commands]]
    calib += [ctx["sents"].load(i) for i in ctx["pool"][: args.calib_sentences]]
    matrices = layer_matrices(teacher.family)
    t0 = time.monotonic()
    stats = collect_calibration(teacher, calib, matrices, progress=True)
    calib_s = time.monotonic() - t0
    print(f"[convert] calibration on {len(calib)} clips: {calib_s:.0f} s", flush=True)
    groupings: dict[str, list[list[int]]] = {}
    for g in args.groupings.split(","):
        if g == "blocks":
            groupings["blocks"] = resolve_groups(teacher, "blocks",
                                                 waves=[task.dataset.load(i) for i in train_rows[:64]])
        else:
            groupings[f"K={g}"] = fixed_groups(teacher.num_layers, int(g))
    ctx["aligned"], ctx["align_reports"], aligned_stats = {}, {}, {}
    for name, groups in groupings.items():
        if only and not any(v.startswith(f"{name} ") and v.endswith("align") for v in only):
            continue
        t0 = time.monotonic()
        a = copy.deepcopy(teacher)
        ctx["align_reports"][name] = align_groups(a, groups)
        ctx["aligned"][name] = a
        aligned_stats[name] = (collect_calibration(a, calib, matrices), time.monotonic() - t0)
    for name, groups in ({} if only else groupings).items():
        for rank in map(int, args.ranks.split(",")):
            for method in METHODS:
                st, extra = aligned_stats[name] if method.endswith("align") else (stats, calib_s)
                row = convert_row(ctx, name, groups, rank, method, st, extra)
                row["command"] = command
                rows.append(row)
                print(f"[convert] {row['variant']}: size {row['stack_size_pct']}%, out err "
                      f"{row['output_error_all_maps_mean']}, acc {row['before']['accuracy_pct']}, "
                      f"WER {row['before'].get('wer_pct')}", flush=True)
                save()
    # recovery: the best few at <= 50% of the stack, and the plain conversion of the best one's setting
    small = [r for r in rows[1 + n_kept:] if r["part"] == "convert" and r["stack_size_pct"] <= GOAL["stack_size_pct"] and r["method"] != "svd"]
    small.sort(key=lambda r: (-r["before"]["accuracy_pct"], r["output_error_all_maps_mean"]))
    chosen = [r["variant"] for r in small[: args.recover_top]]
    if only:
        chosen = only
    elif small:
        best = small[0]
        chosen.append(f"{best['grouping']} r={best['rank']} svd")
    for variant in chosen:
        conv = next(r for r in rows if r.get("variant") == variant and r["part"] == "convert")
        g, method = conv["grouping"], conv["method"]
        student = make_student(ctx, g, groupings[g], conv["rank"], method,
                               aligned_stats[g][0] if method.endswith("align") else stats)
        cfg = TrainConfig(epochs=1000, batch_size=16, lr=args.recover_lr, weight_decay=0.0,
                          patience=1000, max_minutes=args.recover_minutes, seed=0)
        log = recover(student, ctx["train_cache"], cfg, states="all-then-last", head=ctx["head"],
                      labels=ctx["labels"], val_cache=ctx["val_cache"], val_labels=ctx["y_val"])
        row = {**{k: v for k, v in conv.items() if k != "command"}, "part": "recover", "command": command,
               "recovery": {"minutes_budget": args.recover_minutes, "seconds": round(log.seconds, 1),
                            "epochs_run": log.epochs_run, "stopped_by": log.stopped_by,
                            "states": "all-then-last", "kept_converted": log.kept_initial,
                            "train_clips": len(ctx["train_cache"]), "lr": args.recover_lr}}
        row["after"] = _eval(student, ctx["head"], ctx["test_cache"], ctx["y_test"], ctx["wer_ctx"])
        row["goal_before"] = goal_check(row, rows[0], "before")
        row["goal_after"] = goal_check(row, rows[0], "after")
        disk = disk_report(student)
        row["compact_encoder_mb"] = round(disk["compact_encoder_bytes"] / 2**20, 2)
        row["dense_encoder_mb"] = round(disk["dense_encoder_bytes"] / 2**20, 2)
        row["compact_decoder_mb"] = round(disk["compact_decoder_bytes"] / 2**20, 2)
        rows.append(row)
        print(f"[recover] {variant}: {row['after']} goal {row['goal_after']}", flush=True)
        save()
    save()
    print(to_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
