"""Where training time goes: waiting for data or computing.

:class:`StepTimer` splits the wall time of each training step into

- *data wait*: from the end of the previous step (or the start of the epoch) to the start of
  this one: loading the batch (the HDF5 read and batch building when ``num_workers`` is 0,
  otherwise waiting on the workers), moving it to the device, and anything other callbacks do
  between steps (e.g. writing a checkpoint);
- *compute*: from the start to the end of the step: forward, loss, backward, optimizer.

and logs both, with the share of time spent waiting (``time/data_share``): near 0 the loader
keeps up; a large share means more ``data.num_workers``, bigger ``data.chunk_size`` or faster
storage will speed training up, a bigger model will not slow it down.

It reads only the host clock: no device synchronisation unless ``cuda_sync`` is set. On a GPU
the host runs ahead of the device, so without it some compute time shows up as data wait at
the next point the host waits for the device; with it the split is exact but training a little
slower. For a function-level breakdown use Lightning's profilers (``trainer.profiler: simple``,
``advanced`` or ``pytorch``), see ``configs/toolbox/profiling.yaml``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
import torch

log = logging.getLogger(__name__)


class StepTimer(L.Callback):
    """Log the data-wait and compute time of every training step and their share per epoch.

    Logged (under ``prefix``): ``data_wait`` and ``compute`` (seconds, per step),
    ``data_share`` (per step) and ``data_share_epoch`` (the epoch's total wait over its total
    step time); a one-line summary per epoch goes to the ``salt`` log.

    Args:
        cuda_sync: synchronise the GPU at step boundaries for an exact split (slower).
        prefix: the logged names' prefix.
        skip_first: leave the first N steps of each epoch out of the epoch summary (the first
            step includes starting the loader, and compilation with ``--compile``).
    """

    def __init__(self, cuda_sync: bool = False, prefix: str = "time/", skip_first: int = 0):
        super().__init__()
        if skip_first < 0:
            raise ValueError(f"StepTimer: skip_first must be >= 0, got {skip_first}")
        self.cuda_sync = cuda_sync
        self.prefix = prefix
        self.skip_first = skip_first
        self.data_wait: list[float] = []  # this epoch's steps
        self.compute: list[float] = []
        self._mark: float | None = None
        self._start: float | None = None

    def _now(self, pl_module: L.LightningModule) -> float:
        if self.cuda_sync and pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.data_wait, self.compute = [], []
        self._mark = self._now(pl_module)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        now = self._now(pl_module)
        self._start = now
        self.data_wait.append(now - (self._mark if self._mark is not None else now))

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._start is None:
            return
        now = self._now(pl_module)
        compute = now - self._start
        self.compute.append(compute)
        self._mark = now
        wait = self.data_wait[-1]
        total = wait + compute
        p = self.prefix
        for name, value in (
            ("data_wait", wait),
            ("compute", compute),
            ("data_share", wait / total if total > 0 else 0.0),
        ):
            pl_module.log(f"{p}{name}", value, on_step=True, on_epoch=False, batch_size=1)

    def summary(self) -> dict[str, float]:
        """This epoch's totals (seconds) and data share, without the first ``skip_first`` steps."""
        n = min(len(self.data_wait), len(self.compute))
        waits = self.data_wait[self.skip_first : n]
        computes = self.compute[self.skip_first : n]
        wait, compute = float(sum(waits)), float(sum(computes))
        total = wait + compute
        return {
            "steps": float(len(waits)),
            "data_wait": wait,
            "compute": compute,
            "data_share": wait / total if total > 0 else 0.0,
        }

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        stats = self.summary()
        if not stats["steps"]:
            return
        pl_module.log(f"{self.prefix}data_share_epoch", stats["data_share"], batch_size=1)
        if trainer.is_global_zero:
            log.info(
                "epoch %d: %.0f steps, %.2f s waiting for data, %.2f s computing (%.0f%% waiting)",
                trainer.current_epoch,
                stats["steps"],
                stats["data_wait"],
                stats["compute"],
                100 * stats["data_share"],
            )
