"""Stop cleanly when the batch system asks the job to stop (SIGTERM, SIGUSR1).

A pre-empted job must leave a run that a requeue script can read: one ``last.ckpt`` at the step
it stopped, ``status: interrupted`` in ``metadata.yaml``, the metrics logged so far, and a
non-zero exit code (:data:`PREEMPTED_EXIT` + the signal number, as a shell reports a process
killed by that signal: 143 for SIGTERM, 138 for SIGUSR1). ``salt fit --config RUN/config.yaml
--ckpt_path last`` then continues at the same step with the same batches.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from salt.callbacks.resume_schedule import restore_shapes, schedule_shapes
from salt.utils.files import atomic_write_text

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
PREEMPTED_EXIT = 128
"""A pre-empted fit exits with ``PREEMPTED_EXIT + signal number``."""


class Preempted(SystemExit):
    """Raised once ``last.ckpt`` is written: ends the fit with :data:`PREEMPTED_EXIT` + signal,
    past Lightning's clean-up (loggers flushed, ``on_exception`` hooks run)."""

    def __init__(self, signum: int, path: Path):
        super().__init__(PREEMPTED_EXIT + signum)
        self.signum = signum
        self.path = path


def mark_interrupted(metadata: Path, checkpoint: Path, step: int) -> None:
    """``status: interrupted`` with where to resume from, written atomically."""
    if not metadata.is_file():
        return
    meta = yaml.safe_load(metadata.read_text()) or {}
    meta.update(status="interrupted", interrupted_at_step=int(step), resume_from=str(checkpoint))
    atomic_write_text(metadata, yaml.safe_dump(meta, sort_keys=False))


def save_last(trainer: L.Trainer, path: Path) -> None:
    """Write ``path`` through the periodic ``last.ckpt`` callback when it writes there, so it
    knows the file as its own (Lightning's ModelCheckpoint would otherwise write its next one
    beside it as ``last-v1.ckpt``)."""
    for callback in trainer.checkpoint_callbacks:
        if (
            isinstance(callback, ModelCheckpoint)
            and callback.save_last
            and callback.dirpath is not None
            and Path(callback.dirpath).resolve() == path.parent.resolve()
            and path.name == f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}.ckpt"
        ):
            callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))
            return
    trainer.save_checkpoint(path)


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM/SIGUSR1 (SLURM pre-emption, ``scancel``), finish the current step, write
    ``last.ckpt`` and stop at once: no validation, no epoch checkpoint.

    On resume it keeps the run's metrics history and the schedule length of the current config
    (see :mod:`salt.callbacks.resume_schedule`).

    The checkpoint is written when the current step ends, and the fit exits before the next one
    starts (once that step's metrics are logged). A signal during an epoch's last step or its
    validation lets the validation (and its epoch checkpoint) finish and stops at the end of
    that epoch, so a resume starts the next one.

    Args:
        path: where to write the checkpoint (``<run>/ckpts/last.ckpt``); the run's
            ``metadata.yaml`` is two levels up.
    """

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self.requested: int | None = None
        self._saved = False
        self._flush = False
        self._shapes: list[dict[str, Any]] = []
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is None:
            log.warning("signal %d received: stopping after this step", signum)
        self.requested = signum

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._shapes = schedule_shapes(trainer)  # before a checkpoint restores older ones

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path is not None:  # a resumed fit: keep its history, follow its config
            for logger in trainer.loggers:
                if hasattr(logger, "resume_history"):
                    logger.resume_history()
            restore_shapes(trainer, self._shapes)
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: the launcher handles signals
                return

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if self.requested is None or self._saved:
            return
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # validation and the epoch checkpoint come next: stop after them
        self._save(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        """Exit before the next step: by now the finished step's metrics are logged."""
        if self._saved:
            self._exit()
        if self._flush:  # the rows up to the last checkpoint's step, logged after it was saved
            self._flush = False
            for logger in trainer.loggers:
                logger.save()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After the validation: save now, exit before the next epoch's first step (the epoch
        checkpoint is written after this hook)."""
        if self.requested is not None and not self._saved:
            self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        log.warning("saving %s at step %d and exiting", self.path, trainer.global_step)
        save_last(trainer, self.path)
        if trainer.is_global_zero:
            metadata = self.path.parent.parent / "metadata.yaml"
            mark_interrupted(metadata, self.path, trainer.global_step)
        self._saved = True

    def _exit(self) -> None:
        assert self.requested is not None
        raise Preempted(self.requested, self.path)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Flush the loggers with every checkpoint (and once more when its step's row is
        logged), so the metrics up to a checkpoint survive a kill: a resume replays only the
        steps after it."""
        for logger in trainer.loggers:
            logger.save()
        self._flush = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
