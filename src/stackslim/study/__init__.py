"""The main job: every method on one model and data set, compared side by side, with an HTML
report.

    from stackslim.study import StudyConfig, run
    result = run("whisper-base", "synth-commands", "runs/study", StudyConfig(quick=True))

Command: ``stackslim study [MODEL] [DATA] --out DIR [--quick]``.
"""
from .config import StudyConfig, StudyError
from .pipeline import DEFAULT_DATA, DEFAULT_MODEL, StudyResult, run

__all__ = ["DEFAULT_DATA", "DEFAULT_MODEL", "StudyConfig", "StudyError", "StudyResult", "run"]
