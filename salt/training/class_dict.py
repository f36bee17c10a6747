"""Class weights from the class dict, applied to the tasks that ask for them.

Like normalisation, the weights become part of the model (buffers of the tasks), so a
checkpoint carries them and ``salt test`` needs no class dict file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from salt.errors import ConfigError, InputFileError


def apply_class_dict(
    path: str | None, tasks: Iterable[Any], dataset_name: Callable[[str], str]
) -> None:
    """Give every task with ``use_class_dict`` its weights from the class dict at ``path``
    (``{dataset: {label: [weights...]}}``, keyed by HDF5 dataset name)."""
    wanting = [t for t in tasks if getattr(t, "use_class_dict", False)]
    if not wanting:
        return
    if path is None:
        raise ConfigError("a task has use_class_dict: true but data.class_dict is not set")
    if not Path(path).is_file():
        raise FileNotFoundError(f"data.class_dict: file '{path}' does not exist")
    try:
        content = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError:
        raise InputFileError(f"data.class_dict: '{path}' is not valid YAML") from None
    for task in wanting:
        dataset = dataset_name(task.input_name)
        try:
            weights = content[dataset][task.label]
        except (KeyError, TypeError):
            raise InputFileError(
                f"data.class_dict '{path}': no weights for '{dataset}.{task.label}'"
            ) from None
        where = f"data.class_dict '{path}': '{dataset}.{task.label}'"
        if not isinstance(weights, list) or not all(_weight(w) for w in weights):
            raise InputFileError(
                f"{where} is {weights!r}, expected a list of finite non-negative weights"
            )
        try:
            task.set_class_weights(list(weights))
        except ValueError as err:
            raise InputFileError(f"{where}: {err}") from None


def _weight(value: object) -> bool:
    """A class weight: a finite number, 0 or more (a NaN or negative one poisons the loss)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
