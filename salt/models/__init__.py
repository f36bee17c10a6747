"""Network building blocks, addressed from YAML as ``salt.models.<Class>``."""

from salt.models.attention import MultiheadAttention, ScaledDotProductAttention
from salt.models.cross_attention import CrossAttentionPooling, TransformerCrossAttentionEncoder
from salt.models.dense import Dense
from salt.models.edge_updates import EdgeTransformerEncoder
from salt.models.edges import EdgeFeatures
from salt.models.gatv2 import GATv2Attention
from salt.models.initnet import InitNet
from salt.models.pooling import GlobalAttentionPooling
from salt.models.registers import Transformer, TransformerV2
from salt.models.saltmodel import SaltModel
from salt.models.transformer import TransformerEncoder
from salt.tasks.classification import ClassificationTask
from salt.tasks.regression import GaussianRegressionTask, RegressionTask
from salt.tasks.vertexing import VertexingTask

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
