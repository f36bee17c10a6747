"""Task heads: what the network predicts and how each prediction is scored."""

import salt.models  # noqa: F401  (tasks build on model blocks; import them first)
from salt.tasks.base import TaskBase
from salt.tasks.classification import ClassificationTask
from salt.tasks.regression import GaussianRegressionTask, RegressionTask
from salt.tasks.vertexing import VertexingTask

__all__ = [
    "ClassificationTask",
    "GaussianRegressionTask",
    "RegressionTask",
    "TaskBase",
    "VertexingTask",
]
