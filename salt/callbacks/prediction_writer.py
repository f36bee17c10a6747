"""Writes the outputs of ``salt test`` to an HDF5 file row-aligned with the test file."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import h5py
import lightning as L
import numpy as np
import torch

from salt.tasks.classification import ClassificationTask

log = logging.getLogger(__name__)


def output_field_names(tagger: str, task: ClassificationTask, first: bool) -> list[str]:
    """``<tagger>_p<flavour>`` for the main jet classifier, ``<tagger>_<task>_p<x>`` otherwise."""
    from salt.evaluation.metrics import flavour_short_name

    prefix = tagger if first else f"{tagger}_{task.name}"
    return [f"{prefix}_p{flavour_short_name(name)}" for name in task.class_names]


class PredictionWriter(L.Callback):
    """Appends each test batch's jet outputs (plus carried jet fields) to ``path``.

    The file is written under a temporary name and renamed at the end, so an interrupted
    evaluation never leaves a truncated predictions file behind.

    Args:
        path: the predictions file to write.
        tagger: the output name prefix (the model name).
        jet_fields: jet fields of the test file to copy alongside the outputs.
        field_dtypes: the stored dtype of each carried field (to write them unchanged).
        global_object: the jet-level input type; its dataset in the output is named after it.
    """

    def __init__(
        self,
        path: Path,
        tagger: str,
        jet_fields: list[str],
        field_dtypes: dict[str, np.dtype],
        global_object: str = "jets",
    ):
        super().__init__()
        self.path = Path(path)
        self.tagger = tagger
        self.jet_fields = jet_fields
        self.field_dtypes = field_dtypes
        self.global_object = global_object
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._file: h5py.File | None = None
        self._dataset: h5py.Dataset | None = None
        self._tasks: list[tuple[ClassificationTask, list[str]]] = []

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model  # type: ignore[attr-defined]
        jet_tasks = [
            t
            for t in model.tasks
            if isinstance(t, ClassificationTask) and t.input_name == model.global_object
        ]
        self._tasks = [
            (t, output_field_names(self.tagger, t, i == 0)) for i, t in enumerate(jet_tasks)
        ]
        fields = [(f, self.field_dtypes[f]) for f in self.jet_fields]
        fields += [(name, np.float32) for _, names in self._tasks for name in names]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self._tmp, "w")
        self._dataset = self._file.create_dataset(
            self.global_object,
            shape=(0,),
            maxshape=(None,),
            dtype=np.dtype(fields),
            chunks=(10_000,),
        )
        if jet_tasks:
            self._dataset.attrs["flavour_label"] = np.array(jet_tasks[0].class_names, dtype="S")

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        assert self._dataset is not None
        labels = outputs["labels"].get(self.global_object, {})
        first = next(iter(outputs["outputs"].values()))
        rows = np.zeros(first.shape[0], dtype=self._dataset.dtype)
        for field in self.jet_fields:
            rows[field] = labels[field].cpu().numpy()
        for task, names in self._tasks:
            probs = torch.softmax(outputs["outputs"][task.name].float(), dim=-1).cpu().numpy()
            for j, name in enumerate(names):
                rows[name] = probs[:, j]
        start = self._dataset.shape[0]
        self._dataset.resize((start + len(rows),))
        self._dataset[start:] = rows

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        os.replace(self._tmp, self.path)
        log.info("predictions written to %s", self.path)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, err: BaseException):
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)
