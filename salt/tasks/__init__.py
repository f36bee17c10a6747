"""Task heads: what the network predicts and how each prediction is scored."""

from salt.tasks.base import TaskBase
from salt.tasks.classification import ClassificationTask, jet_classifications, main_task
from salt.tasks.regression import GaussianRegressionTask, RegressionTask
from salt.tasks.vertexing import VertexingTask

__all__ = [
    "ClassificationTask",
    "GaussianRegressionTask",
    "RegressionTask",
    "TaskBase",
    "VertexingTask",
    "jet_classifications",
    "main_task",
]
