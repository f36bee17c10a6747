"""Large arrays reused from chunk to chunk.

A training chunk is a few hundred MB (raw records, then float32 inputs). Allocating that afresh
for every chunk costs more in page faults (the kernel zero-fills every new page) than reading
and converting the rows; handing the same buffers round keeps the memory warm.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np


class BufferPool:
    """Hands out arrays of a requested shape, reusing returned ones of the same layout.

    ``take(shape, dtype)`` returns an array of exactly ``shape``: a view of a buffer with at
    least ``shape[0]`` rows and the same trailing shape and dtype. ``give_back(arrays)`` makes
    their buffers available again (arrays not from a pool are ignored). Safe to use from the
    loader's reading and converting threads.
    """

    def __init__(self) -> None:
        self._free: dict[tuple, list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        layout = (tuple(shape[1:]), np.dtype(dtype))
        with self._lock:
            free = self._free.get(layout, [])
            for i, buffer in enumerate(free):
                if buffer.shape[0] >= shape[0]:
                    return free.pop(i)[: shape[0]]
        return np.empty(shape, dtype=dtype)[: shape[0]]  # a view: give_back finds its buffer

    def give_back(self, arrays: Iterable[np.ndarray]) -> None:
        for array in arrays:
            buffer = array.base
            if not isinstance(buffer, np.ndarray) or buffer.base is not None:
                continue
            with self._lock:
                free = self._free.setdefault((buffer.shape[1:], buffer.dtype), [])
                if not any(b is buffer for b in free):  # handed back twice: keep it once
                    free.append(buffer)
