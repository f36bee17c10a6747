"""Small HDF5 helpers shared by the data layer, the CLI and the writers."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def read_class_names(path: str | Path, dataset: str, label: str) -> list[str] | None:
    """Class names stored as an attribute named after ``label`` on ``dataset`` (FTAG style)."""
    with h5py.File(path, "r") as h5:
        if dataset not in h5:
            return None
        value = h5[dataset].attrs.get(label)
    if value is None:
        return None
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(value)]
