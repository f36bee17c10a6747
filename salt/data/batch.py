"""Turn structured rows into the batch every later stage speaks: inputs, pad masks and labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from salt.data.buffers import BufferPool
from salt.data.parameters import ParameterSampler

SPECIAL_GROUPS = ("GLOBAL", "PARAMETERS")
# labels["EVENT"]["weight"]: the per-row training weight read from ``data.weight_field``; it
# belongs to no input type, so the tasks find it here whatever the global object is called
EVENT = "EVENT"
EVENT_WEIGHT = "weight"

Inputs = dict[str, Tensor]
"""``{input type: (B, F) for the jet, (B, L, F) per constituent type}``."""
PadMasks = dict[str, Tensor]
"""``{constituent type: bool (B, L)}``, True on padded entries."""
Labels = dict[str, dict[str, Tensor]]
"""``{input type: {label field: (B,) or (B, L)}}``, plus per-jet weights under ``EVENT``."""
Batch = tuple[Inputs, PadMasks, Labels]
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
    labels become int64 and float labels float32. With ``weight = (dataset, field)`` the
    per-row training weights are added as float32 ``labels[EVENT][EVENT_WEIGHT]``.
    """

    inputs: list[InputSpec]
    labels: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # name -> (ds, fields)
    description: str = "file"
    parameters: ParameterSampler | None = None
    parameter_mode: str = "train"  # "train": draw for background jets, "test": the test value
    weight: tuple[str, str] | None = None  # (dataset, field) of the per-row training weight
    non_finite_to_num: bool = False  # NaN and +-inf inputs become 0 instead of an error

    def build(
        self,
        raw: dict[str, np.ndarray],
        row_numbers: np.ndarray,
        rng: np.random.Generator | None = None,
        pool: BufferPool | None = None,
    ) -> ArrayBatch:
        """Convert the raw rows; ``row_numbers`` (global, per row) are for error messages.
        With a ``pool``, the inputs are written into reused buffers."""
        inputs: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            rows = raw[spec.dataset]
            x = as_float_matrix(rows, spec.variables, pool)
            if spec.constituent:
                padded = ~rows["valid"]
                np.copyto(x, 0.0, where=padded[..., None])
                masks[spec.name] = padded
            if self.non_finite_to_num:
                np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            self._check_finite(spec, x, row_numbers)
            if spec.name == "PARAMETERS" and self.parameters is not None:
                if self.parameter_mode == "test":
                    x = self.parameters.for_testing(x)
                else:
                    seed = int(row_numbers[0]) if len(row_numbers) else 0
                    x = self.parameters.for_training(x, rng or np.random.default_rng(seed))
            inputs[spec.name] = x
        labels: dict[str, dict[str, np.ndarray]] = {}
        for name, (dataset, fields) in self.labels.items():
            rows = raw[dataset]
            labels[name] = {}
            for label in fields:
                values = rows[label]
                kind = values.dtype.kind
                # always a copy: the raw records' buffer is reused for a later chunk
                labels[name][label] = values.astype(np.int64 if kind in "iub" else np.float32)
        if self.weight is not None:
            labels[EVENT] = {EVENT_WEIGHT: self._weights(raw, row_numbers)}
        return inputs, masks, labels

    def _weights(self, raw: dict[str, np.ndarray], row_numbers: np.ndarray) -> np.ndarray:
        """The weight column as float32; a NaN or inf weight would silently poison the loss."""
        assert self.weight is not None
        dataset, name = self.weight
        weights = raw[dataset][name].astype(np.float32)
        if weights.size and not (np.isfinite(weights.min()) and np.isfinite(weights.max())):
            row = int(row_numbers[int(np.argmin(np.isfinite(weights)))])
            raise ValueError(
                f"{self.description}: non-finite weight in '{dataset}.{name}' (data.weight_field) "
                f"at row {row}"
            )
        return weights

    def _check_finite(self, spec: InputSpec, x: np.ndarray, row_numbers: np.ndarray) -> None:
        # two reductions instead of a full boolean array: NaN and inf both surface in min/max
        if x.size == 0 or (np.isfinite(x.min()) and np.isfinite(x.max())):
            return
        bad = np.argwhere(~np.isfinite(x))[0]
        row, var = int(row_numbers[int(bad[0])]), spec.variables[int(bad[-1])]
        raise ValueError(
            f"{self.description}: non-finite value in '{spec.dataset}.{var}' at row {row} "
            "(inputs must be finite; fix or filter the file)"
        )


def as_float_matrix(
    rows: np.ndarray, variables: list[str], pool: BufferPool | None = None
) -> np.ndarray:
    """``(*rows.shape, len(variables))`` float32 from a structured array, in one C-level cast.

    Casting the multi-field view to a packed all-float32 record and viewing it as a matrix is
    several times faster than copying field by field into an interleaved array. With a
    ``pool`` the result is written into a reused buffer.
    """
    if not variables:
        return np.zeros((*rows.shape, 0), dtype=np.float32)
    packed = np.dtype([(name, "<f4") for name in variables])
    shape = (*rows.shape, len(variables))
    if pool is None or rows.size == 0:
        return rows[variables].astype(packed).view(np.float32).reshape(shape)
    out = pool.take(shape, np.float32)
    out.view(packed).reshape(rows.shape)[...] = rows[variables]  # fields cast by position
    return out


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
