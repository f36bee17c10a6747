"""``metrics.csv`` that survives a resume: the rows of the steps before the checkpoint are kept.

Lightning's CSVLogger deletes an existing ``metrics.csv`` when it starts, so resuming a killed run
(``--ckpt_path last``) lost the validation history of every earlier epoch. This logger decides
at its first write: a resumed fit (``resume`` set, e.g. by
:class:`~salt.callbacks.preemption.PreemptionCheckpoint` when the trainer restored a checkpoint)
keeps the file and drops only the rows the killed run wrote after its checkpoint, since those
steps are logged again; a new fit in a reused directory starts a new file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from salt.utils.files import atomic_write_text


class HistoryWriter(ExperimentWriter):
    """Lightning's CSV writer that, when resuming, appends to an existing file."""

    def __init__(self, log_dir: str):
        self.resume = False
        self._started = False
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        """Nothing is removed before the first write (whether this fit resumes is known then)."""

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        if not self._started:
            self._start(step)
        super().log_metrics(metrics_dict, step)

    def _start(self, first_step: int | None) -> None:
        self._started = True
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        if not self.resume:
            path.unlink()
            return
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), [])
        self.metrics_keys = sorted(header)
        if first_step is not None:
            drop_rows_from(path, first_step)


def drop_rows_from(path: Path, step: int) -> None:
    """Remove the rows logged at ``step`` or later (a killed run's steps after its checkpoint)."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    kept = [row for row in rows if not row.get("step") or int(float(row["step"])) < step]
    if len(kept) == len(rows):
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(kept)
    atomic_write_text(path, text.getvalue())


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger whose ``metrics.csv`` keeps the history of a resumed run.

    Args:
        save_dir: as for CSVLogger (the run directory).
        name: as for CSVLogger.
        version: as for CSVLogger.
        **kwargs: the other CSVLogger arguments.
    """

    def __init__(
        self,
        save_dir: str | Path,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        **kwargs: Any,
    ):
        super().__init__(save_dir, name=name, version=version, **kwargs)

    @property
    def experiment(self) -> HistoryWriter:  # type: ignore[override]
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = HistoryWriter(self.log_dir)
        return self._experiment  # type: ignore[return-value]

    def resume_history(self) -> None:
        """Keep the rows already in ``metrics.csv`` (call before the first step is logged)."""
        self.experiment.resume = True
