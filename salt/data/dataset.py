"""An iterable dataset that yields whole batches from large contiguous reads."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from salt.data.batch import Batch, BatchBuilder, take, to_torch
from salt.data.h5_source import H5Source
from salt.data.plan import ordered_batches, plan_rank


class ChunkedH5Dataset(IterableDataset):
    """Yields ready-made batches; the DataLoader must use ``batch_size=None``.

    Training order: blocks of ``block_size`` rows are permuted every epoch, ``chunk_size`` rows
    (several blocks) are loaded at once and shuffled inside, then cut into batches. Evaluation
    order is the file order. Work is shared by global rank first, then by DataLoader worker, so
    that every row is seen exactly once per epoch.
    """

    def __init__(
        self,
        source: H5Source,
        builder: BatchBuilder,
        num_rows: int,
        batch_size: int,
        shuffle: bool,
        chunk_size: int = 50_000,
        block_size: int = 5_000,
        seed: int = 42,
    ):
        super().__init__()
        self.source = source
        self.builder = builder
        self.num_rows = num_rows
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.chunk_size = chunk_size
        self.block_size = block_size
        self.seed = seed
        self.rank = 0
        self.world_size = 1
        # shared with forked (also persistent) workers so that each epoch gets a new order
        self._epoch = mp.Value("i", 0, lock=False)

    def set_distributed(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    @property
    def epoch(self) -> int:
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.value = epoch

    def __len__(self) -> int:
        return len(ordered_batches(self.num_rows, self.batch_size, self.world_size, self.rank))

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self.shuffle:
            yield from self._iter_shuffled(worker, num_workers)
        else:
            yield from self._iter_ordered(worker, num_workers)

    def _iter_shuffled(self, worker: int, num_workers: int) -> Iterator[Batch]:
        rng = np.random.default_rng([self.seed, self.epoch])
        loads = plan_rank(
            self.num_rows,
            self.batch_size,
            self.chunk_size,
            self.block_size,
            self.world_size,
            self.rank,
            rng,
        )
        for index, load in enumerate(loads):
            if index % num_workers != worker:
                continue
            raw = self.source.read_segments(list(load.segments))
            rows = np.concatenate([np.arange(a, b) for a, b in load.segments])
            chunk = self.builder.build(raw, rows, rng)
            order = np.random.default_rng([self.seed, self.epoch, index]).permutation(load.num_rows)
            start = 0
            for size in load.batch_sizes:
                yield to_torch(take(chunk, order[start : start + size]))
                start += size

    def _iter_ordered(self, worker: int, num_workers: int) -> Iterator[Batch]:
        # batch i goes to worker i % num_workers: the DataLoader's round robin keeps file order
        batches = ordered_batches(self.num_rows, self.batch_size, self.world_size, self.rank)
        for index, (a, b) in enumerate(batches):
            if index % num_workers == worker:
                rng = np.random.default_rng([self.seed, a])
                yield to_torch(self.builder.build(self.source.read(a, b), np.arange(a, b), rng))


class EpochDataLoader(DataLoader):
    """A DataLoader that moves its dataset to the next epoch each time it is iterated.

    Lightning only tells samplers about epochs; an iterable dataset needs this to reshuffle,
    including in persistent workers (the epoch lives in shared memory).
    """

    def __iter__(self):  # type: ignore[override]
        dataset = self.dataset
        if isinstance(dataset, ChunkedH5Dataset) and dataset.shuffle:
            started = getattr(self, "_salt_started", False)
            if started:
                dataset.set_epoch(dataset.epoch + 1)
            self._salt_started = True
        return super().__iter__()


def make_loader(
    dataset: ChunkedH5Dataset, num_workers: int, pin_memory: bool, persistent_workers: bool
) -> DataLoader:
    return EpochDataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory and torch.cuda.is_available(),
        persistent_workers=persistent_workers and num_workers > 0,
        prefetch_factor=2 if num_workers > 0 else None,
    )
