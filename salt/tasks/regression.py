"""Regression heads: point estimates, or a Gaussian mean and width, of one or more targets.

Targets are scaled before the loss (so targets of very different sizes, such as a pT in MeV and
a fraction, weigh alike) and outputs are unscaled in ``predict``, so written predictions are in
the units of the training file. Targets that are NaN (unknown) or padding take no part in the
loss, which is their mean (weighted by the per-jet weights of ``data.weight_field``, if set).
"""

from __future__ import annotations

from typing import Literal, TypedDict

import torch
from torch import Tensor, nn
from torch.nn import functional

from salt.data.batch import Labels
from salt.models.configs import DenseConfig
from salt.tasks.base import (
    TaskBase,
    elementwise,
    event_weights,
    fill_padding,
    masked_mean,
    weighted_mean,
)


class TargetScale(TypedDict, total=False):
    """How one target is scaled for the loss: ``z = (op(t) - mean) / std``.

    ``op: log`` regresses the logarithm (for positive, wide-ranging targets such as a pT; then
    ``mean`` and ``std`` are those of the log). Targets <= 0 are then left out of the loss.
    """

    mean: float
    std: float
    op: Literal["log"] | None


class RegressionTask(TaskBase):
    """Regress one or more targets of the jet or of each constituent.

    Args:
        name: unique task name.
        input_name: ``jets`` (the global object) or a constituent type.
        targets: the target field(s) of ``input_name``'s dataset; one output per target.
        dense_config: the head network; salt derives ``input_size`` (and ``context_size`` for
            constituent tasks), the task derives ``output_size``.
        loss: an element-wise loss on (output, target), by default ``MSELoss``; its reduction
            is set to ``none`` because the task averages over the valid entries itself.
        weight: the factor of this task's loss in the total loss.
        scaler: ``{target: {mean, std, op}}`` applied to the targets before the loss and
            inverted in ``predict`` (see :class:`TargetScale`); unlisted targets are unscaled.
    """

    outputs_per_target = 1
    target_mean: Tensor
    target_std: Tensor
    target_log: Tensor

    def __init__(
        self,
        name: str,
        input_name: str,
        targets: str | list[str],
        dense_config: DenseConfig,
        loss: nn.Module | None = None,
        weight: float = 1.0,
        scaler: dict[str, TargetScale] | None = None,
    ):
        names = [targets] if isinstance(targets, str) else list(targets)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"task '{name}': targets={names}, expected distinct field names")
        config = dict(dense_config)
        size = self.outputs_per_target * len(names)
        config.setdefault("output_size", size)
        if config["output_size"] != size:
            raise ValueError(
                f"task '{name}': dense_config.output_size={config['output_size']} but "
                f"{len(names)} target(s) need {size} outputs; remove it"
            )
        mean, std, log = _scales(name, names, scaler or {})
        super().__init__(
            name,
            input_name,
            None,
            config,  # type: ignore[arg-type]
            elementwise(loss or nn.MSELoss(), name),
            weight,
        )
        self.target_names = names
        self.register_buffer("target_mean", mean, persistent=False)
        self.register_buffer("target_std", std, persistent=False)
        self.register_buffer("target_log", log, persistent=False)

    def label_fields(self) -> dict[str, list[str]]:
        return {self.input_name: list(self.target_names)}

    def scale(self, values: Tensor) -> Tensor:
        """Map targets (..., T) in file units to the scaled units the network learns."""
        values = torch.where(self.target_log, torch.log(values), values)
        return (values - self.target_mean) / self.target_std

    def unscale(self, values: Tensor) -> Tensor:
        """Map network outputs (..., T) in scaled units back to file units."""
        values = values * self.target_std + self.target_mean
        return torch.where(self.target_log, torch.exp(values), values)

    def scaled_targets(
        self, labels: Labels, pad_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Scaled targets (..., T), 0 where unusable, and the mask of the usable ones.

        Unusable entries are zeroed here, before any loss sees them, because a masked-out NaN
        would still turn the loss (``0 * nan``) and its gradients into NaN.
        """
        fields = labels[self.input_name]
        raw = torch.stack([fields[t].float() for t in self.target_names], dim=-1)
        target = self.scale(raw)
        usable = torch.isfinite(target)
        if pad_mask is not None:
            usable = usable & ~pad_mask.unsqueeze(-1)
        return torch.where(usable, target, torch.zeros_like(target)), usable

    def forward(
        self,
        x: Tensor,
        labels: Labels | None = None,
        pad_mask: Tensor | None = None,
        context: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Return the outputs in scaled units, (B, T) or (B, L, T), and the loss with labels."""
        output = self.head(x, context)
        if labels is None:
            return output, None
        target, usable = self.scaled_targets(labels, pad_mask)
        values = self.elementwise_loss(output.float(), target)
        weights = event_weights(labels)
        if weights is None:
            return output, masked_mean(values, usable)
        return output, weighted_mean(values, usable, weights)

    def elementwise_loss(self, output: Tensor, target: Tensor) -> Tensor:
        """The loss of each output against each (scaled, finite) target, shape (..., T)."""
        return self.loss(output, target)

    def predict(self, output: Tensor, pad_mask: Tensor | None = None) -> dict[str, Tensor]:
        """``{target: value}`` in file units; NaN on padded constituents."""
        values = self.unscale(output.float())
        return {
            t: fill_padding(values[..., k], pad_mask, float("nan"))
            for k, t in enumerate(self.target_names)
        }


class GaussianRegressionTask(RegressionTask):
    """Regress a Gaussian per target: a mean and a variance, trained by their likelihood.

    The head outputs ``2 T`` values per row: T means, then T raw variances mapped through
    softplus (positive, and growing only linearly, so large raw values cannot overflow as an
    exponential of a log-variance can). The default loss is ``GaussianNLLLoss``, i.e.
    ``0.5 * (log var + (target - mean)^2 / var)`` averaged over the usable targets.

    ``predict`` gives ``<target>`` (the mean) and ``<target>_sigma`` in file units. With a
    ``log`` scaler the mean is ``exp`` of the log-space mean (the median of the log-normal) and
    sigma is propagated to first order: ``sigma = value * std * sigma_z``.

    Args:
        loss: a loss called as ``loss(mean, target, var)`` with element-wise output, by default
            ``GaussianNLLLoss``.
        See :class:`RegressionTask` for the other arguments.
    """

    outputs_per_target = 2

    def __init__(
        self,
        name: str,
        input_name: str,
        targets: str | list[str],
        dense_config: DenseConfig,
        loss: nn.Module | None = None,
        weight: float = 1.0,
        scaler: dict[str, TargetScale] | None = None,
    ):
        super().__init__(
            name, input_name, targets, dense_config, loss or nn.GaussianNLLLoss(), weight, scaler
        )

    def mean_and_variance(self, output: Tensor) -> tuple[Tensor, Tensor]:
        """Split the raw output (..., 2T) into the mean and variance (..., T), scaled units."""
        mean, raw = output.chunk(2, dim=-1)
        return mean, functional.softplus(raw)

    def elementwise_loss(self, output: Tensor, target: Tensor) -> Tensor:
        mean, var = self.mean_and_variance(output)
        return self.loss(mean, target, var)

    def predict(self, output: Tensor, pad_mask: Tensor | None = None) -> dict[str, Tensor]:
        """``{target: mean, target_sigma: width}`` in file units; NaN on padded constituents."""
        mean, var = self.mean_and_variance(output.float())
        value = self.unscale(mean)
        # d(unscale)/dz: std, times the value itself for log targets (d exp(u) = exp(u) du)
        slope = self.target_std * torch.where(self.target_log, value, torch.ones_like(value))
        sigma = slope.abs() * var.sqrt()
        nan = float("nan")
        result = {}
        for k, t in enumerate(self.target_names):
            result[t] = fill_padding(value[..., k], pad_mask, nan)
            result[f"{t}_sigma"] = fill_padding(sigma[..., k], pad_mask, nan)
        return result


def _scales(
    task_name: str, names: list[str], scaler: dict[str, TargetScale]
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-target (mean, std, log?) tensors, checked against the target list."""
    unknown = sorted(set(scaler) - set(names))
    if unknown:
        raise ValueError(f"task '{task_name}': scaler has {unknown}, which are not in {names}")
    mean, std, log = [], [], []
    for t in names:
        scale = scaler.get(t, {})
        extra = sorted(set(scale) - {"mean", "std", "op"})
        if extra:
            raise ValueError(f"task '{task_name}': scaler.{t} has unknown keys {extra}")
        op = scale.get("op")
        if op not in (None, "log"):
            raise ValueError(f"task '{task_name}': scaler.{t}.op={op!r}, expected 'log' or none")
        sd = float(scale.get("std", 1.0))
        if not sd > 0:
            raise ValueError(f"task '{task_name}': scaler.{t}.std={sd}, expected > 0")
        mean.append(float(scale.get("mean", 0.0)))
        std.append(sd)
        log.append(op == "log")
    return torch.tensor(mean), torch.tensor(std), torch.tensor(log, dtype=torch.bool)


__all__ = ["GaussianRegressionTask", "RegressionTask", "TargetScale"]
