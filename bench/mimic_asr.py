"""The ASR mimic (`stackslim mimic MODEL synth-sentences --task asr`): WER of mimic layers that
feed the teacher's own Whisper decoder, after stage 1 (MSE to the last state) and after stage 2
(+ the decoder loss), with the CPU minutes each phase took.

    .venv/bin/python bench/mimic_asr.py --models whisper-tiny.en --merge --window 10 --pool 200 \\
        --eval-clips 60 --epochs 10 --task-epochs 3
    .venv/bin/python bench/mimic_asr.py --models whisper-base --merge ...   # adds a row
    .venv/bin/python bench/mimic_asr.py --table-only                        # the .md from the .json

(the exact command of each row is in bench/results/mimic_asr.md; 10 s training windows: at the
default 6 s whisper-tiny.en repeats itself on about 1 pool sentence in 5, and 30 s costs ~3x).

Each model is one `stackslim.mimic.run_asr` call (the library, nothing re-implemented), run in
--work/<model>/ (the mimic model and the run's own mimic.json stay there). Rows: the teacher's
WER on the eval sentences and the mimic's after each stage, each with its bootstrap 95%
interval; the stage-2 validation curve (teacher-forced cross-entropy on held-out pool sentences,
per epoch) says whether more epochs would help. CPU minutes are this process's CPU time (every
thread) of each phase; the budget is counted in epochs (a time cap only if --max-minutes).

Writes bench/results/mimic_asr.json and bench/results/mimic_asr.md (with --merge the rows of
models not run now are kept).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import benchlib

from stackslim.data import default_cache_dir
from stackslim.mimic import MimicConfig, run_asr
from stackslim.train import TrainConfig

NAME = "mimic_asr"


def _pct(w: dict | None) -> str:
    if w is None:
        return "–"
    lo, hi = w["interval95"]
    return f"{w['wer']:.1%} [{lo:.1%}, {hi:.1%}]"


def row_of(model: str, res) -> dict:
    s = res.seconds
    cpu = {k: round(v["cpu"] / 60, 2) for k, v in s.items()}
    wall = {k: round(v["wall"] / 60, 2) for k, v in s.items()}
    train_cpu = sum(cpu.get(k, 0.0) for k in ("teacher_states", "stage1", "stage2"))
    logs = {k: (v.to_json() if v is not None else None) for k, v in res.logs.items()}
    return {
        "model": model, "teacher_wer": res.teacher["wer"]["wer"],
        "teacher_interval95": res.teacher["wer"]["interval95"],
        "stage1_wer": res.mimic["wer_stage1"]["wer"] if res.mimic["wer_stage1"] else None,
        "stage1_interval95": res.mimic["wer_stage1"]["interval95"] if res.mimic["wer_stage1"] else None,
        "stage2_wer": res.mimic["wer"]["wer"], "stage2_interval95": res.mimic["wer"]["interval95"],
        "eval_clips": res.mimic["wer"]["clips"], "sentences": res.sentences,
        "params_stack_teacher": res.teacher["params_stack"], "params_stack_mimic": res.mimic["params_stack"],
        "mimic_bytes": res.mimic["bytes"],
        "epochs_run": {k: (v["epochs_run"] if v else 0) for k, v in logs.items()},
        "stage2_val_curve": logs["stage2"]["val_score"] if logs["stage2"] else [],
        "stage1_val_curve": logs["stage1"]["val_score"] if logs["stage1"] else [],
        "cpu_minutes": cpu, "wall_minutes": wall,
        "cpu_minutes_training": round(train_cpu, 2),
        "goal_below_30pct": res.mimic["wer"]["wer"] < 0.30,
        "teacher_hypotheses_first": res.teacher["wer"]["hypotheses"][:5],
        "mimic_hypotheses_first": res.mimic["wer"]["hypotheses"][:5],
    }


def markdown(doc: dict) -> str:
    lines = ["# ASR mimic: WER of mimic layers read by the teacher's Whisper decoder", "",
             "Commands: one per row, below the table.  ",
             f"Machine: {doc['machine']['cpu']}, torch threads {doc['inputs']['threads']}, "
             f"load {doc['machine']['load_avg_1m_at_start']} at start (shared). Data: synth-sentences, "
             "trained on split=pool sentences (a tenth held out for validation), WER on split=eval "
             "(30 s padded window, Whisper's English normaliser, bootstrap 95% interval over sentences).", "",
             "| model | mimic | stack params (teacher → mimic) | pool sent. | eval clips | teacher WER | "
             "mimic WER, stage 1 | mimic WER, stage 2 | epochs (1 / 2) | CPU min (states / stage 1 / stage 2) | "
             "CPU min training | < 30% |",
             "|---|---|---:|---:|---:|---|---|---|---:|---:|---:|---|"]
    for r in doc["rows"]:
        c = r["cpu_minutes"]
        lines.append(
            f"| {r['model']} | {r['mimic']} | {r['params_stack_teacher']:,} → {r['params_stack_mimic']:,} | "
            f"{r['sentences']['train']} | {r['eval_clips']} | "
            f"{_pct({'wer': r['teacher_wer'], 'interval95': r['teacher_interval95']})} | "
            f"{_pct({'wer': r['stage1_wer'], 'interval95': r['stage1_interval95']}) if r['stage1_wer'] is not None else '–'} | "
            f"{_pct({'wer': r['stage2_wer'], 'interval95': r['stage2_interval95']})} | "
            f"{r['epochs_run']['stage1']} / {r['epochs_run']['stage2']} | "
            f"{c.get('teacher_states', 0):.1f} / {c.get('stage1', 0):.1f} / {c.get('stage2', 0):.1f} | "
            f"{r['cpu_minutes_training']:.1f} | {'yes' if r['goal_below_30pct'] else 'no'} |")
    lines += ["", "Validation by epoch, on the held-out pool sentences (higher is better): stage 1, "
              "minus the MSE to the teacher's last state over its variance; stage 2, minus the "
              "teacher-forced cross-entropy per token of the teacher's transcripts:", ""]
    for r in doc["rows"]:
        curve = ", ".join(f"{v:.3f}" for v in r["stage2_val_curve"])
        lines.append(f"- {r['model']}: stage 1 {', '.join(f'{v:.3f}' for v in r['stage1_val_curve'])}; "
                     f"stage 2 {curve}")
    lines += ["", "Commands:", ""] + [f"- {r['model']}: `{r.get('command', doc['command'])}`"
                                       for r in doc["rows"]]
    lines += ["", "CPU minutes training = teacher states and transcripts of the pool sentences + "
              "stage 1 + stage 2 (this process, every thread); the WER checks are not counted."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="whisper-tiny.en")
    p.add_argument("--kind", default="transformer")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--pool", type=int, default=200, help="pool sentences (seeded subset; 0: all 600)")
    p.add_argument("--eval-clips", type=int, default=60)
    p.add_argument("--epochs", type=int, default=10, help="stage 1 epochs")
    p.add_argument("--task-epochs", type=int, default=3, help="stage 2 epochs")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--task-lr", type=float, default=3e-4)
    p.add_argument("--window", type=float, default=10.0, help="training window (s)")
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--max-minutes", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--merge", action="store_true")
    p.add_argument("--label", default="", help="names the row beside the model (several budgets)")
    p.add_argument("--work", default=str(default_cache_dir() / "bench-mimic-asr"))
    p.add_argument("--table-only", action="store_true", help="rewrite the .md from the .json")
    a = p.parse_args(argv)
    out = benchlib.RESULTS / f"{NAME}.json"
    if a.table_only:
        benchlib.rewrite_table(NAME, markdown)
        return 0
    benchlib.set_threads(a.threads)
    cfg = MimicConfig(task="asr", kind=a.kind, hidden=a.hidden, positions=True, max_clips=a.pool,
                      eval_clips=a.eval_clips, window=a.window, task_epochs=a.task_epochs,
                      task_lr=a.task_lr,
                      train=TrainConfig(epochs=a.epochs, lr=a.lr, batch_size=a.batch_size,
                                        patience=a.patience, max_minutes=a.max_minutes))
    command = "python bench/mimic_asr.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    doc = {"command": command, "machine": benchlib.machine(), "inputs": {**vars(a), "config": cfg},
           "rows": []}
    for m in a.models.split(","):
        name = f"{m} ({a.label})" if a.label else m
        res = run_asr(m, "synth-sentences", Path(a.work) / name.replace(" ", "_"), cfg, force=True)
        row = row_of(name, res)
        row.update(mimic=f"{cfg.kind} × {cfg.layers}, z={cfg.hidden}, positions", command=command)
        # --merge: the rows of other models as the file holds them now (a run beside this one
        # may have written since this one started)
        kept = json.loads(out.read_text())["rows"] if a.merge and out.is_file() else doc["rows"]
        doc["rows"] = [r for r in kept if r["model"] != name] + [row]
        benchlib.write_results(NAME, doc, markdown(doc))
        print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
