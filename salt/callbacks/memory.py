"""Memory use during training, logged next to the losses (``--log_train_memory``)."""

from __future__ import annotations

from typing import Any

import lightning as L
import psutil
import torch

GB = 1024**3


class MemoryLogger(L.Callback):
    """Logs host and accelerator memory every ``every_n_steps`` training steps.

    ``memory/host_rss_gb`` is the resident memory of the training process plus its DataLoader
    workers (a leak in either shows up); with CUDA, ``memory/cuda_allocated_gb`` and
    ``memory/cuda_peak_gb`` (peak since the last log, so spikes are not averaged away) are
    logged as well. Values are plain host numbers: logging them costs no device sync.

    Args:
        every_n_steps: steps between measurements.
        include_workers: add the resident memory of child processes (DataLoader workers).
    """

    def __init__(self, every_n_steps: int = 50, include_workers: bool = True):
        super().__init__()
        if every_n_steps < 1:
            raise ValueError(f"MemoryLogger.every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.include_workers = include_workers
        self._process = psutil.Process()

    def host_rss(self) -> float:
        """Resident memory of this process (and its children) in GB."""
        total = self._process.memory_info().rss
        if self.include_workers:
            for child in self._process.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:  # a worker that just exited
                    continue
        return total / GB

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        values = {"memory/host_rss_gb": self.host_rss()}
        device = pl_module.device
        if device.type == "cuda":
            values["memory/cuda_allocated_gb"] = torch.cuda.memory_allocated(device) / GB
            values["memory/cuda_peak_gb"] = torch.cuda.max_memory_allocated(device) / GB
            torch.cuda.reset_peak_memory_stats(device)
        pl_module.log_dict(values, on_step=True, on_epoch=False, batch_size=1)
