"""Network building blocks, addressed from YAML as ``salt.models.<Class>``.

The blocks are imported here; :class:`SaltModel` and the task classes (``salt.models.
ClassificationTask`` in configs) only when first asked for, because the tasks are built from
these blocks: importing a block never imports the tasks, so the two packages form no cycle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from salt.models.attention import MultiheadAttention, ScaledDotProductAttention
from salt.models.cross_attention import CrossAttentionPooling, TransformerCrossAttentionEncoder
from salt.models.dense import Dense
from salt.models.edge_updates import EdgeTransformerEncoder
from salt.models.edges import EdgeFeatures
from salt.models.gatv2 import GATv2Attention
from salt.models.initnet import InitNet
from salt.models.pooling import GlobalAttentionPooling
from salt.models.registers import Transformer, TransformerV2
from salt.models.transformer import TransformerEncoder

if TYPE_CHECKING:
    from salt.models.saltmodel import SaltModel
    from salt.tasks.classification import ClassificationTask
    from salt.tasks.regression import GaussianRegressionTask, RegressionTask
    from salt.tasks.vertexing import VertexingTask

_ON_DEMAND = {
    "SaltModel": "salt.models.saltmodel",
    "ClassificationTask": "salt.tasks.classification",
    "GaussianRegressionTask": "salt.tasks.regression",
    "RegressionTask": "salt.tasks.regression",
    "VertexingTask": "salt.tasks.vertexing",
}


def __getattr__(name: str) -> Any:
    """``salt.models.SaltModel`` and the task classes, imported on first use."""
    module = _ON_DEMAND.get(name)
    if module is None:
        raise AttributeError(f"module 'salt.models' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ClassificationTask",
    "CrossAttentionPooling",
    "Dense",
    "EdgeFeatures",
    "EdgeTransformerEncoder",
    "GATv2Attention",
    "GaussianRegressionTask",
    "GlobalAttentionPooling",
    "InitNet",
    "MultiheadAttention",
    "RegressionTask",
    "SaltModel",
    "ScaledDotProductAttention",
    "Transformer",
    "TransformerCrossAttentionEncoder",
    "TransformerEncoder",
    "TransformerV2",
    "VertexingTask",
]
