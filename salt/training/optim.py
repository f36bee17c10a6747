"""Optimizer and learning-rate schedule defaults (AdamW with a one-cycle schedule), and the
assembly of any optimizer and scheduler given by class_path into what Lightning expects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypedDict, cast

import torch
from torch import nn

from salt.errors import UserError


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


def check_lrs_config(lrs: dict[str, Any], key: str = "model.lrs_config") -> None:
    """Rates must be positive and ``pct_start`` a fraction in (0, 1]: say so in one line
    before anything is built (OneCycleLR would clamp or fail much later)."""
    for name in ("initial", "max", "end"):
        value = lrs.get(name)
        if value is not None and not float(value) > 0:
            raise UserError(f"{key}.{name}: expected a positive learning rate, got {value}")
    pct = lrs.get("pct_start")
    if pct is not None and not 0 < float(pct) <= 1:
        raise UserError(f"{key}.pct_start: expected a fraction in (0, 1], got {pct}")
    decay = lrs.get("weight_decay")
    if decay is not None and float(decay) < 0:
        raise UserError(f"{key}.weight_decay: expected 0 or more, got {decay}")


def parameter_groups(module: nn.Module, weight_decay: float | None) -> list[dict]:
    """Decay weight matrices only: decaying biases and norm scales just fights the fit.

    With ``weight_decay=None`` the decayed group carries no ``weight_decay`` key, so the
    optimizer's own setting (e.g. its ``init_args.weight_decay``) applies to it; the biases and
    norm parameters get 0 either way.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in module.parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 else no_decay).append(param)
    first: dict[str, Any] = {"params": decay}
    if weight_decay is not None:
        first["weight_decay"] = weight_decay
    groups = [first]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def one_cycle(
    optimizer: torch.optim.Optimizer, lrs: LRSConfig, total_steps: int
) -> torch.optim.lr_scheduler.OneCycleLR:
    cfg = cast(LRSConfig, {**DEFAULT_LRS, **lrs})
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


class SchedulerConfig(TypedDict, total=False):
    """How Lightning steps the scheduler (``model.lr_scheduler_config``).

    Keys:
        interval: ``step`` (every optimizer step) or ``epoch``; default ``step``, except
            ``epoch`` for ``ReduceLROnPlateau``.
        frequency: step the scheduler every this many intervals.
        monitor: the logged metric ``ReduceLROnPlateau`` watches (default ``val/loss``).
        strict: fail when the monitored metric is missing (else warn and skip).
    """

    interval: Literal["step", "epoch"]
    frequency: int
    monitor: str
    strict: bool


OptimizerFactory = Callable[[Any], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """An optimizer class by name: ``torch.optim`` first (``AdamW``), then pytorch_optimizer's
    registry (``lion``, ``ranger``, ``lamb``; case-insensitive)."""
    cls = getattr(torch.optim, name, None)
    if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer):
        return cls
    try:
        from pytorch_optimizer import load_optimizer
    except ImportError:
        raise KeyError(
            f"optimizer '{name}' is not in torch.optim (install pytorch_optimizer for more)"
        ) from None
    try:
        return load_optimizer(name.lower())
    except NotImplementedError:
        raise KeyError(
            f"optimizer '{name}' is in neither torch.optim nor pytorch_optimizer"
        ) from None


def configure_optimization(
    module: nn.Module,
    lrs: LRSConfig,
    optimizer_factory: OptimizerFactory | None,
    scheduler_factory: SchedulerFactory | None,
    scheduler_config: SchedulerConfig | None,
    trainer: Any,
) -> Any:
    """What ``LightningModule.configure_optimizers`` returns, for any optimizer and scheduler.

    - No optimizer given: AdamW with the one-cycle schedule of ``lrs`` (stepped per step).
    - An optimizer by class_path gets the same parameter groups (no decay on biases and norm
      parameters); its own ``weight_decay`` applies to the weight matrices.
    - A scheduler by class_path is stepped as ``scheduler_config`` says; salt's warm-up
      schedules left without ``total_steps`` get the run's length from ``trainer``.
    """
    if optimizer_factory is not None:
        optimizer = optimizer_factory(parameter_groups(module, None))
    else:
        groups = parameter_groups(module, lrs.get("weight_decay", DEFAULT_LRS["weight_decay"]))
        optimizer = torch.optim.AdamW(groups, lr=lrs.get("max", DEFAULT_LRS["max"]))
    config: dict[str, Any] = dict(scheduler_config or {})
    if scheduler_factory is not None:
        scheduler = scheduler_factory(optimizer)
    elif optimizer_factory is None:
        if config:
            raise ValueError(
                "model.lr_scheduler_config is set but there is no lr_scheduler (the default "
                "one-cycle schedule always steps per optimizer step)"
            )
        scheduler = one_cycle(optimizer, lrs, int(trainer.estimated_stepping_batches))
    else:
        if config:
            raise ValueError("model.lr_scheduler_config is set but there is no lr_scheduler")
        return optimizer
    plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    entry: dict[str, Any] = {
        "scheduler": scheduler,
        "interval": config.get("interval", "epoch" if plateau else "step"),
        "frequency": int(config.get("frequency", 1)),
    }
    if entry["interval"] not in ("step", "epoch"):
        raise ValueError(
            f"model.lr_scheduler_config.interval: expected step or epoch, got '{entry['interval']}'"
        )
    if entry["frequency"] < 1:
        raise ValueError("model.lr_scheduler_config.frequency: expected a positive integer")
    if plateau or "monitor" in config:
        entry["monitor"] = config.get("monitor", "val/loss")
    if "strict" in config:
        entry["strict"] = bool(config["strict"])
    if getattr(scheduler, "needs_total_steps", False) and scheduler.total_steps is None:
        from salt.training.schedulers import bind_total_steps

        if entry["interval"] == "step":
            total = int(trainer.estimated_stepping_batches)
        else:
            total = int(trainer.max_epochs or 0)
            if total <= 0:
                raise ValueError(
                    f"{type(scheduler).__name__}: set total_steps (trainer.max_epochs is unset)"
                )
        bind_total_steps(scheduler, max(total // entry["frequency"], 1))
    return {"optimizer": optimizer, "lr_scheduler": entry}
