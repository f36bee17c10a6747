"""Checkpoints written to a temporary name and renamed: a crash never leaves a broken file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from salt.utils.files import current_umask


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save with ``torch.save`` into a temporary file in the same directory, then ``os.replace``.

    If the disk fills up or the job is killed mid-write, the previous checkpoint of that name
    is untouched.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~current_umask())  # as a plain write would; mkstemp gives 0600
            with os.fdopen(fd, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
