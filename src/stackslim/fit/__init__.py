"""`stackslim fit`: the most accurate composition of pruning, sharing, mimicking and int8
that fits a memory (and latency) budget.

    from stackslim.fit import FitConfig, run
    result = run("whisper-base", "synth-commands", "runs/fit20", FitConfig(max_mb=20, minutes=30))
"""
from .config import FitConfig, FitError
from .pipeline import FitResult, run

__all__ = ["FitConfig", "FitError", "FitResult", "run"]
