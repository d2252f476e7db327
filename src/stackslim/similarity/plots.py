"""Heatmap of a layer-similarity matrix with its blocks (matplotlib, Agg backend)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
# The Agg canvas directly, not pyplot: headless, and no global backend switch for the caller.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..results import write_atomic
from .blocks import Blocks
from .config import SimilarityError

ANNOTATE_MAX_STATES = 14  # annotate cells for L <= 13


def plot_heatmap(matrix: np.ndarray | torch.Tensor, title: str, blocks: Blocks | None = None, *,
                 path: str | os.PathLike, vmin: float | None = 0.0, vmax: float | None = 1.0) -> Path:
    """Draw an (L+1, L+1) similarity matrix and write it atomically to `path`.

    Cells are annotated with their value when L <= 13; block boundaries (from `find_blocks`,
    between the last state of one block and the first of the next, and before state 1) are
    drawn as lines; a colorbar is added; both axes are labelled "hidden state".

    Args:
        matrix: (L+1, L+1) similarities over hidden states 0..L.
        title: figure title. blocks: optional Blocks to draw.
        path: output file (format from its suffix, png by default); written to a temporary
            name in the same folder and moved into place with os.replace.
        vmin, vmax: colour range (None: from the data; mknn and negative unbiased CKA may need it).

    Returns:
        The path written.
    """
    M = np.asarray(matrix.detach().cpu() if isinstance(matrix, torch.Tensor) else matrix, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise SimilarityError(f"expected a square matrix, got shape {M.shape}")
    S = M.shape[0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = max(4.0, 0.45 * S + 2.0)
    fig = Figure(figsize=(size + 1.0, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(M, cmap="viridis", vmin=vmin, vmax=vmax, origin="upper", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xlabel("hidden state")
    ax.set_ylabel("hidden state")
    ax.set_title(title)
    step = 1 if S <= 26 else max(1, S // 13)
    ticks = np.arange(0, S, step)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    if S <= ANNOTATE_MAX_STATES:
        lo, hi = im.get_clim()
        for i in range(S):
            for j in range(S):
                light = (M[i, j] - lo) < 0.6 * (hi - lo)  # dark cell: white text
                ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if light else "black")
    if blocks is not None:
        for e in [0] + blocks.boundaries:  # a line after state e
            ax.axhline(e + 0.5, color="red", lw=1.5)
            ax.axvline(e + 0.5, color="red", lw=1.5)
    fig.tight_layout()
    fmt = path.suffix.lstrip(".").lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=120)
    return write_atomic(path, buf.getvalue())  # a full disk: OutputError naming the file
