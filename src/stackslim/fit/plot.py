"""DIR/pareto.png: test accuracy (--task asr: eval WER against the references, in %) against
encoder MB and against latency, one marker per method and precision, the budget lines, the
teacher and the winner (matplotlib Agg, written atomically)."""
from __future__ import annotations

import io
import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..results import write_atomic

MARKERS = {"prune": "o", "share": "s", "mimic": "^"}


def y_axis(result) -> tuple[str, float, str]:
    """(row key, scale, label) of the y axis: eval WER (%) for --task asr, else test accuracy."""
    if result.task.get("task") == "asr":
        return "eval_wer", 100.0, "eval WER (%), lower is better"
    return "accuracy", 1.0, "test accuracy"


def plot_pareto(result, path: str | os.PathLike) -> Path:
    """Two panels (bytes, latency) of every trained candidate of `result` (a FitResult)."""
    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    rows = [r for r in result.candidates if r.get("trained")]
    teacher = result.teacher
    y, yscale, ylabel = y_axis(result)
    for ax, key, unit, scale, budget in (
            (axes[0], "written_bytes", "encoder MB (stored weights)", 1e-6, result.budget["max_mb"]),
            (axes[1], "measured_ms", "ms per 1 s clip (CPU, batch 1)", 1.0, result.budget["max_ms"])):
        for r in rows:
            ax.scatter(r[key] * scale, r[y] * yscale, marker=MARKERS[r["method"]],
                       facecolors="none" if r["precision"] == "int8" else None,
                       edgecolors="C0" if r["precision"] == "int8" else None,
                       color=None if r["precision"] == "int8" else "C1", s=36)
        t = teacher["bytes"] * 1e-6 if key == "written_bytes" else teacher["ms"]
        ax.scatter([t], [teacher[y] * yscale], marker="*", s=140, color="k", label="teacher")
        if result.winner is not None:
            w = result.winner
            ax.scatter([w[key] * scale], [w[y] * yscale], s=260, facecolors="none", edgecolors="r",
                       label=f"winner: {w['name']}")
        if budget:
            ax.axvline(budget, color="r", ls="--", lw=1, label="budget")
        ax.set_xlabel(unit)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for m, mk in MARKERS.items():
        if not any(r["method"] == m for r in rows):
            continue  # e.g. no mimic candidate for --task asr
        axes[0].scatter([], [], marker=mk, color="C1", label=f"{m} float32")
        axes[0].scatter([], [], marker=mk, facecolors="none", edgecolors="C0", label=f"{m} int8")
    axes[0].legend(fontsize=7, loc="best")
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{result.model} on {result.task.get('data')}: candidates of stackslim fit")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return write_atomic(path, buf.getvalue())
