"""Turn structured rows into the batch every later stage speaks: inputs, pad masks and labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from salt.data.parameters import ParameterSampler

SPECIAL_GROUPS = ("GLOBAL", "PARAMETERS")

Batch = tuple[dict[str, Tensor], dict[str, Tensor], dict[str, dict[str, Tensor]]]
ArrayBatch = tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]


@dataclass
class InputSpec:
    """One input type: its internal name, the HDF5 dataset it comes from and its variables."""

    name: str
    dataset: str
    variables: list[str]
    constituent: bool


@dataclass
class BatchBuilder:
    """Vectorised conversion of a block of rows (no per-jet Python).

    Inputs become float32 with padded entries zeroed, pad masks are True where padded, integer
    labels become int64 and float labels float32.
    """

    inputs: list[InputSpec]
    labels: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # name -> (ds, fields)
    description: str = "file"
    parameters: ParameterSampler | None = None
    parameter_mode: str = "train"  # "train": draw for background jets, "test": the test value

    def build(
        self, raw: dict[str, np.ndarray], first_row: int, rng: np.random.Generator | None = None
    ) -> ArrayBatch:
        inputs: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            rows = raw[spec.dataset]
            x = np.empty((*rows.shape, len(spec.variables)), dtype=np.float32)
            for j, var in enumerate(spec.variables):
                x[..., j] = rows[var]
            if spec.constituent:
                padded = ~rows["valid"]
                x[padded] = 0.0
                masks[spec.name] = padded
            self._check_finite(spec, x, first_row)
            if spec.name == "PARAMETERS" and self.parameters is not None:
                if self.parameter_mode == "test":
                    x = self.parameters.for_testing(x)
                else:
                    x = self.parameters.for_training(x, rng or np.random.default_rng(first_row))
            inputs[spec.name] = x
        labels: dict[str, dict[str, np.ndarray]] = {}
        for name, (dataset, fields) in self.labels.items():
            rows = raw[dataset]
            labels[name] = {}
            for label in fields:
                values = rows[label]
                kind = values.dtype.kind
                labels[name][label] = values.astype(
                    np.int64 if kind in "iub" else np.float32, copy=False
                )
        return inputs, masks, labels

    def _check_finite(self, spec: InputSpec, x: np.ndarray, first_row: int) -> None:
        if np.isfinite(x).all():
            return
        bad = np.argwhere(~np.isfinite(x))[0]
        row, var = int(bad[0]) + first_row, spec.variables[int(bad[-1])]
        raise ValueError(
            f"{self.description}: non-finite value in '{spec.dataset}.{var}' at row {row} "
            "(inputs must be finite; fix or filter the file)"
        )


def take(batch: ArrayBatch, index: np.ndarray | slice) -> ArrayBatch:
    """Select rows of every array of a batch."""
    inputs, masks, labels = batch
    return (
        {k: v[index] for k, v in inputs.items()},
        {k: v[index] for k, v in masks.items()},
        {k: {f: a[index] for f, a in d.items()} for k, d in labels.items()},
    )


def to_torch(batch: ArrayBatch) -> Batch:
    """Wrap numpy arrays as tensors (contiguous copies only where numpy made views)."""
    inputs, masks, labels = batch

    def t(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    return (
        {k: t(v) for k, v in inputs.items()},
        {k: t(v) for k, v in masks.items()},
        {k: {f: t(a) for f, a in d.items()} for k, d in labels.items()},
    )
