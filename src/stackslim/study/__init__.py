"""The main job: every capability on one model and data set, with an HTML report."""
from .config import StudyConfig
from .run import study

__all__ = ["StudyConfig", "study"]
