"""Contiguous reads of selected fields from one or several FTAG-format HDF5 files.

Several files are one logical dataset: rows are numbered across files in the order given, and a
read that crosses a file boundary is split into one contiguous read per file.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from salt.data.buffers import BufferPool


@dataclass
class DatasetRead:
    """What to read from one HDF5 dataset: its fields and, for constituents, how many columns."""

    fields: list[str] = field(default_factory=list)
    max_len: int | None = None

    def add(self, names: list[str]) -> None:
        for name in names:
            if name not in self.fields:
                self.fields.append(name)


class H5Source:
    """Reads row ranges of several datasets (e.g. ``jets`` and ``tracks``) from a list of files.

    File handles are opened lazily in the process that reads, because h5py handles must not be
    shared across the fork of DataLoader workers.
    """

    def __init__(self, files: list[Path], reads: dict[str, DatasetRead], key: str = "file"):
        self.files = [Path(f) for f in files]
        self.reads = reads
        self.key = key
        self._handles: dict[int, h5py.File] = {}
        self._pid = -1
        self.rows_per_file = [self._count_rows(f) for f in self.files]
        self.offsets = np.cumsum([0, *self.rows_per_file]).tolist()

    # -- inspection -------------------------------------------------------------------------
    def _count_rows(self, path: Path) -> int:
        with _open(path, self.key) as h5, _damaged(path, self.key, "metadata"):
            counts = set()
            for name in self.reads:
                if name not in h5:
                    available = ", ".join(k for k in h5 if isinstance(h5[k], h5py.Dataset))
                    raise KeyError(
                        f"{path}: dataset '{name}' not found (available: {available or 'none'})"
                    )
                if not isinstance(h5[name], h5py.Dataset):
                    raise ValueError(f"{path}: '{name}' is a group, expected a dataset")
                counts.add(h5[name].shape[0])
            if len(counts) > 1:
                raise ValueError(
                    f"{path}: datasets {list(self.reads)} differ in row count {counts}"
                )
            return counts.pop() if counts else 0

    @property
    def num_rows(self) -> int:
        return int(self.offsets[-1])

    def dtype(self, dataset: str, index: int = 0) -> np.dtype:
        """The dtype of ``dataset`` in file ``index`` (the first by default)."""
        path = self.files[index]
        with _open(path, self.key) as h5, _damaged(path, self.key, "metadata"):
            return h5[dataset].dtype

    def shape(self, dataset: str, index: int = 0) -> tuple[int, ...]:
        path = self.files[index]
        with _open(path, self.key) as h5, _damaged(path, self.key, "metadata"):
            return tuple(h5[dataset].shape)

    def attrs(self, dataset: str) -> dict:
        with _open(self.files[0], self.key) as h5, _damaged(self.files[0], self.key, "metadata"):
            return dict(h5[dataset].attrs)

    def any_true(self, dataset: str, field: str, index: int, rows: int) -> bool:
        """Whether the boolean ``field`` is True anywhere in the first ``rows`` rows of file
        ``index`` (only that field is read)."""
        path = self.files[index]
        with _open(path, self.key) as h5, _damaged(path, self.key, f"dataset '{dataset}'"):
            return bool(np.any(h5[dataset].fields(field)[:rows]))

    # -- reading ----------------------------------------------------------------------------
    def _handle(self, index: int) -> h5py.File:
        if self._pid != os.getpid():  # forked: never reuse the parent's handles
            self._handles = {}
            self._pid = os.getpid()
        if index not in self._handles:
            self._handles[index] = _open(self.files[index], self.key)
        return self._handles[index]

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Read rows [start, stop) of every configured dataset, only the configured fields."""
        return self.read_segments([(start, stop)])

    def read_segments(
        self, segments: list[tuple[int, int]], pool: BufferPool | None = None
    ) -> dict[str, np.ndarray]:
        """Read several row ranges, one after the other, into one array per dataset.

        Each range is read contiguously straight into its slice of a preallocated buffer (from
        ``pool`` when given), so a chunk made of many blocks costs no extra concatenation copy.
        """
        total = sum(stop - start for start, stop in segments)
        out: dict[str, np.ndarray] = {}
        pos = 0
        for start, stop in segments:
            row = start
            while row < stop:
                index = bisect_right(self.offsets, row) - 1
                local_start = row - self.offsets[index]
                local_stop = min(stop, self.offsets[index + 1]) - self.offsets[index]
                count = local_stop - local_start
                h5 = self._handle(index)
                where = f"rows {local_start}..{local_stop}"
                with _damaged(self.files[index], self.key, where):
                    self._read_file_rows(h5, out, total, pos, local_start, local_stop, pool)
                pos += count
                row = self.offsets[index] + local_stop
        return out

    def _read_file_rows(
        self,
        h5: h5py.File,
        out: dict[str, np.ndarray],
        total: int,
        pos: int,
        local_start: int,
        local_stop: int,
        pool: BufferPool | None = None,
    ) -> None:
        """Rows [local_start, local_stop) of one file into ``out[...][pos:]``."""
        for name, spec in self.reads.items():
            ds = h5[name]
            columns = ds.shape[1:2]
            if ds.ndim == 2 and spec.max_len is not None:
                columns = (min(spec.max_len, ds.shape[1]),)
            if name not in out:
                shape, dtype = (total, *columns), _read_dtype(ds, spec.fields)
                out[name] = pool.take(shape, dtype) if pool else np.empty(shape, dtype=dtype)
            _read_into(ds, spec.fields, local_start, local_stop, columns, out[name], pos)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}
        state["_pid"] = -1
        return state


# reading whole records and selecting fields in numpy avoids HDF5's slow compound conversion;
# it pays off unless only a small part of each record is needed
WHOLE_RECORD_SHARE = 0.3


def _read_dtype(ds: h5py.Dataset, fields: list[str]) -> np.dtype:
    """Whole records when most of each record is needed, else only the fields."""
    dtype = ds.dtype
    needed = sum(dtype.fields[f][0].itemsize for f in fields)
    if needed >= WHOLE_RECORD_SHARE * dtype.itemsize:
        return dtype
    return np.dtype([(f, dtype.fields[f][0]) for f in fields])


def _read_into(
    ds: h5py.Dataset,
    fields: list[str],
    start: int,
    stop: int,
    columns: tuple[int, ...],
    out: np.ndarray,
    pos: int,
) -> None:
    """Read rows [start, stop) (first ``columns`` constituents) into ``out[pos:]``."""
    sel = (slice(start, stop), *(slice(0, c) for c in columns))
    if out.dtype == ds.dtype:  # whole records: no type conversion in HDF5
        ds.read_direct(out, sel, np.s_[pos : pos + stop - start])
    else:
        out[pos : pos + stop - start] = ds.fields(fields)[sel]


@contextmanager
def _damaged(path: Path, key: str, what: str) -> Iterator[None]:
    """Name the file when HDF5 fails on a damaged object (header, chunk, dtype)."""
    try:
        yield
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
        reason = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        if str(path) in reason:
            raise
        reason = " ".join(reason.split()) or type(err).__name__
        raise ValueError(f"data.{key}: '{path}' is damaged ({what}: {reason})") from None


def _open(path: Path, key: str) -> h5py.File:
    """Open an HDF5 file read-only with a one-line error naming the file and the config key."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"data.{key}: file '{path}' does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        reason = str(err).split("(")[0].strip() or "not a readable HDF5 file"
        raise ValueError(f"data.{key}: '{path}' is not a readable HDF5 file ({reason})") from None
