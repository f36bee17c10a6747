"""The checkpoints every fit writes into ``<run dir>/ckpts``.

Declared as their own config sections (``checkpoint:``, ``last_checkpoint:``, ``preemption:``), so
``--print_config`` shows them and ``--checkpoint.save_top_k 3`` changes them. Without a
``dirpath`` they write into ``<trainer.default_root_dir>/ckpts``, i.e. the run directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from salt.callbacks.preemption import PreemptionCheckpoint

CKPT_SUBDIR = "ckpts"
EPOCH_FILENAME = "epoch={epoch:03d}-val_loss={val/loss:.5f}"


def checkpoint_val_loss(name: str) -> float | None:
    """The validation loss an epoch checkpoint's file name records (``...val_loss=0.51234.ckpt``),
    or None for other files (``last.ckpt``)."""
    stem = name[: -len(".ckpt")] if name.endswith(".ckpt") else None
    if stem is None or "val_loss=" not in stem:
        return None
    try:
        return float(stem.split("val_loss=")[-1])
    except ValueError:
        return None


def lowest_val_loss(names: Iterable[str]) -> str | None:
    """The name with the lowest recorded validation loss (what ``salt test`` evaluates)."""
    scored = [(loss, name) for name in names if (loss := checkpoint_val_loss(name)) is not None]
    return min(scored)[1] if scored else None


def run_ckpt_dir(default_root_dir: str | Path) -> Path:
    """Where a run keeps its checkpoints."""
    return Path(default_root_dir) / CKPT_SUBDIR


class _RunDirCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint writing into ``<run dir>/ckpts`` when no ``dirpath`` is given."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = str(run_ckpt_dir(trainer.default_root_dir))
        super().setup(trainer, pl_module, stage)


class EpochCheckpoint(_RunDirCheckpoint):
    """One checkpoint per validation, named by epoch and validation loss
    (``epoch=012-val_loss=0.51234.ckpt``: ``salt test`` picks the lowest by name).

    Args:
        dirpath: where to write (default ``<run dir>/ckpts``).
        save_top_k: keep the k checkpoints with the lowest ``monitor`` (-1: every one).
        monitor: the logged value that ranks checkpoints.
        mode: ``min`` or ``max`` of ``monitor``.
        filename: the name pattern (Lightning's format, metric names not inserted).
    """

    def __init__(
        self,
        dirpath: str | None = None,
        save_top_k: int = -1,
        monitor: str = "val/loss",
        mode: Literal["min", "max"] = "min",
        filename: str = EPOCH_FILENAME,
    ):
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=monitor,
            mode=mode,
            save_top_k=save_top_k,
            save_last=False,
            auto_insert_metric_name=False,
            # a resume that replays an epoch whose checkpoint was written before the kill writes
            # it again under its own name, not beside it as "...-v1.ckpt"
            enable_version_counter=False,
        )


class LastCheckpoint(_RunDirCheckpoint):
    """``last.ckpt`` every ``every_n_train_steps`` steps, so a killed job loses at most that
    many steps (``salt fit ... --ckpt_path last`` resumes from it).

    A save due at an epoch's last step is written at the end of the epoch instead, after its
    validation and epoch checkpoint: Lightning resumes a checkpoint of the last step in the next
    epoch, so a kill during that validation would lose the epoch's validation for good.

    Args:
        dirpath: where to write (default ``<run dir>/ckpts``).
        every_n_train_steps: steps between writes.
    """

    def __init__(self, dirpath: str | None = None, every_n_train_steps: int = 200):
        super().__init__(
            dirpath=dirpath,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every_n_train_steps,
            # one last.ckpt per run, replaced atomically: never last-v1.ckpt beside it (a run
            # resumed after a move, whose saved folder Lightning no longer recognises)
            enable_version_counter=False,
        )
        self._due_at_epoch_end = False

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        epoch_loop = trainer.fit_loop.epoch_loop
        if epoch_loop.batch_progress.is_last_batch and pl_module.automatic_optimization:
            every = self._every_n_train_steps
            self._due_at_epoch_end = every >= 1 and trainer.global_step % every == 0
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        due, self._due_at_epoch_end = self._due_at_epoch_end, False
        if due and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class RunPreemptionCheckpoint(PreemptionCheckpoint):
    """:class:`~salt.callbacks.preemption.PreemptionCheckpoint` writing, unless told otherwise,
    the ``last.ckpt`` that ``--ckpt_path last`` resumes from.

    Args:
        path: where to write the checkpoint (default ``<run dir>/ckpts/last.ckpt``).
    """

    def __init__(self, path: str | None = None):
        super().__init__(path if path is not None else "last.ckpt")
        self._derive_path = path is None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._derive_path:
            self.path = run_ckpt_dir(trainer.default_root_dir) / "last.ckpt"
