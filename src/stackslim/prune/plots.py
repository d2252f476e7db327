"""Pruning curves: test accuracy against the number of deleted layers, one line per strategy
(matplotlib, Agg canvas; written atomically)."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..results import write_atomic

PAPER_STYLE = "--"  # the paper's strategies dashed, ours solid


def plot_curves(panels: Sequence[tuple[str, dict[str, list[float]]]], teacher_accuracy: float,
                threshold: float, chance: float | None, path: str | os.PathLike, title: str = "",
                paper: Sequence[str] = (), *, ylabel: str = "test accuracy",
                lines: Sequence[tuple[float, str]] | None = None,
                ylim: tuple[float, float] | None = (0, 1.02)) -> Path:
    """One panel per (title, {strategy: test accuracy at k = 0..m deleted}) and write `path`.

    Each panel shows the threshold line (threshold × teacher accuracy) and chance level (the
    most frequent test class; None: no line). `lines` instead gives each panel its own
    (value, label) line (e.g. WER: teacher + margin), `ylabel` and `ylim` (None: automatic)
    the axis.
    """
    markers = "osD^vP*X"
    fig = Figure(figsize=(5.2 * len(panels), 4.2), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for p, (ax, (name, curves)) in enumerate(zip(axes, panels)):
        for i, (strategy, acc) in enumerate(curves.items()):
            ax.plot(range(len(acc)), acc, PAPER_STYLE if strategy in paper else "-",
                    marker=markers[i % len(markers)], markersize=4, alpha=0.85, label=strategy)
        value, label = lines[p] if lines else (threshold * teacher_accuracy, f"{threshold:.0%} of teacher")
        ax.axhline(value, color="black", lw=0.8, ls=":", label=label)
        if chance is not None:
            ax.axhline(chance, color="grey", lw=0.8, ls="-.", label="chance")
        ax.set_title(name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("deleted layers")
        ax.set_ylabel(ylabel)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", framealpha=0.8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png")
    return write_atomic(path, buf.getvalue())
