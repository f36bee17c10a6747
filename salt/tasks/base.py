"""What every task head shares: the label it learns, its weight in the total loss, its head net."""

from __future__ import annotations

from torch import Tensor, nn

from salt.models.configs import DenseConfig
from salt.models.dense import Dense


class TaskBase(nn.Module):
    """A head on top of the pooled jet representation or the per-constituent embeddings.

    Args:
        name: unique task name, used in logged metric names and outputs.
        input_name: ``jets`` (the global object) for jet-level tasks, or a constituent type.
        label: the label field read from ``input_name``'s dataset.
        dense_config: the head network; ``input_size`` and ``output_size`` are derived.
        loss: the loss module (any ``torch.nn`` loss by class_path).
        weight: the factor of this task's loss in the total loss.
    """

    def __init__(
        self,
        name: str,
        input_name: str,
        label: str,
        dense_config: DenseConfig,
        loss: nn.Module,
        weight: float = 1.0,
    ):
        super().__init__()
        self.name = name
        self.input_name = input_name
        self.label = label
        self.weight = weight
        self.loss = loss
        config = dict(dense_config)
        for key in ("input_size", "output_size"):
            if config.get(key) is None:
                raise ValueError(
                    f"task '{name}': dense_config.{key} is not set (salt derives it from the "
                    "config; set it yourself when building the task in Python)"
                )
        self.net = Dense(**config)  # type: ignore[arg-type]

    def label_fields(self) -> dict[str, list[str]]:
        """The fields this task needs the data layer to read, per input type."""
        return {self.input_name: [self.label]}

    def forward(
        self,
        x: Tensor,
        labels: dict[str, dict[str, Tensor]] | None = None,
        pad_mask: Tensor | None = None,
        context: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError
