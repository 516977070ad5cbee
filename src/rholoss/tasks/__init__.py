"""Tasks: what a kind of problem means for the core (per-example loss, metric and its direction,
class logits or not). One file per task; pick one with ``task=<name>`` (rholoss/configs/task/)."""

from rholoss.tasks.base import Task, TaskMismatchError
from rholoss.tasks.classification import Classification
from rholoss.tasks.language_modeling import LanguageModeling
from rholoss.tasks.regression import Regression

__all__ = ["Classification", "LanguageModeling", "Regression", "Task", "TaskMismatchError", "as_task"]


def as_task(task: Task | int) -> Task:
    """A task, from a task or from a class count (shorthand for ``Classification(num_classes)``)."""
    return Classification(task) if isinstance(task, int) else task
