"""The one error type of stackslim.prune."""
from __future__ import annotations


class PruneError(ValueError):
    """Pruning inputs stackslim cannot use: an unknown strategy, a threshold outside (0, 1],
    a stack too short to prune, a folder that holds no pruned model (one-line message)."""
