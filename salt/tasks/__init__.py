"""Task heads: what the network predicts and how each prediction is scored."""

from salt.tasks.base import TaskBase
from salt.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask", "TaskBase"]
