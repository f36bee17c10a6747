"""Resolve the file specifications users write (a path, a list of paths, a glob, named groups of
those) to real files."""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

FileSpec = str | Path | Sequence[str | Path]
GroupedSpec = FileSpec | Mapping[str, FileSpec]


def is_grouped(spec: object) -> bool:
    """True for the ``{group name: files}`` form (e.g. one group per physics process)."""
    return isinstance(spec, Mapping)


def resolve_files(spec: GroupedSpec, key: str = "file") -> list[Path]:
    """Expand a path, a glob or a list of either into an ordered list of existing files.

    Several files are read as one dataset, so the order must be reproducible: each glob is sorted,
    and a list keeps the order the user wrote. Named groups give the files of every group, group
    after group in the order written (what a reader without mixing, such as ``salt test``, needs).

    Raises:
        FileNotFoundError: naming the config key and the pattern that matched nothing.
    """
    if is_grouped(spec):
        return [f for files in resolve_groups(spec, key).values() for f in files]  # type: ignore[arg-type]
    items = [spec] if isinstance(spec, str | Path) else list(spec)  # type: ignore[arg-type]
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
            if not text.strip():
                raise FileNotFoundError(f"data.{key}: an empty path (expected a file)")
            path = Path(text)
            if not path.is_file():
                raise FileNotFoundError(f"data.{key}: file '{text}' {not_a_file(path)}")
            files.append(path)
    for path in files:
        check_hdf5(path, key)
    return files


def not_a_file(path: Path) -> str:
    """Why ``path``, which is not a regular file, cannot be read: the words after its name."""
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:
            return "is a symbolic link loop"
        except OSError:
            return f"is a broken symbolic link (to '{os.readlink(path)}')"
    if path.is_dir():
        return "is a directory, expected a file"
    if path.exists():
        return "is not a regular file (a device, a pipe or a socket)"
    return "does not exist"


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_hdf5(path: Path, key: str = "file") -> None:
    """Refuse an empty file, or one that is not HDF5, naming it (HDF5 itself only says "file
    signature not found", without the file). Reads the first bytes only."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(len(HDF5_SIGNATURE))
    except OSError as err:
        raise ValueError(f"data.{key}: '{path}' cannot be read ({err.strerror or err})") from None
    if size == 0:
        raise ValueError(f"data.{key}: '{path}' is empty (0 bytes), expected an HDF5 file")
    # HDF5 may also start at a user block of 512, 1024, ... bytes: leave those to h5py
    if head != HDF5_SIGNATURE and not _has_user_block(path):
        raise ValueError(f"data.{key}: '{path}' is not an HDF5 file")


def _has_user_block(path: Path) -> bool:
    import h5py

    return bool(h5py.is_hdf5(path))


def resolve_groups(spec: Mapping[str, FileSpec], key: str = "file") -> dict[str, list[Path]]:
    """``{group: files}`` for the grouped form, each group resolved like :func:`resolve_files`.

    A file may belong to one group only: listed twice, its rows would be drawn twice as often.

    Raises:
        ValueError: no group, an unnamed or empty group, or a file in two groups.
        FileNotFoundError: as :func:`resolve_files`, naming ``data.<key>.<group>``.
    """
    if not spec:
        raise ValueError(f"data.{key}: no group given (expected {{group name: files}})")
    groups: dict[str, list[Path]] = {}
    owner: dict[Path, str] = {}
    for name, files in spec.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"data.{key}: group names must be non-empty strings, got {name!r}")
        if files is None or (not isinstance(files, str | Path) and not list(files)):
            raise ValueError(f"data.{key}.{name}: empty group (expected a path, a glob or a list)")
        groups[name] = resolve_files(files, f"{key}.{name}")
        for path in groups[name]:
            first = owner.setdefault(path.resolve(), name)
            if first != name:
                raise ValueError(
                    f"data.{key}: '{path}' is in groups '{first}' and '{name}' (a file may "
                    "belong to one group only)"
                )
    return groups
