"""Typed config dicts for nested building blocks.

Blocks that build sub-blocks (one attention per encoder layer, an MLP per input type) take these
dicts instead of ready modules, so the parent can derive the sizes; being TypedDicts, they are
still validated key by key by jsonargparse.
"""

from __future__ import annotations

from typing import TypedDict

from salt.models.attention import AttentionBase


class DenseConfig(TypedDict, total=False):
    """Arguments of :class:`salt.models.dense.Dense`; sizes are usually filled by the parent."""

    input_size: int
    output_size: int
    hidden_layers: list[int]
    activation: str
    final_activation: str | None
    norm_layer: str | None
    dropout: float
    context_size: int
    muP: bool
    gated: bool


class MHAConfig(TypedDict, total=False):
    """Arguments of :class:`salt.models.attention.MultiheadAttention` except the sizes.

    ``attention`` is written in YAML as ``{class_path: ..., init_args: ...}``; the parent copies the
    built instance for each layer so that no parameters are shared.
    """

    num_heads: int
    head_dim: int | None
    attention: AttentionBase
    out_proj: bool
    dropout: float


__all__ = ["DenseConfig", "MHAConfig"]
