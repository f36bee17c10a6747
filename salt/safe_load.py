"""Read checkpoints without running code from them, and say in one line why a file is refused.

``torch.load(weights_only=False)`` unpickles arbitrary objects: a crafted ``.ckpt`` runs code
on ``salt test`` or ``to_onnx``. Salt's checkpoints hold only tensors, numbers, strings,
containers and (in callback states) paths, so they load with ``weights_only=True``; the few
non-builtin types they may contain are listed in :data:`ALLOWED_GLOBALS`, and a checkpoint that
names anything else is refused before it is unpickled.

A checkpoint that is empty, truncated (a job killed or a disk filled mid-write by a writer that
is not atomic), or not a checkpoint at all (an HDF5 or YAML file passed by mistake) gives a
:class:`CheckpointError` naming the file, and, for a broken file inside a run's ``ckpts/``, the
newest intact checkpoint beside it.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.serialization import get_unsafe_globals_in_checkpoint, safe_globals

ALLOWED_GLOBALS: tuple[Any, ...] = (
    pathlib.PosixPath,
    pathlib.PurePosixPath,
    pathlib.WindowsPath,
    pathlib.PureWindowsPath,
)
"""Types beyond torch's own safe set that a salt checkpoint may contain (callback states may
keep a directory as a ``Path``)."""

_ALLOWED_NAMES = {f"{t.__module__}.{t.__qualname__}" for t in ALLOWED_GLOBALS}


class CheckpointError(ValueError):
    """A checkpoint that salt will not load (a user error: one line, exit code 2)."""


def _is_complete_zip(path: Path) -> bool:
    """Whether ``path`` ends with a zip central directory (``torch.save``'s format): a file
    cut short by a kill or a full disk does not."""
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def previous_good_checkpoint(path: Path) -> Path | None:
    """The newest other ``.ckpt`` beside ``path`` that is a complete archive, if any."""
    try:
        siblings = [p for p in path.parent.glob("*.ckpt") if p.resolve() != path.resolve()]
    except OSError:
        return None
    for candidate in sorted(siblings, key=lambda p: p.stat().st_mtime, reverse=True):
        if candidate.stat().st_size > 0 and _is_complete_zip(candidate):
            return candidate
    return None


def _broken(path: Path, what: str) -> CheckpointError:
    message = f"checkpoint '{path}' {what}"
    previous = previous_good_checkpoint(path)
    if previous is not None:
        message += f"; the newest intact checkpoint beside it is '{previous}' (pass --ckpt_path)"
    return CheckpointError(message)


def check_checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """Refuse, in one line, a checkpoint that is missing, empty, truncated or not a
    ``torch.save`` archive; return it as a ``Path``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint '{path}' is a directory, expected a .ckpt file")
    size = path.stat().st_size
    if size == 0:
        raise _broken(path, "is empty (0 bytes): its write was interrupted")
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(b"\x89HDF"):
        raise CheckpointError(f"checkpoint '{path}' is an HDF5 file, not a checkpoint")
    if head.startswith(b"PK"):
        if not _is_complete_zip(path):
            raise _broken(path, f"is truncated ({size} bytes, no end of archive)")
        return path
    raise CheckpointError(f"checkpoint '{path}' is not a checkpoint written by torch.save")


def unsafe_globals(path: Path) -> list[str]:
    """The importable names the checkpoint's pickle refers to beyond what salt allows."""
    try:
        names = get_unsafe_globals_in_checkpoint(str(path))
    except (ValueError, RuntimeError, pickle.UnpicklingError, EOFError, KeyError) as err:
        raise _broken(path, f"cannot be read ({_first_line(err)})") from None
    return sorted(n for n in names if n not in _ALLOWED_NAMES)


def validate_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checks of :func:`load_checkpoint` that need no unpickling: a complete archive that
    refers to nothing beyond the allow-list."""
    path = check_checkpoint_file(path)
    refused = unsafe_globals(path)
    if refused:
        raise CheckpointError(
            f"checkpoint '{path}' refers to {', '.join(refused[:3])}, which salt checkpoints "
            "never contain; refused (unpickling it could run code)"
        )
    return path


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device | Callable[..., Any] | None = "cpu",
    *,
    require: tuple[str, ...] = ("state_dict",),
) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` and salt's allow-list.

    Args:
        path: the checkpoint.
        map_location: as for ``torch.load``.
        require: top-level keys the checkpoint must have (``state_dict`` for weights).

    Raises:
        CheckpointError: the file is empty, truncated, not a checkpoint, refers to code, or
            lacks a required key (the message names the file).
        FileNotFoundError: the file does not exist.
    """
    path = validate_checkpoint(path)
    try:
        with safe_globals(list(ALLOWED_GLOBALS)):
            content = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # a global created while unpickling
        raise CheckpointError(
            f"checkpoint '{path}' holds objects salt checkpoints never contain; refused "
            f"({_first_line(err)})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise _broken(path, f"cannot be read ({_first_line(err)})") from None
    if not isinstance(content, dict):
        raise CheckpointError(
            f"checkpoint '{path}' holds a {type(content).__name__}, expected a Lightning "
            "checkpoint (a dict with 'state_dict')"
        )
    missing = [key for key in require if key not in content]
    if missing:
        raise CheckpointError(
            f"checkpoint '{path}' has no {', '.join(repr(k) for k in missing)}: not a Lightning "
            f"checkpoint of a salt run (keys: {', '.join(map(str, list(content)[:6]))})"
        )
    return content


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
