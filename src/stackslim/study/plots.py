"""The study's trade-off figure: what each compressed variant keeps (capacity) against what it
saves (stack size, CPU time), one marker per variant (matplotlib, Agg canvas; written atomically)."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..results import write_atomic

STYLE = {"teacher": ("black", "*"), "pruned": ("tab:blue", "o"), "mimic": ("tab:orange", "s"),
         "shared": ("tab:green", "D")}


def _pct(x: float, _pos: int) -> str:
    return f"{100 * x:g}%"


def _times(x: float, _pos: int) -> str:
    return f"{x:g}×"


def plot_tradeoff(rows: Sequence[dict], path: str | os.PathLike, threshold: float = 0.95,
                  title: str = "") -> Path:
    """Two panels from the study's variant table (`compare` rows): capacity against the stack's
    size relative to the teacher's (log x), and capacity against the batch-1 speed-up (log x).

    Each row needs kind, variant, capacity, stack_ratio and speedup; the threshold line marks
    `threshold` capacity.
    """
    fig = Figure(figsize=(11, 4.4), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    panels = [("stack_ratio", "stack size, % of the teacher's (log)"), ("speedup", "speed-up at batch 1 (log)")]
    for ax, (key, label) in zip(axes, panels):
        seen = set()
        for r in rows:
            x, y = r.get(key), r.get("capacity")
            if x is None or y is None or x <= 0:
                continue
            color, marker = STYLE.get(r["kind"], ("grey", "x"))
            ax.scatter([x], [y], color=color, marker=marker, s=60 if r["kind"] == "teacher" else 36,
                       label=r["kind"] if r["kind"] not in seen else None, zorder=3)
            seen.add(r["kind"])
            short = r["variant"].split(": ", 1)[-1]
            ax.annotate(short, (x, y), fontsize=6.5, xytext=(4, 3), textcoords="offset points")
        ax.axhline(threshold, color="black", lw=0.8, ls=":", label=f"{threshold:.0%} capacity")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(_pct if key == "stack_ratio" else _times))
        ax.xaxis.set_minor_formatter(NullFormatter())  # log minor labels collide
        ax.set_xlabel(label)
        ax.set_ylabel("capacity (accuracy / teacher's)")
        ax.set_ylim(0, 1.1)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="best", framealpha=0.8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return write_atomic(path, buf.getvalue())
