"""What an exported network takes and gives: input and output names, shapes and meanings.

Inputs are the raw (unnormalised) features, one tensor per input type:

- ``jet_features`` (batch, n_jet_variables) for the global object (``<singular>_features``);
  ``global_features`` and ``parameter_features`` for the GLOBAL and PARAMETERS groups.
- per constituent type (``tracks``, ``electrons``, ...): ``track_features``
  (batch, n_tracks, n_variables) and ``track_mask`` (batch, n_tracks), **bool, True = padded**
  (salt's pad-mask convention). Real constituents need not come first, and a caller that runs
  one jet at a time can pass exactly its constituents with an all-False mask.

Outputs, each a separate tensor (``<name>`` is the tagger name):

- the first jet-level classification task: ``<name>_p<flavour>`` (batch,), e.g. ``GN2_pb``,
  the same names as in the predictions file of ``salt test``;
- any other task: ``<name>_<task>_<key>`` for every entry of the task's ``predict`` (jet
  tasks (batch,), constituent tasks (batch, n)), e.g. ``GN2_track_vertexing_vertex_index``;
- a constituent-level classification task also gives ``<name>_<task>`` (batch, n) int64, the
  most probable class index (as ATLAS' ``TrackOrigin``), -1 on padding.

Padded constituents hold NaN (float outputs) or -1 (integer outputs). The batch axis and every
constituent axis are dynamic.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from salt.tasks.base import NamedOutput, TaskBase
from salt.tasks.classification import main_task

SPECIAL_NAMES = {"GLOBAL": "global", "PARAMETERS": "parameter"}


class ExportError(RuntimeError):
    """The model cannot be exported to ONNX, or its export disagrees with PyTorch."""


def singular(input_name: str) -> str:
    """``tracks`` -> ``track``, ``GLOBAL`` -> ``global``: the stem of the ONNX names."""
    if input_name in SPECIAL_NAMES:
        return SPECIAL_NAMES[input_name]
    name = input_name.lower()
    return name[:-1] if len(name) > 1 and name.endswith("s") else name


@dataclass(frozen=True)
class InputDesc:
    """One ONNX input (plus its mask for a constituent type)."""

    input_name: str
    dataset: str
    variables: tuple[str, ...]
    constituent: bool

    @property
    def name(self) -> str:
        return f"{singular(self.input_name)}_features"

    @property
    def mask_name(self) -> str | None:
        return f"{singular(self.input_name)}_mask" if self.constituent else None

    @property
    def length_axis(self) -> str | None:
        return f"n_{self.input_name}" if self.constituent else None


def task_outputs(
    tasks: list[TaskBase],
    main: TaskBase | None,
    global_object: str,
    prefix: str,
    raw: dict[str, Tensor],
    pad_masks: dict[str, Tensor],
) -> list[NamedOutput]:
    """Turn the raw network outputs of ``tasks`` into the named outputs of the ONNX file.

    Used inside the exported graph and, on the same raw outputs of the PyTorch model, as the
    reference of the parity check. Each task names its own outputs
    (:meth:`~salt.tasks.base.TaskBase.exported_outputs`, by default one per entry of its
    ``predict``), so a new task type is exported as soon as it implements ``predict``.
    """
    outputs: list[NamedOutput] = []
    for task in tasks:
        constituent = None if task.input_name == global_object else task.input_name
        mask = pad_masks.get(task.input_name) if constituent else None
        outputs += task.exported_outputs(raw[task.name], prefix, constituent, mask, task is main)
    return outputs


__all__ = ["ExportError", "InputDesc", "NamedOutput", "main_task", "singular", "task_outputs"]
