"""Writes the outputs of ``salt test`` to an HDF5 file row-aligned with the test file."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import resource
from pathlib import Path
from typing import Any

import h5py
import lightning as L
import numpy as np
import torch
from torch import Tensor

from salt.evaluation.predictions import LABEL_MAP_ATTRIBUTE, label_map_attribute
from salt.tasks.classification import ClassificationTask, main_task
from salt.tasks.vertexing import VertexingTask
from salt.utils.claim import OutputClaim

log = logging.getLogger(__name__)


def output_field_names(tagger: str, task: ClassificationTask) -> list[str]:
    """``<tagger>_p<flavour>`` for the main jet classifier (``GN2_pb``, ``GN2_pc``, ...)."""
    from salt.evaluation.metrics import flavour_short_name

    return [f"{tagger}_p{flavour_short_name(name)}" for name in task.class_names]


def aux_output_names(tasks: list[Any], global_object: str) -> dict[int, str]:
    """``{id(task): name}`` of the constituent outputs under the names puma reads:
    ``aux_TrackOrigin`` (the most probable origin class) for the first constituent
    classification of an origin label, ``aux_VertexIndex`` for the first vertexing task, per
    input type; written besides salt's own ``<tagger>_<task>_<output>`` fields."""
    names: dict[int, str] = {}
    taken: set[tuple[str, str]] = set()
    for task in tasks:
        if task.input_name == global_object:
            continue
        if isinstance(task, VertexingTask):
            kind = "aux_VertexIndex"
        elif (
            isinstance(task, ClassificationTask) and "origin" in f"{task.label}{task.name}".lower()
        ):
            kind = "aux_TrackOrigin"
        else:
            continue
        if (task.input_name, kind) not in taken:
            taken.add((task.input_name, kind))
            names[id(task)] = kind
    return names


class PredictionWriter(L.Callback):
    """Appends each test (or predict) batch's outputs (plus carried fields) to ``path``.

    The jet dataset holds the carried jet fields, ``<tagger>_p<flavour>`` of the main jet
    classifier and ``<tagger>_<task>_<output>`` of every other jet-level task. With
    ``write_constituents``, each constituent type with tasks gets an ``(N, L)`` dataset with
    ``valid``, its carried labels, ``<tagger>_<task>_<output>`` (e.g. origin probabilities,
    vertex index) and the names puma reads (``<tagger>_aux_TrackOrigin``,
    ``<tagger>_aux_VertexIndex``).

    The file is complete or absent: it is claimed (see :class:`OutputClaim`) before the
    checkpoint is loaded, written under a temporary name, checked to hold one row per jet of the
    test file, and only then renamed into place. A failed write (full disk, file-size limit)
    raises an ``OSError`` naming the file and the cause, removes the temporary file and leaves
    an earlier output untouched.

    Args:
        path: the predictions file to write.
        tagger: the output name prefix (the model name).
        carried: ``{input name: [fields]}`` copied from the test file.
        field_dtypes: ``{input name: {field: stored dtype}}`` to write carried fields unchanged.
        datasets: ``{input name: HDF5 dataset name}`` for the output datasets.
        global_object: the jet-level input type.
        write_constituents: also write constituent-level outputs.
    """

    def __init__(
        self,
        path: Path,
        tagger: str,
        carried: dict[str, list[str]],
        field_dtypes: dict[str, dict[str, np.dtype]],
        datasets: dict[str, str],
        global_object: str = "jets",
        write_constituents: bool = False,
    ):
        super().__init__()
        self.path = Path(path)
        self.tagger = tagger
        self.carried = carried
        self.field_dtypes = field_dtypes
        self.datasets = datasets
        self.global_object = global_object
        self.write_constituents = write_constituents
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        # whoever built the writer decided whether an existing file may be replaced; a file
        # that appears later was written by a concurrent evaluation and is never replaced
        self._existed = self.path.exists()
        self._claim = OutputClaim(self.path)
        self._file: h5py.File | None = None
        self._out: dict[str, h5py.Dataset] = {}
        self._main_task: ClassificationTask | None = None
        self._aux: dict[int, str] = {}
        self._rank, self._world = 0, 1

    # -- claim -------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Claim the output before the checkpoint is loaded, so a second evaluation of the same
        run fails at once."""
        if stage not in ("test", "predict") or not trainer.is_global_zero:
            return
        self._claim.acquire()
        if self.path.exists() and not self._existed:
            self._claim.release()
            raise FileExistsError(
                f"predictions file '{self.path}' was written by another process meanwhile; "
                "pass --overwrite to replace it"
            )

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._claim.release()

    # -- writing -----------------------------------------------------------------------------
    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model: Any = pl_module.model  # type: ignore[attr-defined]
        self._tasks: list[Any] = list(model.tasks)
        self._main_task = main_task(self._tasks, self.global_object)
        self._aux = aux_output_names(self._tasks, self.global_object)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rank, self._world = trainer.global_rank, trainer.world_size
        with self._naming_failures(self._part(self._rank)):
            self._file = h5py.File(self._part(self._rank), "w")
        self._out = {}

    def _naming_failures(self, target: Path) -> _WriteFailure:
        return _WriteFailure(self.path, target)

    def _rows(self, outputs: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
        """Columns per input type for this batch."""
        labels, pad_masks, results = outputs["labels"], outputs["pad_masks"], outputs["outputs"]
        columns: dict[str, dict[str, np.ndarray]] = {self.global_object: {}}
        for name, fields in self.carried.items():
            if name != self.global_object and not self.write_constituents:
                continue
            target = columns.setdefault(name, {})
            if name in pad_masks:
                target["valid"] = ~pad_masks[name].cpu().numpy()
            for field in fields:
                target[field] = labels[name][field].cpu().numpy()
        for task in self._tasks:
            output: Tensor = results[task.name]
            jet_level = task.input_name == self.global_object
            if not jet_level and not self.write_constituents:
                continue
            target = columns.setdefault(task.input_name, {})
            main = self._main_task
            if main is not None and task is main:
                probs = main.probabilities(output.float()).cpu().numpy()
                for k, field in enumerate(output_field_names(self.tagger, main)):
                    target[field] = probs[:, k]
                continue
            mask = None if jet_level else pad_masks.get(task.input_name)
            if mask is not None and "valid" not in target:
                target["valid"] = ~mask.cpu().numpy()
            predicted = task.predict(output, mask)
            for key, value in predicted.items():
                target[f"{self.tagger}_{task.name}_{key}"] = value.cpu().numpy()
            aux = self._aux.get(id(task))
            if aux is not None:
                target[f"{self.tagger}_{aux}"] = self._aux_column(task, output, mask, predicted)
        return {k: v for k, v in columns.items() if v}

    @staticmethod
    def _aux_column(
        task: Any, output: Tensor, mask: Tensor | None, predicted: dict[str, Tensor]
    ) -> np.ndarray:
        """The integer column puma reads: the vertex index, or the most probable origin class
        (-1 on padding for both)."""
        if isinstance(task, VertexingTask):
            return predicted["vertex_index"].cpu().numpy().astype(np.int32)
        best = task.probabilities(output.float()).argmax(-1).to(torch.int32)
        if mask is not None:
            best = best.masked_fill(mask, -1)
        return best.cpu().numpy()

    def _dtype(self, name: str, cols: dict[str, np.ndarray]) -> np.dtype:
        stored = self.field_dtypes.get(name, {})
        return np.dtype([(f, stored.get(f, a.dtype)) for f, a in cols.items()])

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        assert self._file is not None
        with self._naming_failures(self._part(self._rank)):
            self._append(self._rows(outputs))

    def _append(self, rows_by_name: dict[str, dict[str, np.ndarray]]) -> None:
        assert self._file is not None
        need = sum(
            next(iter(cols.values())).size * self._dtype(name, cols).itemsize
            for name, cols in rows_by_name.items()
        )
        check_room(self._part(self._rank), need)
        for name, cols in rows_by_name.items():
            first = next(iter(cols.values()))
            if name not in self._out:
                self._out[name] = self._file.create_dataset(
                    self.datasets.get(name, name),
                    shape=(0, *first.shape[1:]),
                    maxshape=(None, *first.shape[1:]),
                    dtype=self._dtype(name, cols),
                    chunks=(
                        max(1, min(10_000, 400_000 // max(1, first[0].size))),
                        *first.shape[1:],
                    ),
                )
                if name == self.global_object and self._main_task is not None:
                    self._out[name].attrs["flavour_label"] = np.array(
                        self._main_task.class_names, dtype="S"
                    )
                    if self._main_task.label_map:  # evaluation maps the stored labels alike
                        self._out[name].attrs[LABEL_MAP_ATTRIBUTE] = label_map_attribute(
                            self._main_task.label, self._main_task.label_map
                        )
            dataset = self._out[name]
            rows = np.zeros(first.shape, dtype=dataset.dtype)
            for field, values in cols.items():
                rows[field] = values
            start = dataset.shape[0]
            dataset.resize((start + len(rows), *first.shape[1:]))
            dataset[start:] = rows
        # written through at once: a full disk shows here, naming the batch's file, and never
        # as a failed close (after which HDF5 cannot be shut down cleanly)
        self._file.flush()

    def _part(self, rank: int) -> Path:
        """Each rank writes its own part; rank 0 joins them in rank (= file) order."""
        return self._tmp if self._world == 1 else self._tmp.with_suffix(f".rank{rank}.tmp")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert self._file is not None
        with self._naming_failures(self._part(self._rank)):
            self._file.flush()
            self._file.close()
        self._file = None
        self._out = {}
        if self._world > 1:
            trainer.strategy.barrier("salt-predictions")
            if trainer.is_global_zero:
                with self._naming_failures(self._tmp):
                    join_parts([self._part(r) for r in range(self._world)], self._tmp)
        if trainer.is_global_zero:
            self._check_complete(expected_rows(trainer))
            os.replace(self._tmp, self.path)
            self._claim.release()
            log.info("predictions written to %s", self.path)

    def _check_complete(self, expected: int | None) -> None:
        """Refuse to rename a file that lacks jets (lost batches, an empty loader)."""
        dataset = self.datasets.get(self.global_object, self.global_object)
        with h5py.File(self._tmp, "r") as h5:
            written = h5[dataset].shape[0] if dataset in h5 else 0
        if written == 0 or (expected is not None and written != expected):
            self._remove_temporary()
            wanted = "" if expected is None else f" of {expected}"
            raise OSError(
                f"predictions file '{self.path}': {written}{wanted} jets were predicted; "
                "nothing written"
            )

    # salt predict writes the same file as salt test (without the tasks' truth labels)
    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.on_test_start(trainer, pl_module)

    def on_predict_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.on_test_end(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, err: BaseException):
        """Remove this process's temporary files (never another's: only the claim holder, or a
        rank of its job, has any) and give the claim back."""
        if self._file is not None:
            abandon(self._file, list(self._out.values()))
            self._file = None
            self._out = {}
        if self._claim.held or (self._world > 1 and not trainer.is_global_zero):
            self._remove_temporary()
        self._claim.release()

    def _remove_temporary(self) -> None:
        if self._world > 1 and self._rank != 0:
            self._part(self._rank).unlink(missing_ok=True)
            return
        for rank in range(self._world):
            self._part(rank).unlink(missing_ok=True)
        self._tmp.unlink(missing_ok=True)


ROOM_MARGIN = 4 << 20
"""Bytes kept free beyond a batch's rows: HDF5's metadata and chunk rounding."""


def check_room(path: Path, need: int) -> None:
    """Fail before a write that the disk or the file-size limit cannot take.

    HDF5 does not recover from a failed write: the file cannot be closed and the interpreter
    crashes on exit. Checking first turns a full disk or a ``ulimit -f`` into an ``OSError``
    naming the file.
    """
    need += ROOM_MARGIN
    size = path.stat().st_size if path.exists() else 0
    limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if limit != resource.RLIM_INFINITY and size + need > limit:
        raise OSError(
            errno.EFBIG,
            f"the file would exceed the file-size limit of {limit} bytes (ulimit -f)",
        )
    stats = os.statvfs(path.parent)
    free = stats.f_bavail * stats.f_frsize
    if need > free:
        raise OSError(errno.ENOSPC, f"{free} bytes free on its disk, {need} needed")


def abandon(h5: h5py.File, datasets: list[h5py.Dataset]) -> None:
    """Drop a file whose writes failed. ``File.close`` would retry the failed flush, and HDF5
    then crashes when the interpreter exits (a segmentation fault); closing the identifiers
    one by one does not."""
    for dataset in datasets:
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            dataset.id.close()
    with contextlib.suppress(OSError, RuntimeError, ValueError):
        h5.id.close()


def expected_rows(trainer: L.Trainer) -> int | None:
    """Jets in the test (or predict) file as the loader reads it, when it tells."""
    loaders = trainer.test_dataloaders if trainer.testing else trainer.predict_dataloaders
    loader = loaders[0] if isinstance(loaders, list | tuple) and loaders else loaders
    rows = getattr(getattr(loader, "dataset", None), "num_rows", None)
    return int(rows) if isinstance(rows, int | np.integer) else None


class _WriteFailure:
    """Turn an OSError from h5py or the file system while writing into one naming the output
    and the cause (``[Errno 27] File too large`` says neither)."""

    def __init__(self, output: Path, target: Path):
        self.output, self.target = output, target

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, err: BaseException | None, tb: Any) -> None:
        # h5py reports a write that fails while flushing its cache as a RuntimeError
        if isinstance(err, OSError | RuntimeError) and str(self.output) not in str(err):
            cause = _cause(err)
            raise OSError(
                f"predictions file '{self.output}': writing '{self.target.name}' failed "
                f"({cause}); nothing written"
            ) from err


def join_parts(parts: list[Path], target: Path, block: int = 100_000) -> None:
    """Concatenate the per-rank files (same datasets and dtypes) into ``target``, then remove
    them; copied in blocks so memory stays bounded."""
    with h5py.File(parts[0], "r") as first, h5py.File(target, "w") as out:
        for name, ds in first.items():
            total = 0
            for part in parts:
                with h5py.File(part, "r") as h5:
                    total += h5[name].shape[0]
            chunks = None
            if ds.chunks is not None and total > 0:
                chunks = (min(ds.chunks[0], total), *ds.chunks[1:])
            joined = out.create_dataset(
                name, shape=(total, *ds.shape[1:]), dtype=ds.dtype, chunks=chunks
            )
            joined.attrs.update(dict(ds.attrs))
            pos = 0
            for part in parts:
                with h5py.File(part, "r") as h5:
                    src = h5[name]
                    for start in range(0, src.shape[0], block):
                        rows = src[start : start + block]
                        joined[pos : pos + len(rows)] = rows
                        pos += len(rows)
    for part in parts:
        part.unlink()


def _cause(err: BaseException) -> str:
    """The system's words for a failed write (``File too large``, ``No space left on device``)
    rather than HDF5's whole error record."""
    text = " ".join(str(err).split())
    match = re.search(r"error message = '([^']+)'", text)
    if match:
        return match.group(1)
    if isinstance(err, OSError) and err.strerror:
        return " ".join(err.strerror.split())[:200]
    return text[:200] or type(err).__name__
