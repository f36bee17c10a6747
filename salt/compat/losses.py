"""Losses whose class weights are written as plain lists in YAML.

torch's losses take their ``weight``/``pos_weight`` as tensors, which a YAML config cannot
express; these subclasses take lists and are otherwise the torch classes themselves, so tasks
treat them exactly like ``torch.nn.CrossEntropyLoss`` and ``torch.nn.BCEWithLogitsLoss``.
"""

from __future__ import annotations

import torch
from torch import nn


def _tensor(values: list[float] | None, argument: str) -> torch.Tensor | None:
    if values is None:
        return None
    if not values or any(v < 0 for v in values):
        raise ValueError(
            f"loss {argument}: expected a non-empty list of weights >= 0, got {values}"
        )
    return torch.tensor([float(v) for v in values])


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` with ``weight`` given as a list (one weight per class)."""

    def __init__(
        self,
        weight: list[float] | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        """Convert the class weights to a tensor (a buffer, so it follows the device)."""
        super().__init__(
            weight=_tensor(weight, "weight"),
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
        )


class BCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """``torch.nn.BCEWithLogitsLoss`` with ``weight``/``pos_weight`` given as lists."""

    def __init__(
        self,
        weight: list[float] | None = None,
        reduction: str = "mean",
        pos_weight: list[float] | None = None,
    ) -> None:
        """Convert the weights to tensors (buffers, so they follow the device)."""
        super().__init__(
            weight=_tensor(weight, "weight"),
            reduction=reduction,
            pos_weight=_tensor(pos_weight, "pos_weight"),
        )


__all__ = ["BCEWithLogitsLoss", "CrossEntropyLoss"]
