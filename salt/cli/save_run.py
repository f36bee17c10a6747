"""Lightning's config-saving hook, made to write salt's run directory.

At the start of ``salt fit`` (once the data module has checked its files) it writes, on global
rank 0 only: the resolved ``config.yaml`` (data paths absolute, norm/class dicts and muP shapes
copied in, no credentials, no one-off flags), ``metadata.yaml`` (host, versions, git hash, row
counts, parameter count, status) and the copied dicts. The status becomes ``finished`` or
``interrupted`` when the fit ends. A resumed run only records that it was resumed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, SaveConfigCallback

from salt.cli.loggers import LoggerSpec, without_credentials
from salt.cli.run_dir import absolute_spec, copy_into, update_metadata, write_metadata
from salt.redact import redact_yaml
from salt.s3.cli import S3Session
from salt.utils.files import atomic_write_text
from salt.utils.modules import count_parameters

log = logging.getLogger(__name__)

# config keys that are derived from the run directory when left empty: saved empty again, so a
# copied run directory stays self-consistent
RUN_DIR_PATHS = (("checkpoint", "dirpath"), ("last_checkpoint", "dirpath"))


class SaveRunDirectory(SaveConfigCallback):
    """Writes ``config.yaml`` and ``metadata.yaml`` into the run directory (see module doc).

    Args:
        parser, config: the ``fit`` parser and its parsed config (given by LightningCLI).
        run_dir: the run directory chosen by the CLI.
        resuming: a resumed run: only update the metadata.
        user_loggers: ``trainer.logger`` as the user wrote it (saved without credentials).
        derived: the ``(section, key)`` paths filled in from the run directory.
        s3: the S3 session when data or run directory live in a bucket.
    """

    def __init__(
        self,
        parser: LightningArgumentParser,
        config: Namespace,
        run_dir: Path,
        resuming: bool = False,
        user_loggers: LoggerSpec = None,
        derived: tuple[tuple[str, str], ...] = (),
        s3: S3Session | None = None,
    ):
        super().__init__(parser, config, save_to_log_dir=False)
        self.run_dir = Path(run_dir)
        self.resuming = resuming
        self.user_loggers = user_loggers
        self.derived = derived
        self.s3 = s3

    @property
    def metadata_path(self) -> Path:
        return self.run_dir / "metadata.yaml"

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        cfg = self.config
        if self.resuming:
            update_metadata(self.metadata_path, status="running", resumed=cfg.ckpt_path)
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        text = self.parser.dump(self.saved_config(), skip_none=False, skip_link_targets=True)
        text = redact_yaml(text)  # a secret left in the config never reaches the run directory
        atomic_write_text(self.run_dir / "config.yaml", text)
        datamodule: Any = trainer.datamodule  # type: ignore[attr-defined]
        rows = {s: d.num_rows for s, d in datamodule.datasets.items()}
        write_metadata(
            self.metadata_path,
            {
                "name": cfg.name,
                "run_dir": str(self.run_dir.resolve()),
                "status": "running",
                "data": {
                    f"{s}_file": absolute_spec(getattr(cfg.data, f"{s}_file"))
                    for s in ("train", "val", "test")
                },
                "num_rows": rows,
                "trainable_parameters": count_parameters(pl_module, trainable=True),
            },
        )

    def saved_config(self) -> Namespace:
        """The config as ``config.yaml`` records it: enough to rerun or evaluate the run from
        its directory alone."""
        saved = self.config.clone()
        run_dir = self.run_dir
        norm_copy = copy_into(run_dir, saved.data.norm_dict)
        class_copy = copy_into(run_dir, saved.data.class_dict)
        saved.data.norm_dict = str(norm_copy.resolve()) if norm_copy else None
        saved.data.class_dict = str(class_copy.resolve()) if class_copy else None
        for split in ("train", "val", "test"):
            key = f"{split}_file"
            if saved.data[key] is not None:
                saved.data[key] = absolute_spec(saved.data[key])
        muP_config = saved.model.get("muP_config")
        if muP_config:  # the run directory carries its base shapes, by absolute path
            from salt.mup.config import storeshapes_path

            shapes = run_dir / "muP"
            shapes.mkdir(exist_ok=True)
            copy_into(shapes, storeshapes_path(muP_config))
            saved.model.muP_config = {**muP_config, "shape_path": str(shapes.resolve())}
        for section, key in self.derived:
            saved[section][key] = None
        saved.force = saved.overwrite = False
        saved.ckpt_path = None
        saved.trainer.plugins = None
        saved.trainer.logger = without_credentials(self.user_loggers)
        if self.s3 is not None:  # s3:// URLs instead of local copies, keys as placeholders
            self.s3.restore_saved(saved)
        return saved

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            update_metadata(self.metadata_path, status="finished")

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """``interrupted`` (resumable) or ``failed``: a run that stopped never says ``running``."""
        if not trainer.is_global_zero or not self.metadata_path.is_file():
            return
        if isinstance(exception, SystemExit):  # a pre-emption: its callback wrote the status
            return
        status = "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed"
        try:
            update_metadata(self.metadata_path, status=status)
        except OSError as err:  # a full disk may refuse this too; the run's own error is shown
            log.warning("could not mark %s as %s: %s", self.metadata_path, status, err)
