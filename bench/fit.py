"""`stackslim fit` at several memory budgets: the composed winner against the best single
method that fits the same budget, from the same run.

For each budget B (MB of encoder weights) one `stackslim.fit.run(MODEL, DATA, ...,
FitConfig(max_mb=B, epochs_budget=E))`. From its fit.json, side by side: the winner (chosen
on validation), and the best of each single method that fits B, by validation accuracy:
pruning alone (prune-dk), sharing alone (prune-d0+share-s), mimic alone, each in float32 or
int8 (int8 counts as part of a single method, as the issue asks); the best single method is
the best of the three. Caveat: the single methods are candidates of the same successive
halving, so one eliminated early was trained for fewer epochs than the winner (the table gives
each one's epochs); a composition not among the --max-candidates trained has no accuracy.

    python bench/fit.py --max-clips 300 --epochs-budget 45 --max-candidates 9
    python bench/fit.py --model whisper-tiny.en --budgets 16,8 --epochs-budget 30 --max-clips 300

Defaults: whisper-base, synth-commands (word task), 40, 20 and 10 MB, 60 epochs of search
each, no wall-clock cap. Writes bench/results/NAME.json and NAME.md (--name, default fit).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import cpu_seconds, machine, set_threads, write_results

from stackslim.fit import FitConfig, run
from stackslim.train import TrainConfig

SINGLE = ("prune", "share", "mimic")
KEEP = ("name", "written_bytes", "predicted_bytes", "validation_accuracy", "accuracy",
        "measured_ms", "predicted_ms", "epochs")


def single(row: dict) -> str | None:
    """The one method of `row` alone (pruning, sharing without deletion, a mimic), or None
    for a composition (layers deleted, then shared)."""
    if row["method"] == "share" and row["deleted_layers"]:
        return None
    return row["method"]


def best(rows: list[dict]) -> dict | None:
    """The row of highest validation accuracy (ties: the first), its KEEP fields."""
    b = max(rows, key=lambda c: c["validation_accuracy"], default=None)
    return {k: b[k] for k in KEEP} if b else None


def one(model: str, data: str, budget: float, a: argparse.Namespace) -> dict:
    cfg = FitConfig(max_mb=budget, epochs_budget=a.epochs_budget, minutes=a.minutes,
                    max_clips=a.max_clips, calib=a.calib, max_candidates=a.max_candidates,
                    head_epochs=a.head_epochs, onnx=False,
                    train=TrainConfig(lr=1e-4, batch_size=16, weight_decay=0.0, patience=100))
    with tempfile.TemporaryDirectory(prefix="bench-fit-") as tmp:
        c0, t0 = cpu_seconds(), time.monotonic()
        r = run(model, data, Path(tmp) / "run", cfg, progress=False,
                log=lambda s: print(f"{budget:g} MB: {s}", flush=True))
        wall = (time.monotonic() - t0) / 60
    trained = [c for c in r.candidates if c["trained"] and c.get("fits_written")]
    per = {m: best([c for c in trained if single(c) == m]) for m in SINGLE}
    b = best([c for c in trained if single(c)])
    w = r.winner
    return {"model": model, "budget_mb": budget, "teacher_accuracy": r.teacher["accuracy"],
            "teacher_mb": r.teacher["bytes"] / 1e6,
            "winner": {k: w[k] for k in KEEP} if w else None,
            "best_single": b, "best_per_method": per,
            "winner_minus_best_single_points": (100 * (w["accuracy"] - b["accuracy"])
                                                if w and b else None),
            "winner_capacity": w["accuracy"] / r.teacher["accuracy"] if w else None,
            "trained": len([c for c in r.candidates if c["trained"]]),  # variants
            "candidates": len(r.candidates), "search": r.search,
            "max_bytes_error": max(abs(c["bytes_error"]) for c in r.candidates if c["trained"]),
            "wall_minutes": round(wall, 2), "cpu_minutes": round((cpu_seconds() - c0) / 60, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="whisper-base")
    p.add_argument("--data", default="synth-commands")
    p.add_argument("--budgets", default="40,20,10")
    p.add_argument("--epochs-budget", type=int, default=60,
                   help="the search's recovery epochs over all candidates, per budget")
    p.add_argument("--minutes", type=float, default=0.0, help="optional wall-clock cap (0: none)")
    p.add_argument("--max-clips", type=int, default=0)
    p.add_argument("--calib", type=int, default=64)
    p.add_argument("--max-candidates", type=int, default=12)
    p.add_argument("--head-epochs", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--name", default="fit", help="results file name in bench/results/")
    a = p.parse_args()
    set_threads(a.threads)
    cmd = "python bench/fit.py " + " ".join(sys.argv[1:])
    doc = {"command": cmd, "machine": machine(),
           "inputs": {"model": a.model, "data": a.data, "task": "word", "max_clips": a.max_clips,
                      "epochs_budget": a.epochs_budget, "minutes_cap": a.minutes or None,
                      "max_candidates": a.max_candidates, "calib": a.calib},
           "rows": []}
    for b in a.budgets.split(","):  # written after each budget: a stopped run keeps the others
        doc["rows"].append(one(a.model, a.data, float(b), a))
        _, m = write_results(a.name, doc, table(cmd, a.model, a.data, doc["rows"]))
    print(Path(m).read_text())


def table(cmd: str, model: str, data: str, rows: list[dict]) -> str:
    """bench/results/NAME.md: the winner against the best single method, then each method
    alone, one line per budget."""
    md = [(f"`{cmd}` ({model} on {data}, word task; test accuracy; MB = 10^6 bytes of "
           "encoder weights as written; winner and best single method chosen on validation; "
           "Δ = winner − best single method, points of test accuracy)"), "",
          ("| budget MB | teacher acc (MB) | winner | acc | MB | ms | epochs | best single method "
           "| acc | MB | epochs | Δ points | winner capacity | compositions trained / selected "
           "| epochs spent / budget |"),
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    nan = float("nan")
    for r in rows:
        w, s, q = r["winner"] or {}, r["best_single"] or {}, r["search"]
        md.append(f"| {r['budget_mb']:g} | {r['teacher_accuracy']:.3f} ({r['teacher_mb']:.1f}) | "
                  f"{w.get('name', '-')} | {w.get('accuracy', nan):.3f} | "
                  f"{w.get('written_bytes', 0) / 1e6:.2f} | {w.get('measured_ms', nan):.1f} | "
                  f"{w.get('epochs', '-')} | {s.get('name', '-')} | {s.get('accuracy', nan):.3f} | "
                  f"{s.get('written_bytes', 0) / 1e6:.2f} | {s.get('epochs', '-')} | "
                  f"{r['winner_minus_best_single_points'] if r['winner_minus_best_single_points'] is not None else nan:+.1f} | "
                  f"{r['winner_capacity'] or nan:.3f} | {q['trained']} / {q['selected']} | "
                  f"{q['epochs_spent']} / {q['epochs_budget']}"
                  + (" (cap bit)" if q["cap_bit"] else "") + " |")
    md += ["", ("Side by side, each method alone (best variant by validation; val = validation "
                "accuracy; '-': none of it fits or was trained):"), "",
           "| budget MB | winner (val / test, epochs) | pruning alone | sharing alone | mimic alone |",
           "|---|---|---|---|---|"]

    def cell(c: dict | None) -> str:
        return f"{c['name']} ({c['validation_accuracy']:.3f} / {c['accuracy']:.3f}, {c['epochs']})" if c else "-"

    for r in rows:
        md.append(f"| {r['budget_mb']:g} | {cell(r['winner'])} | "
                  + " | ".join(cell(r["best_per_method"][m]) for m in SINGLE) + " |")
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
