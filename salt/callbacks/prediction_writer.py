"""Writes the outputs of ``salt test`` to an HDF5 file row-aligned with the test file."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import h5py
import lightning as L
import numpy as np
from torch import Tensor

from salt.tasks.classification import ClassificationTask

log = logging.getLogger(__name__)


def output_field_names(tagger: str, task: ClassificationTask) -> list[str]:
    """``<tagger>_p<flavour>`` for the main jet classifier (``GN2_pb``, ``GN2_pc``, ...)."""
    from salt.evaluation.metrics import flavour_short_name

    return [f"{tagger}_p{flavour_short_name(name)}" for name in task.class_names]


class PredictionWriter(L.Callback):
    """Appends each test (or predict) batch's outputs (plus carried fields) to ``path``.

    The jet dataset holds the carried jet fields, ``<tagger>_p<flavour>`` of the main jet
    classifier and ``<tagger>_<task>_<output>`` of every other jet-level task. With
    ``write_constituents``, each constituent type with tasks gets an ``(N, L)`` dataset with
    ``valid``, its carried labels and ``<tagger>_<task>_<output>`` (e.g. origin probabilities,
    vertex index). The file is written under a temporary name and renamed at the end, so an
    interrupted evaluation never leaves a truncated predictions file behind.

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
        self._file: h5py.File | None = None
        self._out: dict[str, h5py.Dataset] = {}
        self._main_task: ClassificationTask | None = None
        self._rank, self._world = 0, 1

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model  # type: ignore[attr-defined]
        self._tasks = list(model.tasks)
        self._main_task = next(
            (
                t
                for t in self._tasks
                if isinstance(t, ClassificationTask) and t.input_name == self.global_object
            ),
            None,
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rank, self._world = trainer.global_rank, trainer.world_size
        self._file = h5py.File(self._part(self._rank), "w")
        self._out = {}

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
            if task is self._main_task:
                probs = task.probabilities(output.float()).cpu().numpy()
                for k, field in enumerate(output_field_names(self.tagger, task)):
                    target[field] = probs[:, k]
                continue
            mask = None if jet_level else pad_masks.get(task.input_name)
            if mask is not None and "valid" not in target:
                target["valid"] = ~mask.cpu().numpy()
            for key, value in task.predict(output, mask).items():
                target[f"{self.tagger}_{task.name}_{key}"] = value.cpu().numpy()
        return {k: v for k, v in columns.items() if v}

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
        for name, cols in self._rows(outputs).items():
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
            dataset = self._out[name]
            rows = np.zeros(first.shape, dtype=dataset.dtype)
            for field, values in cols.items():
                rows[field] = values
            start = dataset.shape[0]
            dataset.resize((start + len(rows), *first.shape[1:]))
            dataset[start:] = rows

    def _part(self, rank: int) -> Path:
        """Each rank writes its own part; rank 0 joins them in rank (= file) order."""
        return self._tmp if self._world == 1 else self._tmp.with_suffix(f".rank{rank}.tmp")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        if self._world > 1:
            trainer.strategy.barrier("salt-predictions")
            if trainer.is_global_zero:
                join_parts([self._part(r) for r in range(self._world)], self._tmp)
        if trainer.is_global_zero:
            os.replace(self._tmp, self.path)
            log.info("predictions written to %s", self.path)

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
        if self._file is not None:
            self._file.close()
            self._file = None
        for rank in range(getattr(self, "_world", 1)):
            self._part(rank).unlink(missing_ok=True)
        self._tmp.unlink(missing_ok=True)


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
