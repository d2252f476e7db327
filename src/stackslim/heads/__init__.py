"""Task heads, evaluation and tasks (classes, splits, cached states)."""
from .head import ClassifierHead
from .task import Task, prepare_task
from .teacher import accuracy, fit_head, predict

__all__ = ["ClassifierHead", "Task", "prepare_task", "accuracy", "fit_head", "predict"]
