"""Report each validation epoch's metrics to a hyperparameter search (Kubeflow Katib).

A search needs the numbers it optimises in a form it can read without knowing salt:
:class:`PerformanceWriter` keeps a JSON file with one record per validation, and optionally
prints ``name=value`` lines to stdout, which Katib's default ``StdOut`` metrics collector parses
with the regular expression :data:`KATIB_METRIC`. That expression's name group takes only
letters, digits, ``_``, ``-`` and ``|``, so salt's names are printed under :func:`katib_name`:
every other character becomes ``_`` (``val/loss`` → ``val_loss``,
``val/jets_classification_accuracy`` → ``val_jets_classification_accuracy``). The JSON file
keeps salt's own names.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

from salt.utils.files import atomic_write_text

log = logging.getLogger(__name__)

KATIB_METRIC = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")
"""The default metrics filter of Katib's StdOut collector (name group, value group)."""

_NOT_KATIB = re.compile(r"[^A-Za-z0-9_-]")


def katib_name(name: str) -> str:
    """The name a metric is printed under: Katib's regex would cut ``val/loss`` at the ``/``."""
    return _NOT_KATIB.sub("_", name)


def katib_line(name: str, value: float) -> str:
    """``name=value`` with the shortest text that reads back as exactly ``value``.

    ``repr`` of a finite float is digits, an optional fraction and an optional exponent
    (``0.5``, ``1e-12``, ``-3.5e+20``): all within Katib's value group.
    """
    if not math.isfinite(value):
        raise ValueError(f"Katib cannot read the non-finite value {value} of '{name}'")
    return f"{katib_name(name)}={float(value)!r}"


def default_metrics(pl_module: L.LightningModule) -> list[str]:
    """What salt's module logs at validation: the losses, jet-level accuracies, regularisers."""
    from salt.tasks.classification import jet_classifications

    names = ["train/loss", "val/loss"]
    model = getattr(pl_module, "model", None)
    tasks = list(getattr(model, "tasks", []))
    global_object = getattr(model, "global_object", "jets")
    names += [f"val/{task.name}_loss" for task in tasks]
    names += [f"val/{task.name}_accuracy" for task in jet_classifications(tasks, global_object)]
    names += [f"val/{reg.name}" for reg in getattr(pl_module, "regularisers", [])]
    return names


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


class PerformanceWriter(L.Callback):
    """After every validation of ``salt fit``, append the metrics to a JSON file (and stdout).

    The file (``dir_path/file_name``) holds a list of records
    ``{"epoch": 0, "step": 40, "metrics": {"val/loss": 0.61, ...}}``, rewritten through a
    temporary file after each validation, so a search can read it at any time. The records
    travel in the checkpoints too: a resumed run continues the file from the checkpoint.

    With ``stdOut`` every metric is also printed on its own line as ``<katib name>=<value>``
    (see :func:`katib_name`), for Katib's ``StdOut`` collector. A value that is NaN or infinite
    is not printed (Katib cannot read it; a warning says so) and is ``null`` in the file. A
    requested metric that is not logged is named once in a warning, with the available ones.

    Only global rank 0 writes; the sanity check and ``salt validate`` are not recorded.

    Args:
        dir_path: the folder of the file (default: the run directory,
            ``trainer.default_root_dir``).
        add_metrics: metrics to report besides the defaults (``train/loss``, ``val/loss``,
            ``val/<task>_loss`` of every task, ``val/<task>_accuracy`` of the jet-level
            classification tasks, ``val/<regulariser>``), e.g. ``train/jets_classification_loss``.
        stdOut: also print ``name=value`` lines for Katib's StdOut metrics collector (the name
            is the one Katib configurations use).
        file_name: the JSON file's name.
        overwrite: replace an existing file in an explicit ``dir_path`` when a new fit starts
            (the run directory itself is guarded by ``--force``).
    """

    def __init__(
        self,
        dir_path: str | Path | None = None,
        add_metrics: list[str] | None = None,
        stdOut: bool = False,
        file_name: str = "performance.json",
        overwrite: bool = False,
    ):
        super().__init__()
        if not file_name:
            raise ValueError("PerformanceWriter: file_name must not be empty")
        self.dir_path = None if dir_path is None else Path(dir_path)
        self.add_metrics = list(add_metrics or [])
        self.stdOut = stdOut
        self.file_name = file_name
        self.overwrite = overwrite
        self.path: Path | None = None
        self.metrics: list[str] = []
        self.records: list[dict[str, Any]] = []
        self._warned: set[str] = set()

    @property
    def state_key(self) -> str:
        return self._generate_state_key(dir_path=str(self.dir_path), file_name=self.file_name)

    # -- set-up -----------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # salt sets default_root_dir to the run directory; trainer.log_dir would follow the
        # first logger, which may keep its files in a sub-folder (or nowhere locally)
        folder = self.dir_path or Path(trainer.default_root_dir)
        self.path = folder / self.file_name
        self.metrics = _unique([*default_metrics(pl_module), *self.add_metrics])
        printed: dict[str, str] = {}
        for name in self.metrics:
            other = printed.setdefault(katib_name(name), name)
            if other != name:
                raise ValueError(
                    f"PerformanceWriter: metrics '{other}' and '{name}' would both be printed "
                    f"as '{katib_name(name)}'; rename one or leave it out of add_metrics"
                )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        resuming = trainer.ckpt_path is not None
        explicit = self.dir_path is not None
        path = self.path
        if not resuming and explicit and not self.overwrite and path and path.exists():
            raise FileExistsError(
                f"PerformanceWriter: '{path}' exists; set overwrite: true to replace it, "
                "or choose another dir_path/file_name"
            )
        if not resuming:
            self.records = []

    # -- per validation -----------------------------------------------------------------------
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if trainer.state.fn != TrainerFn.FITTING:
            return
        values = self._collect(trainer.callback_metrics)
        record = {"epoch": trainer.current_epoch, "step": trainer.global_step, "metrics": values}
        self.records.append(record)
        self._write()
        if self.stdOut:
            self._print(trainer, values)

    def _collect(self, logged: dict[str, Any]) -> dict[str, float | None]:
        missing = [n for n in self.metrics if n not in logged and n not in self._warned]
        if missing:
            self._warned.update(missing)
            log.warning(
                "PerformanceWriter: %s not logged (available: %s)",
                ", ".join(f"'{n}'" for n in missing),
                ", ".join(sorted(logged)) or "none",
            )
        values: dict[str, float | None] = {}
        for name in self.metrics:
            if name in logged:
                value = float(logged[name])
                values[name] = value if math.isfinite(value) else None
        return values

    def _write(self) -> None:
        assert self.path is not None, "PerformanceWriter used before setup"
        text = json.dumps(self.records, indent=1, allow_nan=False)
        atomic_write_text(self.path, text + "\n")

    def _print(self, trainer: L.Trainer, values: dict[str, float | None]) -> None:
        lines = []
        for name, value in values.items():
            if value is None:
                log.warning("PerformanceWriter: '%s' is not finite; not printed", name)
                continue
            lines.append(katib_line(name, value))
        if not lines:
            return
        text = "\n".join(lines)
        bar = trainer.progress_bar_callback
        if bar is not None and getattr(bar, "is_enabled", True):
            bar.print(text)  # above the progress bar, which would otherwise share the line
        else:
            print(text)  # stdout is the interface here: Katib reads it
        sys.stdout.flush()

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"records": list(self.records)}  # a snapshot: later epochs are not in it

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.records = list(state_dict.get("records", []))
