"""What every task head shares: the label it learns, its weight in the total loss, its head net.

Also the masking helpers the heads use. Losses are evaluated element by element and averaged over
the entries that take part (real constituents, known labels, finite targets): this needs no host
sync (no boolean indexing), so it stays fast and compiles, and an empty selection gives a zero
loss instead of the NaN of a mean over nothing.

With per-jet training weights (``data.weight_field``, found in the labels under
``labels[EVENT][EVENT_WEIGHT]``) the mean becomes the weighted mean; constituents and
constituent pairs take the weight of their jet.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from salt.data.batch import EVENT, EVENT_WEIGHT, Labels
from salt.models.configs import DenseConfig
from salt.models.dense import Dense
from salt.utils.label_fields import LabelFields


def require_sizes(task_name: str, config: Mapping, keys: tuple[str, ...]) -> None:
    """Fail with a readable message when a size salt normally derives is missing."""
    for key in keys:
        if config.get(key) is None:
            raise ValueError(
                f"task '{task_name}': dense_config.{key} is not set (salt derives it from the "
                "config; set it yourself when building the task in Python)"
            )


def elementwise(loss: nn.Module, task_name: str) -> nn.Module:
    """Switch a torch-style loss to ``reduction='none'`` so the task can mask and average it.

    The task, not the loss, knows which entries are padding or unknown, so it reduces itself.
    """
    if not hasattr(loss, "reduction"):
        raise ValueError(
            f"task '{task_name}': loss {type(loss).__name__} has no 'reduction' attribute; "
            "expected a torch-style loss that can return one value per element"
        )
    cast(Any, loss).reduction = "none"
    return loss


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over the True entries of ``mask`` (0 when there are none).

    ``values`` must be finite everywhere (sanitise inputs before the loss): ``0 * nan`` is NaN.
    """
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def event_weights(labels: Mapping[str, Mapping[str, Tensor]]) -> Tensor | None:
    """The per-jet training weights (B,) when the data layer reads a ``data.weight_field``."""
    group = labels.get(EVENT)
    return None if group is None else group.get(EVENT_WEIGHT)


def per_jet(weights: Tensor, like: Tensor) -> Tensor:
    """Jet weights (B,) shaped to broadcast against ``like`` (B, ...): constituents, pairs and
    targets of a jet all take the jet's weight."""
    return weights.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def weighted_mean(values: Tensor, mask: Tensor, weights: Tensor) -> Tensor:
    """``sum(w * values) / sum(w)`` over the True entries of ``mask``; ``weights`` is (B,).

    A zero total weight (nothing selected) gives 0. Like :func:`masked_mean`, ``values`` must
    be finite everywhere.
    """
    w = mask.to(values.dtype) * per_jet(weights, values)
    total = w.sum()
    return (values * w).sum() / torch.where(total != 0, total, torch.ones_like(total))


@contextmanager
def unreduced(loss: nn.Module, task_name: str) -> Iterator[nn.Module]:
    """Call a torch-style loss with ``reduction='none'`` for a moment, for per-jet weighting.

    Losses keep their own reduction otherwise, so a run without weights computes exactly what
    it did before.
    """
    if not hasattr(loss, "reduction"):
        raise ValueError(
            f"task '{task_name}': loss {type(loss).__name__} has no 'reduction' attribute; "
            "data.weight_field needs a loss that can return one value per sample"
        )
    reduction = cast(Any, loss).reduction
    cast(Any, loss).reduction = "none"
    try:
        yield loss
    finally:
        cast(Any, loss).reduction = reduction


def valid_mask(x: Tensor, pad_mask: Tensor | None) -> Tensor:
    """The mask (B, L) of real constituents of x (B, L, ...); all are real without a pad mask."""
    if pad_mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    return ~pad_mask


def fill_padding(values: Tensor, pad_mask: Tensor | None, fill: float) -> Tensor:
    """Put ``fill`` on padded constituents so written outputs never look like real values."""
    if pad_mask is None:
        return values
    return values.masked_fill(pad_mask, fill)


@dataclass(frozen=True)
class NamedOutput:
    """One output a task exports (an output of the ONNX graph) with what it means."""

    name: str
    value: Tensor
    task: str
    key: str
    per_constituent: str | None = None  # the constituent type of (batch, n) outputs
    class_name: str | None = None
    argmax_of: tuple[str, ...] = ()  # an argmax output: the probability outputs it summarises


class TaskBase(nn.Module):
    """A head on top of the pooled jet representation or the per-constituent embeddings.

    Subclasses implement ``forward`` (returning ``(output, loss or None)``) and ``predict``;
    tasks that read more than one label field override ``label_fields``.

    Args:
        name: unique task name, used in logged metric names and outputs.
        input_name: ``jets`` (the global object) for jet-level tasks, or a constituent type.
        label: the label field read from ``input_name``'s dataset; None for tasks that read
            several fields (they list them in ``label_fields``).
        dense_config: the head network; ``input_size`` and ``output_size`` are derived.
        loss: the loss module (any ``torch.nn`` loss by class_path).
        weight: the factor of this task's loss in the total loss.
    """

    def __init__(
        self,
        name: str,
        input_name: str,
        label: str | None,
        dense_config: DenseConfig,
        loss: nn.Module,
        weight: float = 1.0,
    ):
        super().__init__()
        if not name:
            raise ValueError("task name: expected a non-empty string")
        self.name = name
        self.input_name = input_name
        self.label = label
        self.weight = weight
        self.loss = loss
        config = dict(dense_config)
        require_sizes(name, config, ("input_size", "output_size"))
        self.net = Dense(**config)  # type: ignore[arg-type]

    def label_fields(self) -> LabelFields:
        """The fields this task needs the data layer to read, per input type."""
        if self.label is None:
            raise NotImplementedError(f"task '{self.name}' must list its label fields")
        return {self.input_name: [self.label]}

    def head(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Run the head net; the context is used only by nets built to take one."""
        if self.net.context_size:
            return self.net(x, context)
        return self.net(x)

    def forward(
        self,
        x: Tensor,
        labels: Labels | None = None,
        pad_mask: Tensor | None = None,
        context: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def predict(self, output: Tensor, pad_mask: Tensor | None = None) -> dict[str, Tensor]:
        """Turn the raw ``forward`` output into named physical outputs for a writer.

        Each value has shape (B,) for jet-level tasks or (B, L) for constituent tasks, so a
        writer can store every entry as one field; padded constituents hold NaN (floats) or -1
        (integers).
        """
        raise NotImplementedError

    def exported_outputs(
        self,
        output: Tensor,
        prefix: str,
        constituent: str | None = None,
        pad_mask: Tensor | None = None,
        main: bool = False,
    ) -> list[NamedOutput]:
        """The named outputs of an exported model (``prefix`` is the tagger name).

        By default ``<prefix>_<task>_<key>`` for every entry of :meth:`predict`, (batch,) for a
        jet task and (batch, n) for a ``constituent`` task; ``main`` marks the model's main jet
        task, whose outputs a subclass may name without the task name.
        """
        try:
            predictions = self.predict(output, pad_mask)
        except NotImplementedError:
            raise TypeError(
                f"task '{self.name}' ({type(self).__name__}) does not implement predict(), so "
                "salt does not know which outputs to export; leave it out with --tasks"
            ) from None
        return [
            NamedOutput(f"{prefix}_{self.name}_{key}", value, self.name, key, constituent)
            for key, value in predictions.items()
        ]
