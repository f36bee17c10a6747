"""What a finished ``salt fit`` tells the user: where the run is, which checkpoint ``salt test``
will pick and how good it was, how long it took and how fast it trained."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from torch import Tensor

from salt.callbacks.checkpoint import EpochCheckpoint

log = logging.getLogger(__name__)


def batch_jets(batch: Any) -> int:
    """The number of jets in a batch ``(inputs, pad_masks, labels)``: the length of its first
    input tensor (0 for a batch of another shape)."""
    inputs = batch[0] if isinstance(batch, list | tuple) and batch else None
    if isinstance(inputs, dict):
        first = next(iter(inputs.values()), None)
        if isinstance(first, Tensor) and first.ndim > 0:
            return int(first.shape[0])
    return 0


def format_duration(seconds: float) -> str:
    """``42.3 s``, ``12 min 05 s``, ``3 h 07 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class RunSummary(L.Callback):
    """Measures a fit for its end-of-fit summary (:func:`log_fit_summary` logs it once the
    trainer has finished, after the progress bar and the loggers' last lines).

    Training speed counts the jets of every training batch on every process, over the time
    spent outside validation, so it is comparable between runs with different validation sets.
    """

    def __init__(self) -> None:
        self.jets = 0
        self.fit_start = 0.0
        self.validation_time = 0.0
        self._validation_start: float | None = None
        self.first_epoch = 0
        self.fit_end: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.jets = 0
        self.validation_time = 0.0
        self.fit_start = time.monotonic()
        self.fit_end = None
        self.first_epoch = trainer.current_epoch

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self.jets += batch_jets(batch) * trainer.world_size

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validation_start = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._validation_start is not None:
            self.validation_time += time.monotonic() - self._validation_start
            self._validation_start = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_end = time.monotonic()

    def summary(self, trainer: L.Trainer) -> str:
        """Epochs, time and speed; run directory, best checkpoint, Comet archive, next step."""
        elapsed = (self.fit_end or time.monotonic()) - self.fit_start
        training = max(elapsed - self.validation_time, 1e-9)
        epochs = trainer.current_epoch - self.first_epoch
        span = f"{epochs} epoch{'s' if epochs != 1 else ''}"
        if self.first_epoch:
            span += f" (resumed at epoch {self.first_epoch})"
        lines = [
            f"fit finished: {span} in {format_duration(elapsed)}, "
            f"{self.jets:,} training jets at {self.jets / training:,.0f} jets/s",
            f"  run directory:   {trainer.default_root_dir}",
        ]
        best = self._best(trainer)
        if best is not None:
            path, monitor, score = best
            lines.append(f"  best checkpoint: {path} ({monitor} {score:.5g})")
        for logger in trainer.loggers:
            archive = getattr(logger, "offline_archive", None)
            if archive is not None:
                lines.append(f"  comet archive:   {archive} (to upload: comet upload <archive>)")
        config = Path(trainer.default_root_dir) / "config.yaml"
        if config.is_file():
            lines.append(f"  evaluate it:     salt test --config {config}")
        return "\n".join(lines)

    @staticmethod
    def _best(trainer: L.Trainer) -> tuple[str, str, float] | None:
        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, EpochCheckpoint) and callback.best_model_path:
                score = callback.best_model_score
                if score is None:
                    continue
                return callback.best_model_path, str(callback.monitor), float(score)
        return None


def log_fit_summary(trainer: L.Trainer) -> None:
    """Log the summary of a finished fit (global rank zero, when a :class:`RunSummary` ran)."""
    if not trainer.is_global_zero:
        return
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(callback, RunSummary) and callback.fit_end is not None:
            log.info("%s", callback.summary(trainer))
