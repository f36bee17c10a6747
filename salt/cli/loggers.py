"""Experiment loggers: Comet that works with or without an account, and the run-dir defaults."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CometLogger as LightningCometLogger

log = logging.getLogger(__name__)

API_KEY_ENV = "COMET_API_KEY"
API_KEY_PLACEHOLDER = "${COMET_API_KEY}"
_NO_KEY = f"trainer.logger CometLogger: online: true needs an API key (set {API_KEY_ENV})"


def comet_api_key(explicit: str | None) -> str | None:
    """The key Comet would use: the argument, ``COMET_API_KEY``, or Comet's own config file."""
    if explicit and explicit != API_KEY_PLACEHOLDER:
        return explicit
    if os.environ.get(API_KEY_ENV):
        return os.environ[API_KEY_ENV]
    try:
        import comet_ml

        key = comet_ml.config.get_config("comet.api_key")
        return str(key) if key else None
    except Exception:  # a broken ~/.comet.config must not stop training
        return None


class CometLogger(LightningCometLogger):
    """Lightning's :class:`~lightning.pytorch.loggers.CometLogger`, made safe for batch jobs.

    * Without an API key (argument, ``COMET_API_KEY`` or ``~/.comet.config``) it logs offline
      into ``offline_directory`` (salt sets it to ``<run dir>/comet``) instead of failing; the
      archive is uploaded later with ``comet upload <run dir>/comet/*.zip``.
    * The experiment is created on first use, i.e. once salt has validated the inputs and
      created the run directory, so a config mistake leaves nothing behind.
    * An offline experiment is ended when training ends, so its archive is complete as soon as
      ``salt fit`` returns.
    * Console capture is off by default (``auto_output_logging``): salt's own output, e.g. the
      ``name=value`` lines read by Katib, stays untouched.

    Args:
        api_key: Comet API key; better given as the ``COMET_API_KEY`` environment variable
            (salt never writes a key into the saved config).
        project: Comet project.
        workspace: Comet workspace.
        online: force online (True) or offline (False) logging; default: online when a key
            is found.
        offline_directory: where offline archives go (default ``<run dir>/comet``).
        name: experiment name (default: the run directory's name).
        tags: experiment tags.
        auto_output_logging: Comet's console capture (``simple``, ``native``) or off.
        parse_args: let Comet record the command-line arguments as parameters (off: salt's
            resolved config is the record, and a key given on the command line stays out).
        kwargs: passed on to Lightning's CometLogger / ``comet_ml.ExperimentConfig``
            (e.g. ``name``, ``tags``, ``prefix``, ``experiment_key``).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        project: str | None = "salt",
        workspace: str | None = None,
        online: bool | None = None,
        offline_directory: str | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        auto_output_logging: str | bool = False,
        parse_args: bool = False,
        **kwargs: Any,
    ):
        key = comet_api_key(api_key)
        if online is None:
            online = key is not None
        if online and key is None:
            raise ValueError(_NO_KEY)
        self._constructing = True
        # Lightning turns online=False into a *disabled* experiment that writes nothing, so the
        # offline choice is applied after construction, where comet_ml.start() sees it
        super().__init__(
            api_key=key,
            project=project,
            workspace=workspace,
            offline_directory=offline_directory,
            name=name,
            tags=tags,
            auto_output_logging=auto_output_logging,
            parse_args=parse_args,
            **kwargs,
        )
        self._online = online
        self._constructing = False
        self.offline_archive: Path | None = None

    def _create_experiment(self) -> None:
        if self._constructing:  # deferred: the run directory does not exist yet
            return
        if not self._online:
            directory = self._comet_config.offline_directory or "comet"
            Path(directory).mkdir(parents=True, exist_ok=True)
            self._comet_config.offline_directory = str(directory)
        super()._create_experiment()
        if not self._online:
            log.info("Comet logs offline into %s (no API key found)", directory)
        elif self._experiment is not None:  # Comet's own console lines are off (see console)
            log.info("Comet experiment: %s", getattr(self._experiment, "url", "") or "started")

    def finalize(self, status: str) -> None:
        if self._experiment is None:
            return
        if self._online:
            super().finalize(status)
            return
        experiment = self._experiment
        experiment.end()  # writes the offline archive now rather than at exit
        self._experiment = None
        self.offline_archive = offline_archive(experiment)  # shown by the run summary


def offline_archive(experiment: Any) -> Path | None:
    """The newest archive an ended offline experiment wrote (``<key>[-suffix].zip``)."""
    directory = getattr(experiment, "offline_directory", None)
    key = getattr(experiment, "id", None)
    if not directory or not key:
        return None
    found = sorted(Path(directory).glob(f"{key}*.zip"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


LoggerSpec = Any  # what jsonargparse parsed for trainer.logger: None, bool, Namespace or list
_COMET_CLASSES = ("lightning.pytorch.loggers.CometLogger", "salt.cli.loggers.CometLogger")
_SALT_COMET = "salt.cli.loggers.CometLogger"


def _as_list(spec: LoggerSpec) -> list[Any]:
    if spec is None or isinstance(spec, bool):
        return []
    return list(spec) if isinstance(spec, list | tuple) else [spec]


def _class_path(entry: Any) -> str:
    return str(getattr(entry, "class_path", "") or "")


def run_dir_loggers(spec: LoggerSpec, run_dir: Path) -> list[Any]:
    """The loggers of a fit: salt's CSV log (``metrics.csv``) first, then the configured ones,
    each writing inside the run directory unless told otherwise.

    ``trainer.logger: false`` leaves only the CSV log. Lightning's CometLogger is run as
    :class:`CometLogger` (same arguments, plus the offline fallback).
    """
    from jsonargparse import Namespace

    loggers: list[Any] = [
        Namespace(
            class_path="salt.metrics_csv.ResumableCSVLogger",  # keeps rows on resume
            init_args=Namespace(save_dir=str(run_dir), name="", version=""),
        )
    ]
    for entry in _as_list(spec):
        path = _class_path(entry)
        if path.endswith("CSVLogger"):
            continue  # salt's own CSV log is always there
        entry = entry.clone() if hasattr(entry, "clone") else entry
        init = entry.get("init_args") if hasattr(entry, "get") else None
        if init is None:
            init = Namespace()
            entry.init_args = init
        if path in _COMET_CLASSES:
            entry.class_path = _SALT_COMET
            if init.get("online") and comet_api_key(init.get("api_key")) is None:
                raise ValueError(_NO_KEY)
            if not init.get("offline_directory"):
                init.offline_directory = str(run_dir / "comet")
            if not init.get("name"):
                init.name = run_dir.name
        elif path.endswith(("TensorBoardLogger", "WandbLogger", "MLFlowLogger")):
            if path.endswith("MLFlowLogger"):
                if not init.get("save_dir") or init.save_dir == "./mlruns":
                    init.save_dir = str(run_dir / "mlruns")
            elif not init.get("save_dir") or init.save_dir in (".", "lightning_logs"):
                init.save_dir = str(run_dir)
                if path.endswith("TensorBoardLogger"):
                    init.name, init.version = "tensorboard", ""
        loggers.append(entry)
    return loggers


def without_credentials(spec: LoggerSpec) -> LoggerSpec:
    """The logger config as saved in the run directory: API keys replaced by a placeholder."""
    if not _as_list(spec):
        return spec
    out = []
    for entry in _as_list(spec):
        entry = entry.clone() if hasattr(entry, "clone") else entry
        init = entry.get("init_args") if hasattr(entry, "get") else None
        if init is not None and init.get("api_key"):
            init.api_key = API_KEY_PLACEHOLDER
        out.append(entry)
    return out if isinstance(spec, list | tuple) else out[0]
