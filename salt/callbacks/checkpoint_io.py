"""Checkpoints written to a temporary name and renamed (a crash never leaves a broken file),
and read without unpickling code (see :mod:`salt.safe_load`)."""

from __future__ import annotations

import errno
import logging
import os
import resource
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from salt.safe_load import load_checkpoint
from salt.utils.files import current_umask

log = logging.getLogger(__name__)


TEMP_PATTERN = ".*.ckpt.*.tmp"
"""The temporary files :class:`AtomicCheckpointIO` writes before renaming them."""


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Remove the temporary files killed writes left in ``directory``; return them.

    Called at a fit's first save there: a run directory is claimed by one command at a time,
    so no other process is writing one of them.
    """
    removed = []
    for stale in directory.glob(TEMP_PATTERN):
        try:
            stale.unlink()
        except OSError:
            continue
        removed.append(stale)
    if removed:
        log.info("removed %d unfinished checkpoint write(s) in %s", len(removed), directory)
    return removed


def write_failure_reason(err: BaseException, directory: Path) -> tuple[int, str]:
    """Why a write stopped (errno, words): torch reports a refused write as an inconsistent
    stream position, which says nothing about a file-size limit or a full disk."""
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        return errno.EFBIG, f"File too large: the file-size limit (ulimit -f) is {soft} bytes"
    if shutil.disk_usage(directory).free < 1 << 20:
        return errno.ENOSPC, "No space left on device"
    code = getattr(err, "errno", None) or errno.EIO
    return code, getattr(err, "strerror", None) or str(err).splitlines()[0]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save with ``torch.save`` into a temporary file in the same directory, then ``os.replace``.

    If the disk fills up or the job is killed mid-write, the previous checkpoint of that name
    is untouched. A write cut short by SIGKILL leaves its hidden temporary file
    (``.last.ckpt.<random>.tmp``, never taken for a checkpoint); the first save into that
    directory by the next fit (the resume) removes it. Loading (``--ckpt_path`` for resume,
    test, predict) goes through salt's allow-list loader, so a crafted or broken file is
    refused in one line naming it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._swept: set[Path] = set()

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.parent not in self._swept:
            self._swept.add(target.parent)
            remove_stale_temporaries(target.parent)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~current_umask())  # as a plain write would; mkstemp gives 0600
            with os.fdopen(fd, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException as err:
            written = Path(tmp).stat().st_size if Path(tmp).exists() else 0
            Path(tmp).unlink(missing_ok=True)
            if isinstance(err, (OSError, RuntimeError)):  # torch's zip writer: RuntimeError
                code, reason = write_failure_reason(err, target.parent)
                failed = OSError(
                    f"checkpoint {target}: the write failed after {written} bytes ({reason}); "
                    "the file of that name from before, if any, is intact"
                )
                failed.errno = code  # for callers that test it; the message stays one sentence
                raise failed from err
            raise

    def load_checkpoint(
        self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location)
