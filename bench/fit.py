"""`stackslim fit` at several memory budgets: the composed winner against the best single
method that fits the same budget, from the same run.

For each budget B (MB of encoder weights) one `stackslim.fit.run(MODEL, DATA, ...,
FitConfig(max_mb=B, minutes=M))`. From its fit.json: the winner (chosen on validation), and
the best single method that fits B, by validation accuracy: pruning alone (prune-dk), sharing
alone (prune-d0+share-s), mimic alone, each in float32 or int8 (int8 counts as part of a
single method, as the issue asks). Caveat: the single methods are candidates of the same
successive halving, so one eliminated early was trained for fewer epochs than the winner; a
candidate that was not among the --max-candidates trained has no accuracy.

    python bench/fit.py                                    # the issue's run (hours on a CPU)
    python bench/fit.py --model whisper-tiny.en --budgets 16,8 --minutes 3 --max-clips 300

Defaults are the issue's: whisper-base, synth-commands (word task), 40, 20 and 10 MB, 30
minutes each. Writes bench/results/NAME.json and NAME.md (--name, default fit).
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


def single(row: dict) -> bool:
    """One method alone: pruning, sharing without deletion, or a mimic."""
    return row["method"] in ("prune", "mimic") or not row["deleted_layers"]


def one(model: str, data: str, budget: float, a: argparse.Namespace) -> dict:
    cfg = FitConfig(max_mb=budget, minutes=a.minutes, max_clips=a.max_clips, calib=a.calib,
                    max_candidates=a.max_candidates, head_epochs=a.head_epochs, onnx=False,
                    train=TrainConfig(epochs=a.epochs, lr=1e-4, batch_size=16, weight_decay=0.0,
                                      patience=100))
    with tempfile.TemporaryDirectory(prefix="bench-fit-") as tmp:
        c0, t0 = cpu_seconds(), time.monotonic()
        r = run(model, data, Path(tmp) / "run", cfg, progress=False, log=lambda s: None)
        wall = (time.monotonic() - t0) / 60
    trained = [c for c in r.candidates if c["trained"] and c.get("fits_written")]
    singles = [c for c in trained if single(c)]
    best = max(singles, key=lambda c: c["validation_accuracy"]) if singles else None
    keep = ("name", "written_bytes", "predicted_bytes", "validation_accuracy", "accuracy",
            "measured_ms", "predicted_ms", "epochs")
    w = r.winner
    return {"model": model, "budget_mb": budget, "teacher_accuracy": r.teacher["accuracy"],
            "teacher_mb": r.teacher["bytes"] / 1e6,
            "winner": {k: w[k] for k in keep} if w else None,
            "best_single": {k: best[k] for k in keep} if best else None,
            "winner_capacity": w["accuracy"] / r.teacher["accuracy"] if w else None,
            "trained": len([c for c in r.candidates if c["trained"]]),
            "candidates": len(r.candidates), "search": r.search,
            "max_bytes_error": max(abs(c["bytes_error"]) for c in r.candidates if c["trained"]),
            "wall_minutes": round(wall, 2), "cpu_minutes": round((cpu_seconds() - c0) / 60, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="whisper-base")
    p.add_argument("--data", default="synth-commands")
    p.add_argument("--budgets", default="40,20,10")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--max-clips", type=int, default=0)
    p.add_argument("--calib", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1, help="first round's epochs")
    p.add_argument("--max-candidates", type=int, default=12)
    p.add_argument("--head-epochs", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--name", default="fit", help="results file name in bench/results/")
    a = p.parse_args()
    set_threads(a.threads)
    rows = [one(a.model, a.data, float(b), a) for b in a.budgets.split(",")]
    cmd = "python bench/fit.py " + " ".join(sys.argv[1:])
    doc = {"command": cmd, "machine": machine(),
           "inputs": {"model": a.model, "data": a.data, "task": "word", "max_clips": a.max_clips,
                      "minutes": a.minutes, "epochs_first_round": a.epochs,
                      "max_candidates": a.max_candidates, "calib": a.calib},
           "rows": rows}
    md = [f"`{cmd}` ({a.model} on {a.data}, word task; test accuracy; MB = 10^6 bytes of "
          "encoder weights as written; winner and best single method chosen on validation)", "",
          "| budget MB | teacher acc (MB) | winner | acc | MB | ms | best single method | acc | MB "
          "| winner capacity | trained / candidates | search min (cap) |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        w, s = r["winner"] or {}, r["best_single"] or {}
        md.append(f"| {r['budget_mb']:g} | {r['teacher_accuracy']:.3f} ({r['teacher_mb']:.1f}) | "
                  f"{w.get('name', '-')} | {w.get('accuracy', float('nan')):.3f} | "
                  f"{w.get('written_bytes', 0) / 1e6:.2f} | {w.get('measured_ms', float('nan')):.1f} | "
                  f"{s.get('name', '-')} | {s.get('accuracy', float('nan')):.3f} | "
                  f"{s.get('written_bytes', 0) / 1e6:.2f} | {r['winner_capacity'] or float('nan'):.3f} | "
                  f"{r['trained']} / {r['candidates']} | {r['search']['minutes']:.1f} ({r['search']['minutes_cap']:g}) |")
    j, m = write_results(a.name, doc, "\n".join(md) + "\n")
    print(Path(m).read_text())


if __name__ == "__main__":
    main()
