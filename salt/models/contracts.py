"""What SaltModel expects of the blocks it is given: the encoder and backbone contracts.

Sizes speak one vocabulary on built objects: ``embed_dim`` is the width a block takes,
``output_size`` the width it gives. Config arguments keep their names (``embed_dim``,
``out_dim``); salt derives the sizes before anything is built, from the same arguments
(:func:`encoder_output_size`, and each backbone's ``config_sizes``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

from torch import Tensor

from salt.data.batch import Inputs, PadMasks


class BackboneSizes(NamedTuple):
    """The widths a backbone gives: the jet representation and each constituent (None when
    it returns no per-constituent outputs, as the flat networks)."""

    jet: int
    constituent: int | None


@runtime_checkable
class Encoder(Protocol):
    """A sequence encoder over all constituents together: ``(B, L, embed_dim)`` and the pad
    mask in, ``(B, L [+ registers], output_size)`` out (registers come after the
    constituents); ``attn_bias`` carries edge features when the model has them."""

    embed_dim: int
    output_size: int

    def __call__(
        self, x: Tensor, pad_mask: Tensor | None = None, attn_bias: Tensor | None = None
    ) -> Tensor: ...


@runtime_checkable
class MultiStreamEncoder(Protocol):
    """An encoder that keeps one stream per constituent type (cross-attending between
    them): ``{type: (B, L_type, embed_dim)}`` in, ``{type: (B, L_type, output_size)}`` out."""

    input_names: list[str]
    embed_dim: int
    output_size: int

    def __call__(self, x: Inputs, pad_masks: PadMasks | None = None) -> dict[str, Tensor]: ...


@runtime_checkable
class Backbone(Protocol):
    """A complete network from the inputs to the jet representation, used instead of init
    nets, encoder and pooling: returns ``(jet (B, output_size), {type: (B, L, D)})`` with
    ``D = constituent_size``. ``config_sizes`` gives both widths from the config arguments, so
    salt can size the task heads before building anything."""

    output_size: int
    constituent_size: int | None

    @classmethod
    def config_sizes(cls, args: Mapping[str, Any]) -> BackboneSizes: ...

    def __call__(
        self, inputs: Inputs, pad_masks: PadMasks, raw_inputs: Inputs
    ) -> tuple[Tensor, dict[str, Tensor]]: ...


def encoder_output_size(args: Mapping[str, Any]) -> int:
    """The width of the encoded constituents from an encoder's config arguments: every
    encoder takes ``embed_dim`` and projects to ``out_dim`` when one is given."""
    out_dim = args.get("out_dim")
    return int(out_dim if out_dim is not None else args["embed_dim"])


def backbone_class(class_path: str) -> type:
    """The class a backbone's ``class_path`` names (already checked by the parser)."""
    module_name, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module_name), name)  # type: ignore[no-any-return]


def backbone_sizes(class_path: str, args: Mapping[str, Any], where: str) -> BackboneSizes:
    """The sizes of the backbone ``class_path`` configured with ``args``; fails naming
    ``where`` when the class does not follow the :class:`Backbone` contract."""
    cls = backbone_class(class_path)
    config_sizes = getattr(cls, "config_sizes", None)
    if config_sizes is None:
        raise ValueError(
            f"{where}: {cls.__name__} has no config_sizes(args) classmethod, so salt cannot size "
            "the task heads (see salt.models.contracts.Backbone)"
        )
    return config_sizes(args)  # type: ignore[no-any-return]


def check_encoder(encoder: object, embed_dim: int | None, where: str) -> bool:
    """Check ``encoder`` against the encoder contracts; True when it keeps one stream per
    constituent type. ``embed_dim`` is the init nets' width when there are init nets."""
    if not isinstance(encoder, Encoder | MultiStreamEncoder):
        raise TypeError(
            f"{where}: {type(encoder).__name__} has no int embed_dim and output_size "
            "(see salt.models.contracts.Encoder)"
        )
    if embed_dim is not None and encoder.embed_dim != embed_dim:
        raise ValueError(
            f"{where}.embed_dim={encoder.embed_dim} but the init nets output {embed_dim}"
        )
    return isinstance(encoder, MultiStreamEncoder)


def check_backbone(backbone: object, where: str) -> None:
    """Check ``backbone`` against the :class:`Backbone` contract."""
    if not isinstance(backbone, Backbone):
        raise TypeError(
            f"{where}: {type(backbone).__name__} has no output_size, constituent_size and "
            "config_sizes (see salt.models.contracts.Backbone)"
        )


__all__ = [
    "Backbone",
    "BackboneSizes",
    "Encoder",
    "MultiStreamEncoder",
    "backbone_sizes",
    "check_backbone",
    "check_encoder",
    "encoder_output_size",
]
