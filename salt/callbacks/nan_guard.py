"""Stop training with a clear message when a loss stops being finite."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from salt.errors import UserError


class NonFiniteLossError(UserError):
    """A training loss became NaN or infinite."""


class NaNLossGuard(L.Callback):
    """Checks the per-task training losses every ``check_every_n_steps`` steps.

    It reads them from what the training step returns (:class:`salt.training.module.StepOutput`:
    ``task_losses``, detached), so any module returning that contract is guarded.

    The check reads one flag from the device, so it costs one host sync per check rather than
    one per step. The message names the first step range, the task and likely causes.

    Args:
        check_every_n_steps: how often to look (1 = every step).
    """

    def __init__(self, check_every_n_steps: int = 20):
        super().__init__()
        self.every = max(1, check_every_n_steps)
        self._bad: dict[str, torch.Tensor] = {}
        self._last_checked = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, *args: Any
    ) -> None:
        losses = outputs.get("task_losses", {}) if isinstance(outputs, Mapping) else {}
        for name, loss in losses.items():
            bad = ~torch.isfinite(loss.detach())
            self._bad[name] = self._bad[name] | bad if name in self._bad else bad
        step = trainer.global_step
        if step - self._last_checked >= self.every:
            self._check(step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer.global_step)

    def _check(self, step: int) -> None:
        bad = [name for name, flag in self._bad.items() if bool(flag)]
        if bad:
            raise NonFiniteLossError(
                f"non-finite loss in task '{bad[0]}' between steps {self._last_checked} and "
                f"{step}: lower the learning rate (model.lrs_config.max), check the inputs and "
                "norm dict for extreme values, or clip gradients (--trainer.gradient_clip_val)"
            )
        self._bad = {}
        self._last_checked = step
