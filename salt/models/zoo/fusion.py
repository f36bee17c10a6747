"""Fuse a constituent (jagged) backbone with a jet-level (flat) one.

The jagged network sees the constituents, the flat one the jet features; fusing their jet
representations lets one model use both without hand-attaching jet features to every
constituent. Both children are built here, from YAML ``class_path``/``init_args`` without
``variables``/``global_object``, which the fusion passes on (salt fills them only on the
top-level backbone).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol, cast

import torch
from torch import Tensor, nn

from salt.models.attention import MultiheadAttention, ScaledDotProductAttention
from salt.models.contracts import Backbone, BackboneSizes, backbone_sizes, check_backbone
from salt.models.zoo.flat import require_variables

FusionMode = Literal["add", "cat", "learn", "gate", "attn"]


class BackboneFactory(Protocol):
    """A backbone class with its other arguments bound: called with salt's input description.

    In YAML it is written like any backbone (``class_path`` + ``init_args``) but without
    ``variables`` and ``global_object``.
    """

    def __call__(self, variables: dict[str, list[str]] | None, global_object: str) -> nn.Module:
        """Build the backbone for these inputs."""
        ...


def _build(
    child: BackboneFactory | nn.Module,
    name: str,
    variables: dict[str, list[str]],
    global_object: str,
) -> tuple[nn.Module, int]:
    """Build a child from its factory (a ready module, built in Python, is used as it is).

    Returns the module and its output width.
    """
    if isinstance(child, nn.Module):
        module = child
    else:
        module = child(variables=variables, global_object=global_object)
    check_backbone(module, f"FusionBackbone.{name}")
    return module, cast(Backbone, module).output_size


class FusionBackbone(nn.Module):
    """Combine a jagged and a flat backbone's jet representations.

    Modes (``j``, ``f``: the jagged and flat representations, each first projected to
    ``out_dim`` by a Linear when their width differs):

    - ``add``: ``j + f``.
    - ``cat``: ``Linear([j, f])`` (no projections needed).
    - ``learn``: ``a f + (1 - a) j`` with one learned ``a = sigmoid(w)`` in (0, 1), starting 0.5.
    - ``gate``: as ``learn`` but ``a = sigmoid(Linear([f, j]))`` per feature and per jet.
    - ``attn``: ``j + MHA(query j, keys/values [f, j])``: the jagged representation decides,
      jet by jet, how much of the flat one to take. With the flat token alone the softmax
      weight would always be 1, so the jagged token is offered as the alternative.

    Per-constituent outputs are those of the jagged child, with its width.

    Args:
        jagged: the constituent backbone (e.g. ``DeepSets``, ``JaggedTransformer``).
        flat: the jet-level backbone (e.g. ``MLP``, ``EventTransformer``).
        mode: ``add``, ``cat``, ``learn``, ``gate`` or ``attn``.
        out_dim: width of the fused jet representation.
        variables: ``{input type: [variables]}``, filled in by salt, passed to both children.
        global_object: the jet input type, filled in by salt, passed to both children.
        num_heads: heads of the ``attn`` mode.
        head_dim: width per head of the ``attn`` mode (default ``out_dim // num_heads``).
        attn_dropout: attention-weight dropout of the ``attn`` mode.
    """

    @classmethod
    def config_sizes(cls, args: Mapping[str, Any]) -> BackboneSizes:
        """The fused jet (``out_dim``) and the jagged child's constituents."""
        jagged = args["jagged"]
        child = backbone_sizes(
            jagged["class_path"], jagged.get("init_args") or {}, "FusionBackbone.jagged"
        )
        return BackboneSizes(int(args["out_dim"]), child.constituent)

    def __init__(
        self,
        jagged: BackboneFactory,
        flat: BackboneFactory,
        mode: FusionMode = "cat",
        out_dim: int = 64,
        variables: dict[str, list[str]] | None = None,
        global_object: str = "jets",
        num_heads: int = 4,
        head_dim: int | None = None,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        variables = require_variables(variables, global_object, "FusionBackbone")
        if mode not in ("add", "cat", "learn", "gate", "attn"):
            raise ValueError(
                f"FusionBackbone.mode: expected add, cat, learn, gate or attn, got {mode!r}"
            )
        self.mode = mode
        self.jagged, j_dim = _build(jagged, "jagged", variables, global_object)
        self.output_size: int = out_dim
        self.constituent_size: int | None = cast(Backbone, self.jagged).constituent_size
        self.flat, f_dim = _build(flat, "flat", variables, global_object)
        self.cat: nn.Linear | None = None
        self.project_j: nn.Module = nn.Identity()
        self.project_f: nn.Module = nn.Identity()
        if mode == "cat":
            self.cat = nn.Linear(j_dim + f_dim, out_dim)
        else:
            if j_dim != out_dim:
                self.project_j = nn.Linear(j_dim, out_dim)
            if f_dim != out_dim:
                self.project_f = nn.Linear(f_dim, out_dim)
        self.alpha = nn.Parameter(torch.zeros(1)) if mode == "learn" else None
        self.gate = nn.Linear(2 * out_dim, out_dim) if mode == "gate" else None
        self.attn: MultiheadAttention | None = None
        if mode == "attn":
            try:
                self.attn = MultiheadAttention(
                    out_dim, num_heads, head_dim, attention=ScaledDotProductAttention(attn_dropout)
                )
            except ValueError as err:
                raise ValueError(f"FusionBackbone (mode attn): {err}") from err

    def fuse(self, j: Tensor, f: Tensor) -> Tensor:
        """Combine the jagged (B, J) and flat (B, F) representations to (B, out_dim)."""
        if self.cat is not None:
            return self.cat(torch.cat([j, f], dim=-1))
        j, f = self.project_j(j), self.project_f(f)
        if self.alpha is not None:
            a = torch.sigmoid(self.alpha)
            return a * f + (1 - a) * j
        if self.gate is not None:
            g = torch.sigmoid(self.gate(torch.cat([f, j], dim=-1)))
            return g * f + (1 - g) * j
        if self.attn is not None:
            query = j.unsqueeze(1)
            return j + self.attn(query, torch.stack([f, j], dim=1)).squeeze(1)
        return j + f

    def forward(
        self,
        inputs: dict[str, Tensor],
        pad_masks: dict[str, Tensor],
        raw_inputs: dict[str, Tensor],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        j, constituents = self.jagged(inputs, pad_masks, raw_inputs)
        f, _ = self.flat(inputs, pad_masks, raw_inputs)
        return self.fuse(j, f), constituents


__all__ = ["BackboneFactory", "FusionBackbone"]
