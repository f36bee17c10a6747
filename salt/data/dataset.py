"""An iterable dataset that yields whole batches from large contiguous reads."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from salt.data.batch import ArrayBatch, Batch, BatchBuilder, take, to_torch
from salt.data.buffers import BufferPool
from salt.data.h5_source import H5Source
from salt.data.mixing import Mixture
from salt.data.plan import Load, ordered_batches, plan_rank


class ChunkedH5Dataset(IterableDataset):
    """Yields ready-made batches; the DataLoader must use ``batch_size=None``.

    Training order: blocks of ``block_size`` rows are permuted every epoch, ``chunk_size`` rows
    (several blocks) are loaded at once and shuffled inside, then cut into batches. Evaluation
    order is the file order. Work is shared by global rank first, then by DataLoader worker, so
    that every row is seen exactly once per epoch.

    With a ``mixture`` (files in named groups) every chunk instead reads its share of every file
    (see :mod:`salt.data.mixing`); evaluation then reads the same mixed chunks every epoch,
    unshuffled.
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
        mixture: Mixture | None = None,
    ):
        super().__init__()
        if mixture is not None and mixture.num_rows != num_rows:
            raise ValueError(f"num_rows={num_rows} but the mixture draws {mixture.num_rows}")
        self.source = source
        self.builder = builder
        self.num_rows = num_rows
        self.mixture = mixture
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.chunk_size = chunk_size
        self.block_size = block_size
        self.seed = seed
        self.rank = 0
        self.world_size = 1
        # shared with forked (also persistent) workers so that each epoch gets a new order, and
        # so that a resumed epoch skips the batches already trained on
        self._epoch = mp.Value("i", 0, lock=False)
        self._skip = mp.Value("i", 0, lock=False)

    def set_distributed(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    @property
    def epoch(self) -> int:
        return int(self._epoch.value)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Read the order of ``epoch``, leaving out its first ``skip_batches`` batches (as the
        DataLoader delivers them), which a resumed run has already trained on."""
        self._epoch.value = epoch
        self._skip.value = skip_batches

    def resume_plan(self, num_workers: int) -> tuple[list[int], int]:
        """How a resumed epoch leaves out its first ``skip`` batches: ``(per-worker skips,
        batches to drop in the main process)``.

        The DataLoader takes one batch from each worker in turn (passing over exhausted ones),
        always starting again at worker 0. Workers therefore leave out whole turns (their
        chunks are then not even read) and the main process drops the few batches of the last,
        partial turn, so the rest of the epoch arrives in exactly the original order.
        """
        remaining = int(self._skip.value)
        skips = [0] * num_workers
        if remaining <= 0:
            return skips, 0
        rng = np.random.default_rng([self.seed, self.epoch]) if self.shuffle else None
        counts = [0] * num_workers
        for index, load in enumerate(self.loads(rng)):
            counts[index % num_workers] += len(load.batch_sizes)
        taken, position, boundary = [0] * num_workers, 0, 0
        while position < remaining and any(t < c for t, c in zip(taken, counts)):
            turn = list(taken)
            for worker in range(num_workers):
                if turn[worker] < counts[worker] and position < remaining:
                    turn[worker] += 1
                    position += 1
            finished_turn = all(
                turn[w] > taken[w] or taken[w] >= counts[w] for w in range(num_workers)
            )
            taken = turn
            if finished_turn:
                skips, boundary = list(taken), position
        return skips, position - boundary

    def __len__(self) -> int:
        return len(ordered_batches(self.num_rows, self.batch_size, self.world_size, self.rank))

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self.shuffle or self.mixture is not None:
            yield from self._iter_loads(worker, num_workers)
        else:
            yield from self._iter_ordered(worker, num_workers)

    def loads(self, rng: np.random.Generator | None) -> list[Load]:
        """This rank's loads for the current epoch (the same on every worker)."""
        args = (self.batch_size, self.chunk_size, self.block_size, self.world_size, self.rank)
        if self.mixture is not None:
            return self.mixture.loads(*args, rng=rng)
        return plan_rank(self.num_rows, *args, rng=rng)

    def _iter_loads(self, worker: int, num_workers: int) -> Iterator[Batch]:
        """This worker's loads through a three-stage pipeline: a thread reads load i+2, another
        converts load i+1, while the batches of load i are handed out. h5py and numpy release
        the GIL, so reading, converting and the training step overlap; up to three chunks are
        in memory at a time (``chunk_size`` bounds it)."""
        skip = self.resume_plan(num_workers)[0][worker]
        plan_rng = np.random.default_rng([self.seed, self.epoch]) if self.shuffle else None
        todo: list[tuple[int, Load]] = []
        for index, load in enumerate(self.loads(plan_rng)):
            if index % num_workers != worker:
                continue
            if skip >= len(load.batch_sizes):  # trained on before a resume: not even read
                skip -= len(load.batch_sizes)
                continue
            todo.append((index, load))
        pool = self._buffer_pool()
        with (
            ThreadPoolExecutor(1, thread_name_prefix="salt-read") as reader,
            ThreadPoolExecutor(1, thread_name_prefix="salt-convert") as converter,
        ):

            def convert(position: int) -> Future[ArrayBatch]:
                index, load = todo[position]
                raw = reader.submit(self.source.read_segments, list(load.segments), pool)
                return converter.submit(self._convert, index, load, raw, pool)

            ahead = [convert(p) for p in range(min(2, len(todo)))]
            for position, (index, load) in enumerate(todo):
                chunk = ahead.pop(0).result()
                if position + 2 < len(todo):
                    ahead.append(convert(position + 2))
                order = (
                    np.random.default_rng([self.seed, self.epoch, index]).permutation(load.num_rows)
                    if self.shuffle
                    else np.arange(load.num_rows)
                )
                start = 0
                for size in load.batch_sizes:
                    if skip > 0:
                        skip -= 1
                    else:
                        yield to_torch(take(chunk, order[start : start + size]))
                    start += size
                pool.give_back(chunk[0].values())  # every batch taken is a copy

    def _buffer_pool(self) -> BufferPool:
        """The chunks' big arrays, reused from chunk to chunk and from epoch to epoch (fresh
        arrays cost page faults on every touch); one pool per process, never shared with a
        forked worker."""
        pid = os.getpid()
        if getattr(self, "_pool_pid", None) != pid:
            self._pool, self._pool_pid = BufferPool(), pid
        return self._pool

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()  # buffers stay with their process
        state.pop("_pool", None)
        state.pop("_pool_pid", None)
        return state

    def _convert(
        self, index: int, load: Load, raw: Future[dict[str, np.ndarray]], pool: BufferPool
    ) -> ArrayBatch:
        """Convert one load once read; its random draws (e.g. parameters of parameterised
        networks) depend only on (seed, epoch, load), so a resumed epoch draws the same."""
        rows = np.concatenate([np.arange(a, b) for a, b in load.segments])
        key = [self.seed, self.epoch, index, 1] if self.shuffle else [self.seed, index]
        records = raw.result()
        chunk = self.builder.build(records, rows, np.random.default_rng(key), pool)
        pool.give_back(records.values())
        return chunk

    def _iter_ordered(self, worker: int, num_workers: int) -> Iterator[Batch]:
        # batch i goes to worker i % num_workers: the DataLoader's round robin keeps file order
        batches = ordered_batches(self.num_rows, self.batch_size, self.world_size, self.rank)
        for index, (a, b) in enumerate(batches):
            if index % num_workers == worker:
                rng = np.random.default_rng([self.seed, a])
                yield to_torch(self.builder.build(self.source.read(a, b), np.arange(a, b), rng))


class EpochDataLoader(DataLoader):
    """A DataLoader that moves its dataset to the next epoch each time it is iterated, and whose
    position (epoch, batches done) is saved in checkpoints and restored on resume.

    Lightning only tells samplers about epochs; an iterable dataset needs this to reshuffle,
    including in persistent workers (the epoch lives in shared memory). Lightning saves
    ``state_dict()`` with every checkpoint and calls ``load_state_dict()`` before iterating a
    resumed epoch, so a resumed run reads exactly the batches an uninterrupted one would.

    Args:
        batches_done: the number of batches of the current epoch the trainer has processed
            (for ``state_dict``); without it, the batches this loader delivered are counted.
        epoch: the trainer's epoch about to be read (Lightning does not restore a loader's
            state when it resumes from the end of an epoch); without it, iterations are counted.
    """

    def __init__(
        self,
        *args: Any,
        batches_done: Callable[[], int | None] | None = None,
        epoch: Callable[[], int | None] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self._batches_done = batches_done
        self._epoch_of_trainer = epoch
        self._started = False
        self._delivered = 0
        self._resume: dict[str, int] | None = None

    def __iter__(self):  # type: ignore[override]
        dataset = self.dataset
        if isinstance(dataset, ChunkedH5Dataset) and dataset.shuffle:
            if self._resume is not None:
                epoch, done = self._resume["epoch"], self._resume["batches_done"]
                if done >= len(dataset):  # saved at the end of an epoch: start the next one
                    epoch, done = epoch + 1, 0
                dataset.set_epoch(epoch, done)
                self._resume = None
            elif (epoch := self._epoch_of_trainer and self._epoch_of_trainer()) is not None:
                dataset.set_epoch(epoch)
            elif self._started:
                dataset.set_epoch(dataset.epoch + 1)
            else:
                dataset.set_epoch(dataset.epoch)
            self._started = True
        drop = 0
        self._delivered = 0
        if isinstance(dataset, ChunkedH5Dataset):
            self._delivered = int(dataset._skip.value)
            drop = dataset.resume_plan(max(1, self.num_workers))[1]
        return self._counting(super().__iter__(), drop)

    def _counting(self, batches: Iterator[Batch], drop: int) -> Iterator[Batch]:
        for batch in batches:
            if drop > 0:  # the part of a worker turn already trained on before a resume
                drop -= 1
                continue
            self._delivered += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        dataset = self.dataset
        epoch = dataset.epoch if isinstance(dataset, ChunkedH5Dataset) else 0
        done = self._batches_done() if self._batches_done is not None else None
        return {"epoch": epoch, "batches_done": self._delivered if done is None else int(done)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = {"epoch": int(state["epoch"]), "batches_done": int(state["batches_done"])}


def make_loader(
    dataset: ChunkedH5Dataset,
    num_workers: int,
    pin_memory: bool,
    persistent_workers: bool,
    batches_done: Callable[[], int | None] | None = None,
    epoch: Callable[[], int | None] | None = None,
) -> DataLoader:
    return EpochDataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory and torch.cuda.is_available(),
        persistent_workers=persistent_workers and num_workers > 0,
        prefetch_factor=2 if num_workers > 0 else None,
        batches_done=batches_done,
        epoch=epoch,
    )
