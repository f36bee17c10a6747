"""Save a checkpoint when the batch system asks the job to stop (SIGTERM, SIGUSR1)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import FrameType

import lightning as L

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM/SIGUSR1 (SLURM pre-emption, ``scancel``), finish the current step, write
    ``last.ckpt`` and stop, so ``salt fit ... --ckpt_path last`` resumes where it was.

    Args:
        path: where to write the checkpoint (``<run>/ckpts/last.ckpt``).
    """

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self.requested: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: the launcher handles signals
                return

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if self.requested is None:
            return
        log.warning("signal %d received: saving %s and stopping", self.requested, self.path)
        trainer.save_checkpoint(self.path)
        trainer.should_stop = True
        self.requested = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous = {}
