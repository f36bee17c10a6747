"""muP (maximal update parametrisation) support: base shapes, initialisation, optimizers.

Under muP (Tensor Programs V, arXiv 2203.03466) the best hyperparameters, the learning rate
first, barely move with the width, so they can be tuned on a narrow GN2 and reused on a wide
one ("muTransfer"). The workflow:

1. ``setup_muP -c configs/GN2_muP.yaml`` builds a base and a delta model from the config's
   ``model.muP_config`` and writes the ``storeshapes`` file (:mod:`salt.mup.setup`);
   ``--check`` also runs a coordinate check (:mod:`salt.mup.coord_check`).
2. ``salt fit`` with that config: :func:`set_base_shapes` gives every parameter its
   ``infshape`` and the muP initialisation, and :func:`mup_optimizer` applies the muP
   learning-rate scaling (``mup.MuAdam``/``MuAdamW``/``MuSGD``) to the optimizer.

Only the layers built with ``muP: true`` (the init nets' ``dense_config`` and the transformer
encoder) change; heads and pooling see the fixed-size encoder output and stay as they are.
This module imports ``mup`` only when used, so salt runs without it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from salt.errors import UserError
from salt.mup.config import MuPConfig, MuPParameter, storeshapes_path, width_parameters

if TYPE_CHECKING:
    from salt.training.optim import LRSConfig


def _import_mup() -> Any:
    try:
        import mup
    except ImportError:  # the user's environment, not a bug: one line
        raise UserError(
            "model.muP_config needs the mup package: pip install --no-deps mup==1.0.0"
        ) from None
    return mup


def reset_mup_parameters(model: nn.Module) -> int:
    """Give every module built with ``muP: true`` its muP initialisation; returns how many.

    Each such module initialises only its own Linear layers (see
    :func:`salt.models.dense.mup_init_linear`), so nothing is initialised twice.
    """
    count = 0
    for module in model.modules():
        if getattr(module, "muP", False) and hasattr(module, "reset_mup_parameters"):
            cast(Any, module).reset_mup_parameters()
            count += 1
    return count


def has_mup_layers(model: nn.Module) -> bool:
    return any(getattr(module, "muP", False) for module in model.modules())


def set_base_shapes(model: nn.Module, config: MuPConfig | dict, init: bool = True) -> Path:
    """Load ``<shape_path>/storeshapes`` into ``model`` (``mup.set_base_shapes``), then muP-init.

    Raises a FileNotFoundError when ``setup_muP`` has not been run, and a ValueError when the
    model does not fit the stored shapes (other layers, or a layer mapping a width to a fixed
    size that is not the encoder's ``MuReadout``). Returns the storeshapes path.
    """
    width_parameters(config)  # a malformed config fails here, naming the key
    path = storeshapes_path(config)
    if not path.is_file():
        raise FileNotFoundError(
            f"model.muP_config.shape_path: no '{path}' (from the working directory "
            f"'{Path.cwd()}'); create it with `setup_muP -c <this config>` first"
        )
    if not has_mup_layers(model):
        raise ValueError(
            "model.muP_config is set but no layer is in muP mode: set muP: true on the "
            "encoder (and on the init nets' dense_config), see configs/GN2_muP.yaml"
        )
    mup = _import_mup()
    try:
        mup.set_base_shapes(model, str(path))
    except AssertionError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"model.muP_config: the model does not fit the base shapes in '{path}' ({first}); "
            "rerun setup_muP with this config, and make sure the encoder has muP: true"
        ) from None
    if init:
        reset_mup_parameters(model)
    return path


def mup_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Apply the muP learning-rate and weight-decay scaling to a freshly built optimizer.

    The parameter groups (e.g. salt's decay / no-decay groups) are split by width multiplier
    with ``mup.MuAdam``'s rules (Adam-like optimizers, AdamW included: ``MuAdamW`` is
    ``MuAdam`` with AdamW) or ``mup.MuSGD``'s (SGD), and installed back into ``optimizer``,
    which keeps its class and every other setting: this works for the default AdamW as well as
    any optimizer given by class_path. Returns ``optimizer``.
    """
    mup = _import_mup()
    if any(optimizer.state.values()):
        raise ValueError("mup_optimizer: the optimizer has already taken steps")
    groups = [dict(group) for group in optimizer.param_groups]

    def install(new_groups: list[dict], **_: Any) -> torch.optim.Optimizer:
        optimizer.param_groups = []
        for group in new_groups:
            if group["params"]:
                optimizer.add_param_group(group)
        return optimizer

    rule = mup.MuSGD if isinstance(optimizer, torch.optim.SGD) else mup.MuAdam
    return rule(groups, impl=install, lr=optimizer.defaults.get("lr"))


def mup_one_cycle(
    optimizer: torch.optim.Optimizer, lrs: LRSConfig, total_steps: int
) -> torch.optim.lr_scheduler.OneCycleLR:
    """salt's one-cycle schedule that keeps muP's per-group learning-rate ratios.

    OneCycleLR sets absolute rates (``lrs.max`` for every group), which would undo the muP
    scaling; here every group's initial, peak and final rates are multiplied by its muP factor
    (its learning rate over the optimizer's), so ``lrs`` describes the base-width model.
    """
    from salt.training.optim import one_cycle

    reference = float(optimizer.defaults["lr"])
    factors = [float(group["lr"]) / reference for group in optimizer.param_groups]
    scheduler = one_cycle(optimizer, lrs, total_steps)
    for group, factor in zip(optimizer.param_groups, factors):
        for key in ("initial_lr", "max_lr", "min_lr"):
            group[key] *= factor
        group["lr"] = group["initial_lr"]
    scheduler.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # type: ignore[attr-defined]
    return scheduler


OptimizerFactory = Callable[[Any], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


def mup_factories(
    lrs: LRSConfig,
    optimizer_factory: OptimizerFactory | None,
    scheduler_factory: SchedulerFactory | None,
    scheduler_config: Any,
    trainer: Any,
) -> tuple[OptimizerFactory, SchedulerFactory | None]:
    """The optimizer and scheduler factories of a muP run (for ``configure_optimization``).

    The optimizer is the configured one (default: AdamW with ``lrs``' peak rate and weight decay
    on the weight matrices, as without muP) put through :func:`mup_optimizer`. Without an
    optimizer, scheduler and scheduler config, the default one-cycle schedule becomes
    :func:`mup_one_cycle`, evaluated on ``trainer.estimated_stepping_batches`` when called.
    A scheduler given by class_path is kept: the usual ones scale each group's own rate.
    """
    from salt.training.optim import DEFAULT_LRS

    full: LRSConfig = {**DEFAULT_LRS, **lrs}  # type: ignore[typeddict-item]
    build = optimizer_factory
    if build is None:

        def build(groups: Any) -> torch.optim.Optimizer:
            return torch.optim.AdamW(groups, lr=full["max"], weight_decay=full["weight_decay"])

        if scheduler_factory is None and not scheduler_config:

            def scheduler_factory(optimizer: torch.optim.Optimizer) -> Any:
                return mup_one_cycle(optimizer, full, int(trainer.estimated_stepping_batches))

    def optimizer(groups: Any) -> torch.optim.Optimizer:
        return mup_optimizer(build(groups))

    return optimizer, scheduler_factory


__all__ = [
    "MuPConfig",
    "MuPParameter",
    "has_mup_layers",
    "mup_factories",
    "mup_one_cycle",
    "mup_optimizer",
    "reset_mup_parameters",
    "set_base_shapes",
]
