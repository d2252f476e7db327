"""The side-by-side table of a finished `stackslim study`, as markdown (for the README and
docs/results.md), from its results.json: one row per variant of the compare step, PyTorch
float beside onnxruntime int8, and the minutes each step took.

    python bench/study_table.py runs/study/results.json            # prints the tables
    python bench/study_table.py runs/study/results.json --copy bench/results/study-default-whisper-base

Columns: stack parameters / the teacher's; encoder bytes (float); CPU ms per clip at batch 1
and the speed-up against the teacher (the study's timing: `latency_clips` keyword clips, the
study's threads); test accuracy and capacity (accuracy / the teacher's); for Whisper, WER of
the original decoder (eval clips of synth-sentences, 30 s window) and BLEU into English over
every language of the translation step; then the int8 ONNX file's bytes, batch-1 ms and test
accuracy. `--copy DIR` also copies results.json (and wer.json when present) into DIR, so the
numbers the README quotes have their source in the repository.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _num(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def variants_table(r: dict) -> str:
    """Markdown table of `r["compare"]["rows"]` (module docstring)."""
    rows = r["compare"]["rows"]
    whisper = any(row.get("wer") is not None for row in rows)
    bleu = any(row.get("bleu") is not None for row in rows)
    head = ["variant", "stack size", "encoder MB", "CPU ms (batch 1)", "speed-up", "accuracy",
            "capacity"] + (["WER"] if whisper else []) + (["BLEU → en"] if bleu else []) + [
            "int8 MB", "int8 ms", "int8 accuracy"]
    out = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row in rows:
        q = row.get("int8") or {}
        cells = [row["variant"], _pct(row.get("stack_ratio")), _num(row["bytes"] / 1e6, ".1f"),
                 _num(row.get("batch1_ms"), ".1f"), _num(row.get("speedup"), ".1f") + "×",
                 _pct(row.get("accuracy")), _pct(row.get("capacity"))]
        if whisper:
            wer = row.get("wer")
            cell = _pct(wer, 0) if (wer or 0) >= 1 else _pct(wer)
            ci = row.get("wer_ci95")  # bootstrap 95% over clips; results before it have none
            cells.append(cell + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""))
        if bleu:
            cells.append(_num(row.get("bleu"), ".1f"))
        cells += [_num(q["bytes"] / 1e6, ".1f") if q.get("bytes") else "–", _num(q.get("batch1_ms"), ".1f"),
                  _pct(q.get("accuracy"))]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def steps_table(r: dict) -> str:
    """Markdown table of each step's minutes (every step records its own seconds; a resumed
    study keeps the seconds of the run that computed the step)."""
    out = ["| step | minutes |", "|---|---:|"]
    total = 0.0
    for part in ("analyze", "prune", "mimic", "share", "wer", "translate", "compare"):
        rec = r.get(part) or {}
        steps = ([(f"{part} {k}", v.get("seconds")) for k, v in rec.items() if isinstance(v, dict)]
                 if part in ("mimic", "share") else [(part, rec.get("seconds"))])
        for name, s in steps:
            if s is not None:
                total += s
                out.append(f"| {name} | {s / 60:.1f} |")
    out.append(f"| **all steps** | **{total / 60:.1f}** |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--copy", type=Path, help="copy results.json (and wer.json) into this folder")
    a = ap.parse_args()
    r = json.loads(a.results.read_text())
    print(variants_table(r), "", steps_table(r), sep="\n")
    if a.copy:
        a.copy.mkdir(parents=True, exist_ok=True)
        for name in ("results.json", "wer.json"):
            src = a.results.parent / name
            if src.is_file():
                shutil.copyfile(src, a.copy / name)


if __name__ == "__main__":
    main()
