"""salt's progress bar and model summary: Lightning's Rich versions without the parts that say
nothing about a salt run (the logger's version number, a speed of 0.00it/s before the first
batch, a FLOPs column that is always zero because salt models have no example input)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichModelSummary, RichProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import ProcessingSpeedColumn
from lightning.pytorch.utilities.model_summary import get_human_readable_count
from rich.console import RenderableType
from rich.progress import Task
from rich.text import Text

HIDDEN_METRICS = ("v_num",)


class SpeedColumn(ProcessingSpeedColumn):
    """Batches per second, blank until there is a measurement."""

    def render(self, task: Task) -> RenderableType:
        if task.speed is None:
            return Text("")
        return Text(f"{task.speed:>.2f}it/s", style=self.style)


class SaltProgressBar(RichProgressBar):
    """The progress bar of every salt command that runs the network (see module doc)."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        for name in HIDDEN_METRICS:
            metrics.pop(name, None)
        return metrics

    def configure_columns(self, trainer: L.Trainer) -> list:
        return [
            SpeedColumn(style=self.theme.processing_speed)
            if isinstance(column, ProcessingSpeedColumn)
            else column
            for column in super().configure_columns(trainer)
        ]


class SaltModelSummary(RichModelSummary):
    """Modules with their parameter counts, and the totals, in one table and one line."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        from rich import get_console
        from rich.table import Table

        skipped = {"Mode"} if total_flops else {"Mode", "FLOPs"}
        columns = [(name, values) for name, values in summary_data if name not in skipped]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name, _ in columns:
            table.add_column(name, justify="left" if name in ("Name", "Type") else "right")
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        frozen = total_parameters - trainable_parameters
        totals = f"{get_human_readable_count(int(trainable_parameters))} trainable parameters"
        if frozen:
            totals += f", {get_human_readable_count(int(frozen))} frozen"
        totals += f" ({model_size:.2f} MB)"
        if total_flops:
            totals += f", {get_human_readable_count(int(total_flops))} FLOPs"
        console.print(totals)


def console_callbacks(trainer_config: dict[str, Any], fitting: bool) -> list[L.Callback]:
    """salt's progress bar, model summary and (for a fit) run summary, unless the config turns
    them off or brings its own."""
    from lightning.pytorch.callbacks import ModelSummary, ProgressBar

    from salt.callbacks.run_summary import RunSummary

    given = trainer_config.get("callbacks") or []
    given = given if isinstance(given, list) else [given]
    extra: list[L.Callback] = []
    if trainer_config.get("enable_progress_bar") is not False and not any(
        isinstance(c, ProgressBar) for c in given
    ):
        extra.append(SaltProgressBar())
    if (
        fitting
        and trainer_config.get("enable_model_summary") is not False
        and not any(isinstance(c, ModelSummary) for c in given)
    ):
        extra.append(SaltModelSummary())
    if fitting:
        extra.append(RunSummary())
    return extra
