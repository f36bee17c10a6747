"""Resolve the file specifications users write (a path, a list of paths, a glob) to real files."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

FileSpec = str | Path | Sequence[str | Path]


def resolve_files(spec: FileSpec, key: str = "file") -> list[Path]:
    """Expand a path, a glob or a list of either into an ordered list of existing files.

    Several files are read as one dataset, so the order must be reproducible: each glob is sorted,
    and a list keeps the order the user wrote.

    Raises:
        FileNotFoundError: naming the config key and the pattern that matched nothing.
    """
    items = [spec] if isinstance(spec, str | Path) else list(spec)
    if not items:
        raise FileNotFoundError(f"data.{key}: no file given (expected a path, a glob or a list)")
    files: list[Path] = []
    for item in items:
        text = str(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise FileNotFoundError(f"data.{key}: the glob '{text}' matches no file")
            files.extend(Path(m) for m in matches)
        else:
            path = Path(text)
            if not path.is_file():
                raise FileNotFoundError(f"data.{key}: file '{text}' does not exist")
            files.append(path)
    return files
