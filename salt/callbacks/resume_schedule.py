"""A resumed fit follows the schedule of its current config from the checkpoint's position.

Restoring a checkpoint restores each learning-rate scheduler whole, its length included, so
resuming with a larger ``--trainer.max_epochs`` kept the old length: OneCycleLR then stops with
"Tried to step N times", and a cosine schedule sat at its floor. The length (and OneCycleLR's
phases) are taken from the schedule as the current config builds it; the step count from the
checkpoint.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L

log = logging.getLogger(__name__)

SHAPE_KEYS = ("total_steps", "_schedule_phases")
"""Scheduler attributes that define the schedule's length, not its position."""


def schedule_shapes(trainer: L.Trainer) -> list[dict[str, Any]]:
    """The length-defining attributes of every scheduler, as configured."""
    shapes = []
    for config in trainer.lr_scheduler_configs:
        state = vars(config.scheduler)
        shapes.append({key: _copy(state[key]) for key in SHAPE_KEYS if key in state})
    return shapes


def restore_shapes(trainer: L.Trainer, shapes: list[dict[str, Any]]) -> None:
    """Put back the configured lengths after a checkpoint restored older ones."""
    for config, shape in zip(trainer.lr_scheduler_configs, shapes):
        scheduler = config.scheduler
        restored = {key: getattr(scheduler, key) for key in shape}
        if restored == shape or shape.get("total_steps") is None:
            continue
        log.info(
            "%s: schedule length %s from the current config (checkpoint: %s), continuing at "
            "step %d",
            type(scheduler).__name__,
            shape.get("total_steps"),
            restored.get("total_steps"),
            scheduler.last_epoch,
        )
        for key, value in shape.items():
            setattr(scheduler, key, value)


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [dict(v) if isinstance(v, dict) else v for v in value]
    return value
