"""Stop training with a clear message when a loss stops being finite, naming the cause.

A non-finite loss has three usual causes, told apart from the batch where it first appeared:

- the batch has no valid constituents of a type a task learns from (every ``tracks.valid``
  False: a track-level loss averages over nothing);
- an input is non-finite or absurdly large after normalisation (a broken value in the file, or
  a norm dict that does not fit the file);
- neither: the training diverged (learning rate too high, no gradient clipping).

Only the last is a learning-rate problem, and only then does the message say so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor

from salt.errors import UserError

HUGE_INPUT = 1e4
"""A normalised input further than this many standard deviations from its norm-dict mean is
taken for the cause of a non-finite loss."""


class NonFiniteLossError(UserError):
    """A training loss became NaN or infinite."""


class BatchSummary:
    """What the diagnosis needs of a batch, kept on its device (no host sync per step): per
    input type, the normalised value furthest from zero of each variable (NaN and inf kept),
    and per constituent type the number of valid constituents."""

    def __init__(self, pl_module: Any, batch: Any):
        inputs, pad_masks, _ = batch
        normaliser = getattr(pl_module, "normaliser", None)
        self.extremes: dict[str, Tensor] = {}
        self.valid: dict[str, Tensor] = {}
        for name, x in inputs.items():
            if not isinstance(x, Tensor) or x.numel() == 0 or not x.is_floating_point():
                continue
            mean = getattr(normaliser, f"mean_{name}", None)
            if mean is not None:
                x = (x - mean) / getattr(normaliser, f"std_{name}")
            mask = pad_masks.get(name)
            if mask is not None:
                x = x.masked_fill(mask.unsqueeze(-1), 0.0)
                self.valid[name] = (~mask).sum()
            flat = x.detach().reshape(-1, x.shape[-1])
            low, high = flat.amin(0), flat.amax(0)
            self.extremes[name] = torch.where(high.abs() >= low.abs(), high, low)
            # NaN compares False above; keep it whichever side it is on
            self.extremes[name] = torch.where(low.isnan(), low, self.extremes[name])

    def keep_first(self, previous: BatchSummary | None, first: Tensor) -> BatchSummary:
        """This summary where ``first`` (a device flag) is set, else ``previous``."""
        if previous is None:
            return self
        for store in ("extremes", "valid"):
            mine, old = getattr(self, store), getattr(previous, store)
            for name, value in mine.items():
                if name in old and old[name].shape == value.shape:
                    mine[name] = torch.where(first, value, old[name])
        return self


class NaNLossGuard(L.Callback):
    """Checks the per-task training losses every ``check_every_n_steps`` steps.

    It reads them from what the training step returns (:class:`salt.training.module.StepOutput`:
    ``task_losses``, detached), so any module returning that contract is guarded. Of each batch
    it keeps a small summary of the inputs (on the device) until a loss has gone bad, so the
    message can name the input at fault.

    The check reads one flag from the device, so it costs one host sync per check rather than
    one per step. The message names the step, the task and the cause found in that batch.

    Args:
        check_every_n_steps: how often to look (1 = every step).
    """

    def __init__(self, check_every_n_steps: int = 20):
        super().__init__()
        self.every = max(1, check_every_n_steps)
        self._bad: dict[str, torch.Tensor] = {}
        self._last_checked = 0
        self._any_bad: Tensor | None = None
        self._first_step: Tensor | None = None
        self._summary: BatchSummary | None = None
        self._context: dict[str, Any] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._context = fit_context(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, *args: Any
    ) -> None:
        losses = outputs.get("task_losses", {}) if isinstance(outputs, Mapping) else {}
        flags = []
        for name, loss in losses.items():
            bad = ~torch.isfinite(loss.detach())
            self._bad[name] = self._bad[name] | bad if name in self._bad else bad
            flags.append(bad.any())
        step = trainer.global_step
        if flags:
            self._remember(step, torch.stack(flags).any(), pl_module, args[0] if args else None)
        if step - self._last_checked >= self.every:
            self._check(step)

    def _remember(self, step: int, bad_now: Tensor, pl_module: Any, batch: Any) -> None:
        """Keep the step and input summary of the first batch whose loss went bad."""
        if self._any_bad is not None and self._any_bad.device.type == "cpu" and bool(self._any_bad):
            return  # the first bad batch is kept (on a CPU, asking costs no device sync)
        first = bad_now if self._any_bad is None else bad_now & ~self._any_bad
        here = torch.full((), max(step - 1, 0), device=bad_now.device)  # no host copy
        self._first_step = (
            here if self._first_step is None else torch.where(first, here, self._first_step)
        )
        self._any_bad = bad_now if self._any_bad is None else self._any_bad | bad_now
        if is_batch(batch):
            self._summary = BatchSummary(pl_module, batch).keep_first(self._summary, first)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer.global_step)

    def _check(self, step: int) -> None:
        bad = [name for name, flag in self._bad.items() if bool(flag)]
        if bad:
            first = int(self._first_step) if self._first_step is not None else self._last_checked
            where = (
                f"non-finite loss in task '{bad[0]}' between steps {self._last_checked} and "
                f"{step} (first in the batch of step {first})"
            )
            raise NonFiniteLossError(f"{where}: {diagnose(bad, self._summary, self._context)}")
        self._bad = {}
        self._any_bad = None
        self._first_step = None
        self._summary = None
        self._last_checked = step


def is_batch(batch: Any) -> bool:
    return (
        isinstance(batch, tuple | list)
        and len(batch) == 3
        and isinstance(batch[0], Mapping)
        and isinstance(batch[1], Mapping)
    )


def fit_context(trainer: Any, pl_module: Any) -> dict[str, Any]:
    """Names for the message: each task's input type, each input's variables and dataset, the
    norm dict's statistics and the training files (resolved only for a message)."""
    context: dict[str, Any] = {"task_inputs": {}, "variables": {}, "datasets": {}}
    model = getattr(pl_module, "model", None)
    for task in getattr(model, "tasks", []) or []:
        if hasattr(task, "name") and hasattr(task, "input_name"):
            context["task_inputs"][task.name] = task.input_name
    datamodule = getattr(trainer, "datamodule", None)
    variables = getattr(datamodule, "variables", None)
    if isinstance(variables, Mapping):
        from salt.data.datamodule import canonical_variables

        context["variables"] = canonical_variables(dict(variables))
        for name in context["variables"]:
            context["datasets"][name] = datamodule.dataset_name(name)  # type: ignore[union-attr]
        context["train_files"] = getattr(datamodule, "files", {}).get("train")
    normaliser = getattr(pl_module, "normaliser", None)
    context["norm"] = {
        name: (
            getattr(normaliser, f"mean_{name}").tolist(),
            getattr(normaliser, f"std_{name}").tolist(),
        )
        for name in getattr(normaliser, "input_names", [])
    }
    return context


def _in_files(spec: Any) -> str:
    """Where the batch came from: the training file, or the first of several."""
    from salt.data.paths import resolve_files

    try:
        files = resolve_files(spec, "train_file") if spec else []
    except (OSError, ValueError, TypeError):
        files = []
    if not files:
        return "the training data"
    if len(files) == 1:
        return f"training file '{files[0]}'"
    return f"one of the {len(files)} training files ('{files[0]}', ...)"


def diagnose(bad: list[str], summary: BatchSummary | None, context: dict[str, Any]) -> str:
    """The cause of a non-finite loss found in the first bad batch, as advice for the user."""
    datasets: dict[str, str] = context.get("datasets", {})
    files = _in_files(context.get("train_files"))
    if summary is not None:
        for task in bad:
            input_name = context.get("task_inputs", {}).get(task)
            count = summary.valid.get(input_name) if input_name else None
            if count is not None and int(count) == 0:
                dataset = datasets.get(input_name, input_name)
                return (
                    f"the batch has no valid {dataset} (every '{dataset}.valid' is False for its "
                    f"jets) and task '{task}' learns from them; check the 'valid' flags of "
                    f"'{dataset}' in {files}, or use a larger data.batch_size if jets without "
                    f"{dataset} are common"
                )
        culprit = worst_input(summary, context)
        if culprit is not None:
            name, var, value, mean, std = culprit
            dataset = datasets.get(name, name)
            what = f"input '{dataset}.{var}' (input type '{name}')"
            if mean is None or std is None:  # not normalised
                return (
                    f"{what} is {value:.4g} in {files}; inputs must be finite and of moderate "
                    "size: fix or filter the file, or normalise it (data.norm_dict)"
                )
            stats = f"norm dict mean {mean:.4g}, std {std:.4g}"
            if not math.isfinite(value):
                return (
                    f"{what} is {value} after normalisation ({stats}) in {files}: a value too "
                    "large for float32 once normalised; fix or filter the file, or the norm dict"
                )
            return (
                f"{what} reaches {value:.4g} standard deviations from its mean after "
                f"normalisation ({stats}, so a value of about {value * std + mean:.4g}) in "
                f"{files}; fix or filter the file, or recompute the norm dict for it"
            )
        return (
            "the inputs of that batch are finite and within the norm dict's range, so the "
            "training diverged: lower the learning rate (model.lrs_config.max) or clip "
            "gradients (--trainer.gradient_clip_val)"
        )
    return (
        "lower the learning rate (model.lrs_config.max), check the inputs and norm dict for "
        "extreme values, or clip gradients (--trainer.gradient_clip_val)"
    )


def worst_input(
    summary: BatchSummary, context: dict[str, Any]
) -> tuple[str, str, float, float | None, float | None] | None:
    """The input variable of the summary that is non-finite or furthest beyond
    :data:`HUGE_INPUT` after normalisation: (input type, variable, value, mean, std)."""
    worst: tuple[float, str, int, float] | None = None
    for name, extremes in summary.extremes.items():
        for index, value in enumerate(extremes.float().cpu().tolist()):
            size = math.inf if not math.isfinite(value) else abs(value)
            if size > HUGE_INPUT and (worst is None or size > worst[0]):
                worst = (size, name, index, value)
    if worst is None:
        return None
    _, name, index, value = worst
    names = context.get("variables", {}).get(name, [])
    var = names[index] if index < len(names) else f"variable {index}"
    means, stds = context.get("norm", {}).get(name, ([], []))
    mean = means[index] if index < len(means) else None
    std = stds[index] if index < len(stds) else None
    return name, var, value, mean, std
