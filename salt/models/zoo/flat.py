"""Jet-level (flat) backbones: MLP, pre-activation ResNet, FT-Transformer and CondOnlyMLP.

They see only per-jet features: the global object's variables plus ``GLOBAL`` and ``PARAMETERS``
when the config has them. On their own they are baselines (how much do the jet features alone
tell?); combined with a constituent backbone by :class:`~salt.models.zoo.fusion.FusionBackbone`
they add the jet-level view to it. Every backbone returns ``(jet representation (B, out_dim),
{})``: there are no per-constituent outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from salt.models.attention import MultiheadAttention, ScaledDotProductAttention
from salt.models.contracts import BackboneSizes
from salt.models.dense import make_activation
from salt.models.zoo.embeddings import (
    EmbeddingConfig,
    Feature,
    FlatEmbedding,
    check_categorical,
)
from salt.models.zoo.inputs import SPECIAL_GROUPS, require_variables


def mlp_layers(
    in_size: int, widths: list[int], activation: str, batchnorm: bool, dropout: float, owner: str
) -> tuple[list[nn.Module], int]:
    """Linear -> (BatchNorm) -> activation -> (Dropout) per width; returns layers, out width."""
    if any(w <= 0 for w in widths):
        raise ValueError(f"{owner}: layer widths must be positive, got {widths}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{owner}.dropout: expected a probability in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    for width in widths:
        layers.append(nn.Linear(in_size, width))
        if batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(make_activation(activation, f"{owner}.activation"))
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_size = width
    return layers, in_size


class FlatInputs(nn.Module):
    """Gather the jet-level features (global object, GLOBAL, PARAMETERS) and embed them.

    Args:
        variables: salt's ``{input type: [variables]}``.
        global_object: the jet input type.
        embed_dim: token width when the embedding config gives none.
        embeddings: see :class:`~salt.models.zoo.embeddings.EmbeddingConfig`.
        disable: pass the normalised features through unchanged.
        owner: the backbone's name, for error messages.
    """

    def __init__(
        self,
        variables: dict[str, list[str]],
        global_object: str,
        embed_dim: int,
        embeddings: EmbeddingConfig | None,
        disable: bool,
        owner: str,
    ) -> None:
        super().__init__()
        if not variables.get(global_object):
            raise ValueError(f"{owner}.variables: no variables for the jets ('{global_object}')")
        self.groups = [global_object, *(g for g in SPECIAL_GROUPS if variables.get(g))]
        self.features: list[Feature] = [(g, v) for g in self.groups for v in variables[g]]
        check_categorical(embeddings or {}, variables, f"{owner}.embeddings")
        self.embedding = FlatEmbedding(self.features, embed_dim, embeddings, disable)
        self.output_size = self.embedding.output_size

    def forward(self, inputs: dict[str, Tensor], raw_inputs: dict[str, Tensor]) -> Tensor:
        """(B, W) embedded features, or (B, F, E) with ``reduction: none``."""
        x = torch.cat([inputs[g] for g in self.groups], dim=-1)
        raw = torch.cat([raw_inputs[g] for g in self.groups], dim=-1)
        return self.embedding(x, raw)


class MLP(nn.Module):
    """A feed-forward network on the jet features: the simplest flat baseline.

    Args:
        variables: ``{input type: [variables]}``, filled in by salt.
        global_object: the jet input type, filled in by salt.
        out_dim: width of the jet representation.
        num_layers: hidden layers.
        hidden_dim: width of every hidden layer (and the default token width).
        activation: ``torch.nn`` activation class name.
        final_activation: activation on the output, if any.
        batchnorm: batch normalisation after every hidden Linear.
        dropout: dropout after every hidden activation.
        embeddings: how features are embedded; see ``EmbeddingConfig``.
        disable_embeddings: feed the normalised features straight into the network.
    """

    @classmethod
    def config_sizes(cls, args: Mapping[str, Any]) -> BackboneSizes:
        """The jet representation (``out_dim``); no per-constituent outputs."""
        return BackboneSizes(int(args["out_dim"]), None)

    def __init__(
        self,
        variables: dict[str, list[str]] | None = None,
        global_object: str = "jets",
        out_dim: int = 64,
        num_layers: int = 3,
        hidden_dim: int = 128,
        activation: str = "ReLU",
        final_activation: str | None = None,
        batchnorm: bool = False,
        dropout: float = 0.0,
        embeddings: EmbeddingConfig | None = None,
        disable_embeddings: bool = False,
    ) -> None:
        super().__init__()
        variables = require_variables(variables, global_object, "MLP")
        self.output_size: int = out_dim
        self.constituent_size: int | None = None
        self.inputs = FlatInputs(
            variables, global_object, hidden_dim, embeddings, disable_embeddings, "MLP"
        )
        if self.inputs.embedding.reduction == "none" and not disable_embeddings:
            raise ValueError("MLP.embeddings.reduction: 'none' keeps tokens; use mean or reshape")
        layers, width = mlp_layers(
            self.inputs.output_size,
            [hidden_dim] * num_layers,
            activation,
            batchnorm,
            dropout,
            "MLP",
        )
        layers.append(nn.Linear(width, out_dim))
        if final_activation is not None:
            layers.append(make_activation(final_activation, "MLP.final_activation"))
        self.net = nn.Sequential(*layers)

    def forward(
        self,
        inputs: dict[str, Tensor],
        pad_masks: dict[str, Tensor],
        raw_inputs: dict[str, Tensor],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return self.net(self.inputs(inputs, raw_inputs)), {}


class ResNet(nn.Module):
    """Pre-activation residual MLP (He et al., arXiv 1603.05027) on the jet features.

    Each residual block is ``block_size`` x (norm -> activation -> dropout -> Linear) added to its
    input; normalising before each Linear keeps the residual path an identity, which lets deep
    stacks train as easily as shallow ones.

    Args:
        num_layers: hidden Linear layers in the blocks, a multiple of ``block_size``.
        block_size: layers per residual block.
        batchnorm: batch normalisation before every activation (otherwise none).
        Others as for :class:`MLP`.
    """

    @classmethod
    def config_sizes(cls, args: Mapping[str, Any]) -> BackboneSizes:
        """The jet representation (``out_dim``); no per-constituent outputs."""
        return BackboneSizes(int(args["out_dim"]), None)

    def __init__(
        self,
        variables: dict[str, list[str]] | None = None,
        global_object: str = "jets",
        out_dim: int = 64,
        num_layers: int = 4,
        hidden_dim: int = 128,
        block_size: int = 2,
        activation: str = "ReLU",
        final_activation: str | None = None,
        batchnorm: bool = True,
        dropout: float = 0.1,
        embeddings: EmbeddingConfig | None = None,
        disable_embeddings: bool = False,
    ) -> None:
        super().__init__()
        variables = require_variables(variables, global_object, "ResNet")
        if block_size <= 0 or num_layers <= 0 or num_layers % block_size:
            raise ValueError(
                f"ResNet: num_layers={num_layers} must be a positive multiple of "
                f"block_size={block_size}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ResNet.dropout: expected a probability in [0, 1), got {dropout}")
        self.output_size: int = out_dim
        self.constituent_size: int | None = None
        self.inputs = FlatInputs(
            variables, global_object, hidden_dim, embeddings, disable_embeddings, "ResNet"
        )
        if self.inputs.embedding.reduction == "none" and not disable_embeddings:
            raise ValueError("ResNet.embeddings.reduction: 'none' keeps tokens; use mean/reshape")
        self.stem = nn.Linear(self.inputs.output_size, hidden_dim)

        def pre_activation(width: int) -> list[nn.Module]:
            norm: list[nn.Module] = [nn.BatchNorm1d(width)] if batchnorm else []
            act = make_activation(activation, "ResNet.activation")
            return [*norm, act, *([nn.Dropout(dropout)] if dropout else [])]

        self.blocks = nn.ModuleList(
            nn.Sequential(
                *[
                    m
                    for _ in range(block_size)
                    for m in (*pre_activation(hidden_dim), nn.Linear(hidden_dim, hidden_dim))
                ]
            )
            for _ in range(num_layers // block_size)
        )
        head = [*pre_activation(hidden_dim), nn.Linear(hidden_dim, out_dim)]
        if final_activation is not None:
            head.append(make_activation(final_activation, "ResNet.final_activation"))
        self.head = nn.Sequential(*head)

    def forward(
        self,
        inputs: dict[str, Tensor],
        pad_masks: dict[str, Tensor],
        raw_inputs: dict[str, Tensor],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x = self.stem(self.inputs(inputs, raw_inputs))
        for block in self.blocks:
            x = x + block(x)
        return self.head(x), {}


class FeedForward(nn.Sequential):
    """Linear -> activation -> dropout -> Linear, mapping ``dim`` back to ``dim``."""

    def __init__(self, dim: int, mult: float, activation: str, dropout: float, owner: str):
        hidden = max(1, round(dim * mult))
        layers: list[nn.Module] = [
            nn.Linear(dim, hidden),
            make_activation(activation, f"{owner}.activation"),
        ]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(hidden, dim))
        super().__init__(*layers)


class AttentionBlock(nn.Module):
    """Pre-norm transformer block, ``x + MHA(LN(x))`` then ``x + FF(LN(x))``.

    FT-Transformer drops the first block's attention LayerNorm (its input is the freshly
    tokenised features, already on a common scale); both that and the first residual are
    switchable here.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        head_dim: int | None,
        attn_dropout: float,
        ff_hidden_mult: float,
        ff_dropout: float,
        activation: str,
        attn_norm: bool = True,
        attn_residual: bool = True,
        owner: str = "EventTransformer",
    ) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim) if attn_norm else nn.Identity()
        self.attn = MultiheadAttention(
            dim, num_heads, head_dim, attention=ScaledDotProductAttention(attn_dropout)
        )
        self.attn_residual = attn_residual
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_hidden_mult, activation, ff_dropout, owner)

    def forward(self, x: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        attended = self.attn(self.attn_norm(x), pad_mask=pad_mask)
        x = x + attended if self.attn_residual else attended
        return x + self.ff(self.ff_norm(x))


class EventTransformer(nn.Module):
    """FT-Transformer (Gorishniy et al., arXiv 2106.11959): attention between jet features.

    Every feature becomes a token (``reduction: none``), so attention can model interactions
    between features; a learned CLS token (or the mean of the tokens) is the jet
    representation, read out by LayerNorm -> activation -> Linear as in the paper.

    Args:
        embed_dim: token width.
        depth: transformer blocks.
        num_heads: attention heads.
        head_dim: width per head (default ``embed_dim // num_heads``).
        attn_dropout: dropout on the attention weights.
        ff_hidden_mult: feed-forward hidden width as a multiple of ``embed_dim``.
        ff_dropout: dropout in the feed-forward hidden layer.
        activation: feed-forward and read-out activation.
        use_cls_token: read out a CLS token; otherwise the mean of the feature tokens.
        remove_first_attn_residual: the first block's attention output replaces its input.
        remove_first_attn_layernorm: no LayerNorm before the first attention (as the paper).
        embeddings: feature embedding; ``reduction`` must be ``none`` (the default here).
        Others as for :class:`MLP`.
    """

    @classmethod
    def config_sizes(cls, args: Mapping[str, Any]) -> BackboneSizes:
        """The jet representation (``out_dim``); no per-constituent outputs."""
        return BackboneSizes(int(args["out_dim"]), None)

    def __init__(
        self,
        variables: dict[str, list[str]] | None = None,
        global_object: str = "jets",
        out_dim: int = 64,
        embed_dim: int = 32,
        depth: int = 3,
        num_heads: int = 4,
        head_dim: int | None = None,
        attn_dropout: float = 0.1,
        ff_hidden_mult: float = 2.0,
        ff_dropout: float = 0.1,
        activation: str = "GELU",
        use_cls_token: bool = True,
        remove_first_attn_residual: bool = False,
        remove_first_attn_layernorm: bool = True,
        embeddings: EmbeddingConfig | None = None,
    ) -> None:
        super().__init__()
        variables = require_variables(variables, global_object, "EventTransformer")
        config: EmbeddingConfig = {"reduction": "none", **(embeddings or {})}
        if config.get("reduction") != "none":
            raise ValueError(
                "EventTransformer.embeddings.reduction: the transformer needs one token per "
                f"feature, expected none, got {config.get('reduction')!r}"
            )
        if depth <= 0:
            raise ValueError(f"EventTransformer.depth: expected a positive int, got {depth}")
        self.output_size: int = out_dim
        self.constituent_size: int | None = None
        self.inputs = FlatInputs(
            variables, global_object, embed_dim, config, False, "EventTransformer"
        )
        width = config.get("embed_dim", embed_dim)
        self.cls = nn.Parameter(torch.randn(1, 1, width) * width**-0.5) if use_cls_token else None
        self.blocks = nn.ModuleList(
            AttentionBlock(
                width,
                num_heads,
                head_dim,
                attn_dropout,
                ff_hidden_mult,
                ff_dropout,
                activation,
                attn_norm=not (i == 0 and remove_first_attn_layernorm),
                attn_residual=not (i == 0 and remove_first_attn_residual),
            )
            for i in range(depth)
        )
        self.head = nn.Sequential(
            nn.LayerNorm(width),
            make_activation(activation, "EventTransformer.activation"),
            nn.Linear(width, out_dim),
        )

    def forward(
        self,
        inputs: dict[str, Tensor],
        pad_masks: dict[str, Tensor],
        raw_inputs: dict[str, Tensor],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x = self.inputs(inputs, raw_inputs)  # (B, F, E)
        if self.cls is not None:
            x = torch.cat([x, self.cls.expand(x.shape[0], -1, -1)], dim=1)
        for block in self.blocks:
            x = block(x)
        pooled = x[:, -1] if self.cls is not None else x.mean(dim=1)
        return self.head(pooled), {}


class CondOnlyMLP(nn.Module):
    """Residual MLP on the jet-level (conditioning) features only: a "what do the jet features
    alone give" baseline that ignores all constituents.

    ``h0 = Linear(c)``, ``h <- h + FF(LN(h))`` per block, output ``W2 act(W1 LN(h))``.
    With ``positive_output`` a softplus makes the representation positive. As a salt backbone
    the output is the representation that task heads read; for a positive regression target
    (an energy, a multiplicity) set ``final_activation: Softplus`` in the ``RegressionTask``'s
    ``dense_config`` (without a scaler that shifts the target) or regress its log
    (``scaler: {target: {op: log, ...}}``); ``positive_output`` with ``out_dim: 1`` reproduces
    the reference's positive single-output network when the head is a single Linear.

    Args:
        hidden_dim: width of the residual stream.
        num_blocks: residual blocks.
        ff_hidden_mult: hidden width of each block's feed-forward, as a multiple of hidden_dim.
        activation: activation of the blocks and output.
        dropout: dropout inside each block.
        positive_output: softplus on the output.
        embeddings: feature embedding; by default the features go in as they are
            (``disable_embeddings: true``), as in the reference.
        Others as for :class:`MLP`.
    """

    @classmethod
    def config_sizes(cls, args: Mapping[str, Any]) -> BackboneSizes:
        """The jet representation (``out_dim``); no per-constituent outputs."""
        return BackboneSizes(int(args["out_dim"]), None)

    def __init__(
        self,
        variables: dict[str, list[str]] | None = None,
        global_object: str = "jets",
        out_dim: int = 64,
        hidden_dim: int = 128,
        num_blocks: int = 3,
        ff_hidden_mult: float = 2.0,
        activation: str = "GELU",
        dropout: float = 0.0,
        positive_output: bool = False,
        embeddings: EmbeddingConfig | None = None,
        disable_embeddings: bool = True,
    ) -> None:
        super().__init__()
        variables = require_variables(variables, global_object, "CondOnlyMLP")
        if num_blocks < 0:
            raise ValueError(f"CondOnlyMLP.num_blocks: expected >= 0, got {num_blocks}")
        self.output_size: int = out_dim
        self.constituent_size: int | None = None
        self.inputs = FlatInputs(
            variables, global_object, hidden_dim, embeddings, disable_embeddings, "CondOnlyMLP"
        )
        if self.inputs.embedding.reduction == "none" and not disable_embeddings:
            raise ValueError("CondOnlyMLP.embeddings.reduction: use mean or reshape, not none")
        self.stem = nn.Linear(self.inputs.output_size, hidden_dim)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_dim) for _ in range(num_blocks))
        self.blocks = nn.ModuleList(
            FeedForward(hidden_dim, ff_hidden_mult, activation, dropout, "CondOnlyMLP")
            for _ in range(num_blocks)
        )
        head: list[nn.Module] = [
            nn.LayerNorm(hidden_dim),
            nn.Linear(hidden_dim, hidden_dim),
            make_activation(activation, "CondOnlyMLP.activation"),
            nn.Linear(hidden_dim, out_dim),
        ]
        if positive_output:
            head.append(nn.Softplus())
        self.head = nn.Sequential(*head)

    def forward(
        self,
        inputs: dict[str, Tensor],
        pad_masks: dict[str, Tensor],
        raw_inputs: dict[str, Tensor],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        h = self.stem(self.inputs(inputs, raw_inputs))
        for norm, block in zip(self.norms, self.blocks):
            h = h + block(norm(h))
        return self.head(h), {}


__all__ = [
    "MLP",
    "AttentionBlock",
    "CondOnlyMLP",
    "EventTransformer",
    "FeedForward",
    "FlatInputs",
    "ResNet",
    "mlp_layers",
    "require_variables",
]
