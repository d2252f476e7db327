"""One training loop shared by heads, mimic and share."""
from .loop import TrainConfig, TrainLog, train

__all__ = ["TrainConfig", "TrainLog", "train"]
