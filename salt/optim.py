"""Optimizer and learning-rate schedule defaults: AdamW with a one-cycle schedule."""

from __future__ import annotations

from typing import TypedDict

import torch
from torch import nn


class LRSConfig(TypedDict, total=False):
    """One-cycle schedule: ``initial`` -> ``max`` over ``pct_start`` of training -> ``end``."""

    initial: float
    max: float
    end: float
    pct_start: float
    weight_decay: float


DEFAULT_LRS: LRSConfig = {
    "initial": 1e-7,
    "max": 5e-4,
    "end": 1e-5,
    "pct_start": 0.01,
    "weight_decay": 1e-5,
}


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Decay weight matrices only: decaying biases and norm scales just fights the fit."""
    decay, no_decay = [], []
    for param in module.parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def one_cycle(
    optimizer: torch.optim.Optimizer, lrs: LRSConfig, total_steps: int
) -> torch.optim.lr_scheduler.OneCycleLR:
    cfg = {**DEFAULT_LRS, **lrs}
    total = max(int(total_steps), 4)
    # keep both phases at least ~1.5 steps long: OneCycleLR divides by their lengths, which
    # are zero for some (short) runs, e.g. pct_start 0.1 of 10 steps
    pct = min(max(float(cfg["pct_start"]), 2.5 / total), 1.0 - 1.5 / total)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=cfg["max"],
        total_steps=total,
        pct_start=pct,
        div_factor=cfg["max"] / cfg["initial"],
        final_div_factor=cfg["initial"] / cfg["end"],
        anneal_strategy="cos",
        cycle_momentum=False,
    )
