"""``salt inspect``: a quick human-readable look inside an FTAG-format HDF5 file.

Before training on a file one wants to know what is in it: which datasets, how many rows, which
variables with which types, how full the constituent arrays are and how the classes are balanced.
Everything is read in blocks of rows and only the needed fields, so the report stays cheap on
files with millions of jets.
"""

from __future__ import annotations

import io
import os
import sys
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from salt.data.demo import ORIGIN_NAMES
from salt.errors import OneLineParser

BLOCK_ROWS = 100_000
HADRON_LABEL_NAMES = {5: "b", 4: "c", 0: "light", 15: "tau"}
GLOBAL_LABELS = ("flavour_label", "HadronConeExclTruthLabelID")
CONSTITUENT_LABELS = ("ftagTruthOriginLabel",)


def _blocks(n_rows: int) -> list[slice]:
    return [slice(start, min(n_rows, start + BLOCK_ROWS)) for start in range(0, n_rows, BLOCK_ROWS)]


def _class_names(dataset: h5py.Dataset, label: str) -> dict[int, str]:
    """Readable names of label values: the dataset's class-name attribute, or known conventions."""
    if label == "flavour_label" and "flavour_label" in dataset.attrs:
        names = np.atleast_1d(dataset.attrs["flavour_label"])
        return {
            i: name.decode() if isinstance(name, bytes) else str(name)
            for i, name in enumerate(names)
        }
    if label == "HadronConeExclTruthLabelID":
        return dict(HADRON_LABEL_NAMES)
    if label == "ftagTruthOriginLabel":
        return dict(enumerate(ORIGIN_NAMES))
    return {}


def _count_labels(dataset: h5py.Dataset, label: str, valid: str | None) -> Counter[int]:
    """Occurrences of each value of ``label`` (over valid entries when ``valid`` is given)."""
    counts: Counter[int] = Counter()
    for rows in _blocks(dataset.shape[0]):
        if valid is None:
            values = dataset.fields(label)[rows]
        else:
            block = dataset.fields([label, valid])[rows]
            values = block[label][block[valid]]
        unique, n = np.unique(values, return_counts=True)
        counts.update(dict(zip(unique.tolist(), n.tolist())))
    return counts


Section = tuple[str, Table]  # a titled table of the report


def _table(columns: dict[str, str]) -> Table:
    """Compact borderless table; ``columns`` maps header to justification."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for header, justify in columns.items():
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    return table


def _fractions_table(title: str, counts: Counter[int], names: dict[int, str]) -> Section:
    columns = {"value": "right", "class": "left", "count": "right", "fraction": "right"}
    table = _table(columns)
    total = sum(counts.values())
    for value in sorted(counts):
        fraction = counts[value] / total if total else 0.0
        table.add_row(str(value), names.get(value, ""), f"{counts[value]:,}", f"{fraction:.2%}")
    return title, table


def _fields_table(dataset: h5py.Dataset) -> Section:
    table = _table({"field": "left", "dtype": "left"})
    dtype = dataset.dtype
    if dtype.names is None:
        table.add_row("(plain array)", str(dtype))
    else:
        for name in dtype.names:
            table.add_row(name, str(dtype.fields[name][0]))
    return "fields", table


def _valid_table(dataset: h5py.Dataset) -> Section:
    """Valid constituents per row: mean/min/max and the share of rows with none."""
    n_rows = dataset.shape[0]
    total, n_empty = 0, 0
    low, high = None, None
    for rows in _blocks(n_rows):
        per_row = dataset.fields("valid")[rows].sum(axis=1)
        total += int(per_row.sum())
        n_empty += int((per_row == 0).sum())
        low = int(per_row.min()) if low is None else min(low, int(per_row.min()))
        high = int(per_row.max()) if high is None else max(high, int(per_row.max()))
    columns = dict.fromkeys(("mean", "min", "max", "rows with none"), "right")
    table = _table(columns)
    if n_rows:
        table.add_row(f"{total / n_rows:.2f}", str(low), str(high), f"{n_empty / n_rows:.2%}")
    return f"valid entries per row (of {dataset.shape[1]})", table


def _describe(name: str, dataset: h5py.Dataset) -> list[str | Section]:
    n_rows = dataset.shape[0] if dataset.shape else 1
    parts: list[str | Section] = [
        f"dataset '{name}': shape {dataset.shape}, {n_rows:,} rows, "
        f"{len(dataset.dtype.names or ())} fields, chunks {dataset.chunks}, "
        f"compression {dataset.compression}",
        _fields_table(dataset),
    ]
    names = dataset.dtype.names or ()
    if dataset.ndim == 2 and "valid" in names:
        parts.append(_valid_table(dataset))
        for label in CONSTITUENT_LABELS:
            if label in names:
                title = f"{label} fractions (valid entries)"
                counts = _count_labels(dataset, label, "valid")
                parts.append(_fractions_table(title, counts, _class_names(dataset, label)))
    elif dataset.ndim == 1:
        for label in GLOBAL_LABELS:
            if label in names:
                counts = _count_labels(dataset, label, None)
                names_map = _class_names(dataset, label)
                parts.append(_fractions_table(f"{label} fractions", counts, names_map))
    return parts


def _render(console: Console, part: str | Section) -> None:
    """Print a text line, or a table under its title line; text is never wrapped."""
    if isinstance(part, str):
        console.print(part, soft_wrap=True)
    else:
        title, table = part
        console.print(f"  {title}:", soft_wrap=True)
        console.print(table)


def inspect_file(path: str | Path) -> str:
    """Human-readable report of every dataset in an HDF5 file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable HDF5 file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected an HDF5 file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file (0 bytes), expected an HDF5 file")
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({err})") from err
    buffer = io.StringIO()
    console = Console(file=buffer, width=100, color_system=None, force_terminal=False)
    with h5:
        console.print(f"file {path} ({path.stat().st_size / 1e6:,.1f} MB)", soft_wrap=True)
        items: list[tuple[str, h5py.Dataset | h5py.Group]] = []
        h5.visititems(lambda name, obj: items.append((name, obj)))
        if not items:
            console.print("(no datasets)")
        for name, obj in items:
            if isinstance(obj, h5py.Dataset):
                console.print()
                for part in _describe(name, obj):
                    _render(console, part)
            else:
                console.print(f"\ngroup '{name}/' ({len(obj)} members)", soft_wrap=True)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def inspect_main(argv: list[str] | None = None) -> int:
    """``salt inspect FILE [FILE...]``: print the report of each file."""
    parser = OneLineParser(
        prog="salt inspect", description="Summarise the datasets, fields and classes of HDF5 files."
    )
    parser.add_argument("files", nargs="+", type=Path, help="HDF5 files to inspect")
    args = parser.parse_args(argv)
    status = 0
    for path in args.files:
        try:
            report = inspect_file(path)
        except (OSError, ValueError) as err:
            print(f"salt inspect: error: {err}", file=sys.stderr)
            status = USER_ERROR_EXIT
            continue
        try:
            print(report, flush=True)
        except BrokenPipeError:  # salt inspect FILE | head: the reader has seen enough
            _silence_stdout()
            return status
    return status


USER_ERROR_EXIT = 2
"""Exit code of a file that cannot be inspected (as for every salt user error)."""


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(inspect_main())
