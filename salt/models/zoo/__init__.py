"""Complete backbones from the literature (the model zoo): ``salt.models.zoo.<Class>``."""

from salt.models.zoo.embeddings import EmbeddingConfig as EmbeddingConfig
from salt.models.zoo.flat import MLP as MLP
from salt.models.zoo.flat import CondOnlyMLP as CondOnlyMLP
from salt.models.zoo.flat import EventTransformer as EventTransformer
from salt.models.zoo.flat import ResNet as ResNet
from salt.models.zoo.fusion import FusionBackbone as FusionBackbone
from salt.models.zoo.jagged import DeepSets as DeepSets
from salt.models.zoo.jagged import JaggedTransformer as JaggedTransformer
from salt.models.zoo.part import ParticleTransformer as ParticleTransformer
from salt.models.zoo.pet import PET2 as PET2
from salt.models.zoo.vit import PointGlobalMixedViT as PointGlobalMixedViT
