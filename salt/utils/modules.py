"""Facts about torch modules that several places report (run metadata, profiles, the zoo)."""

from __future__ import annotations

from torch import nn


def count_parameters(module: nn.Module, trainable: bool = True) -> int:
    """Number of parameters of ``module`` (only those with gradients when ``trainable``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)
