"""Input normalisation from a norm dict, as a module so it travels inside checkpoints and ONNX."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import yaml
from torch import Tensor, nn

from salt.data.paths import not_a_file
from salt.errors import suggest

NormDict = dict[str, dict[str, dict[str, float]]]


def load_norm_dict(path: str | Path) -> NormDict:
    """Read a ``{dataset: {variable: {mean, std}}}`` YAML file with a one-line error if broken."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data.norm_dict: file '{path}' {not_a_file(path)}")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"data.norm_dict: '{path}' is not valid YAML ({err})") from None
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not a text file"
        raise ValueError(f"data.norm_dict: '{path}' cannot be read ({reason})") from None
    if not isinstance(content, dict):
        raise ValueError(f"data.norm_dict: '{path}' must map dataset -> variable -> mean/std")
    return content


def _number(value: object) -> float:
    """A norm-dict value as a float; NaN for what is not a number (reported with its key)."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


class Normaliser(nn.Module):
    """Subtracts the mean and divides by the std of every input variable, per input type.

    Args:
        norm_dict: ``{dataset: {variable: {mean, std}}}``.
        variables: ``{input_name: [variables]}`` (internal names, including GLOBAL/PARAMETERS).
        datasets: ``{input_name: dataset}`` where each input's statistics live in the norm dict.
        source: where the norm dict came from, for error messages.
    """

    def __init__(
        self,
        norm_dict: NormDict,
        variables: dict[str, list[str]],
        datasets: dict[str, str],
        source: str = "norm dict",
    ):
        super().__init__()
        self.input_names = list(variables)
        for name, names in variables.items():
            dataset = datasets[name]
            stats = norm_dict.get(dataset)
            if not isinstance(stats, dict):
                raise KeyError(f"{source}: no entry for dataset '{dataset}' (needed by '{name}')")
            means, stds = [], []
            for var in names:
                entry = stats.get(var)
                if entry is None:
                    close = suggest(var, stats)
                    hint = (
                        f" (did you mean '{close}'? check data.variables.{name})" if close else ""
                    )
                    raise KeyError(
                        f"{source}: '{dataset}.{var}' is missing (needs mean and std){hint}"
                    )
                if not isinstance(entry, dict) or "mean" not in entry or "std" not in entry:
                    raise KeyError(
                        f"{source}: '{dataset}.{var}' is {entry!r}, expected a mapping with "
                        "mean and std"
                    )
                mean, std = _number(entry["mean"]), _number(entry["std"])
                if not math.isfinite(mean) or not math.isfinite(std) or std <= 0:
                    raise ValueError(
                        f"{source}: '{dataset}.{var}' has mean={entry['mean']!r}, "
                        f"std={entry['std']!r} (expected finite numbers and std > 0)"
                    )
                means.append(mean)
                stds.append(std)
            self.register_buffer(f"mean_{name}", torch.tensor(means, dtype=torch.float32))
            self.register_buffer(f"std_{name}", torch.tensor(stds, dtype=torch.float32))

    def forward(self, inputs: dict[str, Tensor], pad_masks: dict[str, Tensor]) -> dict[str, Tensor]:
        out = dict(inputs)
        for name in self.input_names:
            if name not in inputs:
                continue
            x = (inputs[name] - getattr(self, f"mean_{name}")) / getattr(self, f"std_{name}")
            if name in pad_masks:
                x = x.masked_fill(pad_masks[name].unsqueeze(-1), 0.0)
            out[name] = x
        return out
