"""Learning-rate schedules with a warm-up, as torch ``LRScheduler`` subclasses.

Use them as ``model.lr_scheduler`` by class_path, next to any torch or pytorch_optimizer
scheduler. Each multiplies the optimizer's learning rate (the *peak* rate) by a factor of the
step count ``s = 0, 1, 2, ...`` (the number of ``scheduler.step()`` calls so far): optimizer steps
when the scheduler runs per step, epochs when it runs per epoch (``lr_scheduler_config``).

Warm-up is linear, ``min(1, (s + 1) / warmup_steps)``, so the first step already trains (at
``lr / warmup_steps``) and step ``warmup_steps - 1`` reaches the peak.

Schedules that decay to an end point take ``total_steps``; left at None, salt fills it in from
the trainer (``estimated_stepping_batches``, or ``max_epochs`` per epoch) through
:func:`bind_total_steps` before the first step that needs it.
"""

from __future__ import annotations

import math

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def linear_warmup(step: int, warmup_steps: int) -> float:
    """``min(1, (step + 1) / warmup_steps)``; 1 without warm-up."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


class WarmupScheduler(LRScheduler):
    """Base class: ``lr = base_lr * factor(step)``; subclasses define :meth:`factor`.

    Args:
        optimizer: the wrapped optimizer (given by salt).
        warmup_steps: steps of linear warm-up from ``lr / warmup_steps`` to ``lr``.
        total_steps: the schedule's length, for those that decay to an end point; None = from
            the trainer.
        last_epoch: the index of the last step, for resuming (-1 = start).
    """

    needs_total_steps = False

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int = 0,
        total_steps: int | None = None,
        last_epoch: int = -1,
    ):
        if warmup_steps < 0:
            raise ValueError(
                f"{type(self).__name__}: warmup_steps must be >= 0, got {warmup_steps}"
            )
        if total_steps is not None and total_steps <= 0:
            raise ValueError(
                f"{type(self).__name__}: total_steps must be positive, got {total_steps}"
            )
        self.warmup_steps = int(warmup_steps)
        self.total_steps = None if total_steps is None else int(total_steps)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def _total(self) -> int:
        if self.total_steps is None:
            raise ValueError(
                f"{type(self).__name__}: total_steps is not set (give it, or let salt take it "
                "from the trainer)"
            )
        return self.total_steps

    def get_lr(self) -> list[float | Tensor]:
        scale = self.factor(max(self.last_epoch, 0))
        return [base * scale for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float | Tensor]:
        return self.get_lr()


class LinearWarmup(WarmupScheduler):
    """Linear warm-up, then the constant peak rate: ``min(1, (s + 1) / warmup_steps)``."""

    def factor(self, step: int) -> float:
        return linear_warmup(step, self.warmup_steps)


class AttentionWarmup(WarmupScheduler):
    """The schedule of "Attention is all you need": linear warm-up, then ``1/sqrt`` decay.

    ``factor = min((s + 1) / W, sqrt(W / (s + 1)))`` with ``W = warmup_steps``: the paper's
    ``d_model^-0.5 min(n^-0.5, n W^-1.5)`` for step ``n = s + 1``, scaled so that the optimizer's
    learning rate is the peak, reached at step ``W``.
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int = 4000, last_epoch: int = -1):
        if warmup_steps <= 0:
            raise ValueError(f"AttentionWarmup: warmup_steps must be positive, got {warmup_steps}")
        super().__init__(optimizer, warmup_steps, None, last_epoch)

    def factor(self, step: int) -> float:
        n, w = step + 1, self.warmup_steps
        return min(n / w, math.sqrt(w / n))


class SqrtExpWarmup(WarmupScheduler):
    """Exponential warm-up followed by ``1/sqrt`` decay.

    ``factor = (1 - exp(-(s + 1) / W)) * sqrt(D / max(D, s + 1))`` with ``W = warmup_steps``
    (the warm-up's time constant: 63% of the peak at ``W``, 95% at ``3 W``) and ``D =
    decay_start`` (default ``3 W``): a smooth rise, as the exponential warm-up suggested for
    Adam (Ma & Yarats, arXiv 1910.04209), then the slow decay of inverse-square-root schedules.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int = 1000,
        decay_start: int | None = None,
        last_epoch: int = -1,
    ):
        if warmup_steps <= 0:
            raise ValueError(f"SqrtExpWarmup: warmup_steps must be positive, got {warmup_steps}")
        self.decay_start = int(decay_start) if decay_start is not None else 3 * warmup_steps
        if self.decay_start <= 0:
            raise ValueError(f"SqrtExpWarmup: decay_start must be positive, got {decay_start}")
        super().__init__(optimizer, warmup_steps, None, last_epoch)

    def factor(self, step: int) -> float:
        n = step + 1
        rise = -math.expm1(-n / self.warmup_steps)
        return rise * math.sqrt(self.decay_start / max(self.decay_start, n))


class CosineWarmup(WarmupScheduler):
    """Linear warm-up, then cosine annealing to ``min_factor`` at ``total_steps``.

    From step ``W = warmup_steps`` on, ``factor = m + (1 - m) (1 + cos(pi t)) / 2`` with
    ``t = min(1, (s - W) / (T - 1 - W))``, ``T = total_steps`` and ``m = min_factor``: the peak at
    step ``W``, ``m`` at the last step ``T - 1``.

    Args:
        min_factor: the final learning rate as a fraction of the peak.
        See :class:`WarmupScheduler` for the others.
    """

    needs_total_steps = True

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int = 0,
        total_steps: int | None = None,
        min_factor: float = 0.0,
        last_epoch: int = -1,
    ):
        if not 0.0 <= min_factor <= 1.0:
            raise ValueError(f"CosineWarmup: min_factor must be in [0, 1], got {min_factor}")
        self.min_factor = float(min_factor)
        super().__init__(optimizer, warmup_steps, total_steps, last_epoch)

    def factor(self, step: int) -> float:
        if step <= self.warmup_steps:  # (the peak at step W needs no length yet)
            return linear_warmup(step, self.warmup_steps)
        span = max(self._total() - 1 - self.warmup_steps, 1)
        t = min((step - self.warmup_steps) / span, 1.0)
        m = self.min_factor
        return m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * t))


def bind_total_steps(scheduler: object, total_steps: int) -> None:
    """Give a scheduler its length when the config left ``total_steps`` unset."""
    if isinstance(scheduler, WarmupScheduler) and scheduler.total_steps is None:
        scheduler.total_steps = max(int(total_steps), 1)
        # the rate set at construction may depend on the length: set it again
        scale = scheduler.factor(max(scheduler.last_epoch, 0))
        for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base * scale
        scheduler._last_lr = [g["lr"] for g in scheduler.optimizer.param_groups]


__all__ = [
    "AttentionWarmup",
    "CosineWarmup",
    "LinearWarmup",
    "SqrtExpWarmup",
    "WarmupScheduler",
    "bind_total_steps",
    "linear_warmup",
]
