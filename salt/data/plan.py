"""The order in which rows are read in an epoch, as pure functions of (seed, epoch, rank, worker).

Kept free of I/O so that the promises the loader makes — every row exactly once per epoch across
workers and ranks, the same number of batches on every rank, large contiguous reads — can be
tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Segment = tuple[int, int]  # [start, stop) rows of the (concatenated) file


@dataclass(frozen=True)
class Load:
    """Rows read and shuffled together: a few contiguous segments, cut into batches."""

    segments: tuple[Segment, ...]
    batch_sizes: tuple[int, ...]

    @property
    def num_rows(self) -> int:
        return sum(stop - start for start, stop in self.segments)


def shuffled_segments(
    num_rows: int, block_size: int, rng: np.random.Generator | None
) -> list[Segment]:
    """Cut the rows into contiguous blocks and, when ``rng`` is given, permute the blocks.

    A block is the unit of contiguous reading; permuting blocks is what lets a file sorted by
    flavour or pT still give well-mixed batches once several blocks are loaded together.
    """
    starts = np.arange(0, num_rows, block_size)
    if rng is not None:
        starts = rng.permutation(starts)
    return [(int(s), min(int(s) + block_size, num_rows)) for s in starts]


def take_rows(segments: list[Segment], begin: int, end: int) -> list[Segment]:
    """Return the segments covering positions [begin, end) of the virtual order ``segments``."""
    out: list[Segment] = []
    pos = 0
    for start, stop in segments:
        length = stop - start
        lo, hi = max(begin, pos), min(end, pos + length)
        if lo < hi:
            out.append((start + lo - pos, start + hi - pos))
        pos += length
        if pos >= end:
            break
    return out


def rank_bounds(num_rows: int, world_size: int, rank: int) -> tuple[int, int]:
    """Positions of the virtual order owned by ``rank``: contiguous, sizes differ by at most one."""
    base, extra = divmod(num_rows, world_size)
    begin = rank * base + min(rank, extra)
    return begin, begin + base + (1 if rank < extra else 0)


def batches_per_rank(num_rows: int, world_size: int, batch_size: int) -> int:
    """Every rank must step the same number of times or distributed training hangs."""
    largest = -(-num_rows // world_size)
    return max(1, -(-largest // batch_size))


def even_sizes(num_rows: int, num_parts: int) -> list[int]:
    """Split ``num_rows`` into ``num_parts`` sizes that differ by at most one."""
    base, extra = divmod(num_rows, num_parts)
    return [base + (1 if i < extra else 0) for i in range(num_parts)]


def rank_loads(
    num_rows: int,
    batch_size: int,
    chunk_size: int,
    world_size: int = 1,
    rank: int = 0,
) -> list[tuple[Segment, tuple[int, ...]]]:
    """One rank's loads as ``((begin, end), batch sizes)`` in positions of the epoch order.

    Loads hold ``chunk_size`` rows (a multiple of the batch size) so only the last one has a
    short batch; the last load is split so that every rank has exactly
    :func:`batches_per_rank` batches. Which rows a position stands for is up to the caller
    (:func:`plan_rank`, or a sample mixture).
    """
    if num_rows < world_size:
        raise ValueError(f"cannot share {num_rows} rows across {world_size} ranks")
    chunk_size = max(batch_size, (chunk_size // batch_size) * batch_size)
    begin, end = rank_bounds(num_rows, world_size, rank)
    target = batches_per_rank(num_rows, world_size, batch_size)
    loads: list[tuple[Segment, tuple[int, ...]]] = []
    done_batches = 0
    for load_begin in range(begin, end, chunk_size):
        load_end = min(load_begin + chunk_size, end)
        rows = load_end - load_begin
        if load_end == end:
            sizes = even_sizes(rows, max(1, target - done_batches))
            if rows < len(sizes):
                raise ValueError(
                    f"{num_rows} rows are too few for {world_size} ranks at batch size {batch_size}"
                )
        else:
            sizes = [batch_size] * (rows // batch_size)
        done_batches += len(sizes)
        loads.append(((load_begin, load_end), tuple(sizes)))
    return loads


def plan_rank(
    num_rows: int,
    batch_size: int,
    chunk_size: int,
    block_size: int,
    world_size: int = 1,
    rank: int = 0,
    rng: np.random.Generator | None = None,
) -> list[Load]:
    """All loads of one rank for one epoch, in reading order (see :func:`rank_loads`)."""
    if num_rows < world_size:
        raise ValueError(f"cannot share {num_rows} rows across {world_size} ranks")
    order = shuffled_segments(num_rows, block_size, rng)
    return [
        Load(tuple(take_rows(order, begin, end)), sizes)
        for (begin, end), sizes in rank_loads(num_rows, batch_size, chunk_size, world_size, rank)
    ]


def ordered_batches(
    num_rows: int, batch_size: int, world_size: int = 1, rank: int = 0
) -> list[Segment]:
    """Contiguous batches of one rank in file order, for evaluation (no shuffling)."""
    begin, end = rank_bounds(num_rows, world_size, rank)
    target = batches_per_rank(num_rows, world_size, batch_size)
    rows = end - begin
    if rows < batch_size * (target - 1) + 1:
        sizes = even_sizes(rows, target)
    else:
        sizes = [batch_size] * (target - 1) + [rows - batch_size * (target - 1)]
    out: list[Segment] = []
    pos = begin
    for size in sizes:
        out.append((pos, pos + size))
        pos += size
    return out
