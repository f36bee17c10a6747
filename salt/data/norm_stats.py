"""``salt norm-dict``: the norm dict and class dict of a config's training files.

Training needs the mean and standard deviation of every input variable (the norm dict) and,
for tasks with ``use_class_dict``, class weights (the class dict). This tool computes both from
the files a config trains on, reading them in large row blocks with only the needed fields, so
files far larger than memory stream through with a progress bar:

* norm dict: ``{dataset: {variable: {mean, std}}}`` over the *valid* constituents (padding is
  never counted) and over all jets for jet-level variables (GLOBAL/PARAMETERS included);
  non-finite values are left out and counted.
* class dict: ``{dataset: {label: [weights]}}`` with the inverse-frequency weights
  ``N / (K * n_c)`` of every classification task's label (1.0 for every class of a balanced
  sample), after its ``label_map``; labels < 0 (padding, unknown) are not counted.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from salt.data.paths import resolve_files
from salt.errors import OneLineParser

log = logging.getLogger(__name__)

SPECIAL_GROUPS = ("GLOBAL", "PARAMETERS")


@dataclass
class RunningMoments:
    """Mean and variance of a stream of blocks, merged with Chan et al.'s parallel formula
    (stable in float64 however many values come; a naive sum of squares loses precision)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    non_finite: int = 0

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        finite = np.isfinite(values)
        self.non_finite += int(values.size - finite.sum())
        values = values[finite]
        if not values.size:
            return
        n, mean = values.size, float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta**2 * self.count * n / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count else float("nan")


@dataclass
class LabelCounts:
    """Class counts of one label (after its label_map)."""

    num_classes: int | None
    label_map: dict[int, int] | None = None
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    unmapped: int = 0

    def add(self, labels: np.ndarray) -> None:
        labels = np.asarray(labels).ravel().astype(np.int64)
        if self.label_map:
            table = np.full(max(max(self.label_map), int(labels.max(initial=0))) + 1, -1)
            for stored, index in self.label_map.items():
                table[stored] = index
            known = labels >= 0
            mapped = np.full_like(labels, -1)
            mapped[known] = table[labels[known]]
            self.unmapped += int((known & (mapped < 0)).sum())
            labels = mapped
        labels = labels[labels >= 0]
        counts = np.bincount(labels)
        if counts.size > self.counts.size:
            counts[: self.counts.size] += self.counts
            self.counts = counts
        else:
            self.counts[: counts.size] += counts

    def weights(self, where: str) -> list[float]:
        size = self.num_classes or self.counts.size
        if self.counts.size > size:
            raise ValueError(
                f"{where}: labels up to {self.counts.size - 1} but {size} classes are configured"
            )
        counts = np.zeros(size, dtype=np.int64)
        counts[: self.counts.size] = self.counts
        total = int(counts.sum())
        if total == 0:
            raise ValueError(f"{where}: no labelled entries in the files")
        missing = [i for i in range(size) if counts[i] == 0]
        if missing:
            log.warning("%s: classes %s never occur; their weight is 0", where, missing)
        return [float(total / (size * c)) if c else 0.0 for c in counts]


@dataclass
class Request:
    """What to compute: variables and labels per HDF5 dataset."""

    variables: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, dict[str, LabelCounts]] = field(default_factory=dict)

    def fields(self, dataset: str) -> list[str]:
        names = list(self.variables.get(dataset, []))
        names += [n for n in self.labels.get(dataset, {}) if n not in names]
        return names


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(paths: Iterable[Path]) -> dict[str, Any]:
    """Merge the YAML configs in order (later files win), read in salt's syntax."""
    from salt.compat.rewrite import translate_config

    merged: dict[str, Any] = {}
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"--config: file '{path}' does not exist")
        content = yaml.safe_load(path.read_text()) or {}
        if not isinstance(content, dict):
            raise ValueError(f"--config {path}: expected a YAML mapping")
        merged = _deep_merge(merged, translate_config(content, str(path)).config)
    return merged


def request_from_config(config: Mapping[str, Any], with_classes: bool) -> Request:
    """The variables of ``data.variables`` and the labels of the classification tasks."""
    data = config.get("data") or {}
    variables = data.get("variables")
    if not isinstance(variables, dict) or not variables:
        raise ValueError("data.variables: expected {input type: [variables]} in the config")
    glob = data.get("global_object", "jets")
    input_map = data.get("input_map") or {}

    def dataset(name: str) -> str:
        key = glob if name.upper() in SPECIAL_GROUPS else name
        return str(input_map.get(key, key))

    request = Request()
    for name, names in variables.items():
        current = request.variables.setdefault(dataset(name), [])
        current.extend(v for v in names if v not in current)
    if not with_classes:
        return request
    net = ((config.get("model") or {}).get("model") or {}).get("init_args") or {}
    for task in net.get("tasks") or []:
        if not str(task.get("class_path", "")).endswith("ClassificationTask"):
            continue
        args = task.get("init_args") or {}
        names = args.get("class_names")
        label_map = args.get("label_map")
        request.labels.setdefault(dataset(args["input_name"]), {})[args["label"]] = LabelCounts(
            len(names) if names else None,
            {int(k): int(v) for k, v in label_map.items()} if label_map else None,
        )
    return request


def _blocks(num_rows: int, block: int) -> Iterable[tuple[int, int]]:
    for start in range(0, num_rows, block):
        yield start, min(start + block, num_rows)


def compute(
    files: list[Path],
    request: Request,
    num_jets: int = -1,
    block_size: int = 100_000,
    progress: bool = True,
) -> tuple[dict[str, dict[str, RunningMoments]], dict[str, dict[str, LabelCounts]]]:
    """Stream the files block by block and accumulate the moments and label counts."""
    from rich.progress import Progress

    moments = {ds: {v: RunningMoments() for v in names} for ds, names in request.variables.items()}
    plan: list[tuple[Path, int]] = []
    remaining = num_jets
    for path in files:
        with h5py.File(path, "r") as h5:
            for ds in request.variables:
                if ds not in h5:
                    raise KeyError(f"{path}: no dataset '{ds}' (from data.variables)")
                names = h5[ds].dtype.names or ()
                missing = [f for f in request.fields(ds) if f not in names]
                if missing:
                    raise KeyError(f"{path}: dataset '{ds}' has no fields {missing}")
            rows = len(h5[next(iter(request.variables))])
        rows = rows if remaining < 0 else min(rows, remaining)
        plan.append((path, rows))
        if remaining >= 0:
            remaining -= rows
    total = sum(rows for _, rows in plan)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("norm-dict", total=total)
        for path, rows in plan:
            with h5py.File(path, "r") as h5:
                for start, stop in _blocks(rows, block_size):
                    for ds, names in request.variables.items():
                        h5ds = h5[ds]
                        fields = request.fields(ds)
                        has_valid = h5ds.ndim > 1 and "valid" in (h5ds.dtype.names or ())
                        block = h5ds.fields([*fields, "valid"] if has_valid else fields)[start:stop]
                        valid = block["valid"].astype(bool) if has_valid else None
                        for var in names:
                            values = block[var]
                            moments[ds][var].add(values[valid] if valid is not None else values)
                        for label, counts in request.labels.get(ds, {}).items():
                            values = block[label]
                            counts.add(values[valid] if valid is not None else values)
                    bar.advance(task, stop - start)
    return moments, request.labels


def norm_dict_of(moments: Mapping[str, Mapping[str, RunningMoments]]) -> dict[str, Any]:
    """The norm dict, with a warning (and std 1) for constant or empty variables."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for ds, variables in moments.items():
        for var, m in variables.items():
            if m.non_finite:
                log.warning("%s.%s: %d non-finite values left out", ds, var, m.non_finite)
            if m.count == 0:
                raise ValueError(f"{ds}.{var}: no finite valid values in the files")
            std = m.std
            if std <= 0:
                log.warning("%s.%s is constant (%g); std written as 1", ds, var, m.mean)
                std = 1.0
            out.setdefault(ds, {})[var] = {"mean": float(m.mean), "std": float(std)}
    return out


def _write(path: Path, content: Mapping[str, Any], overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"'{path}' exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(yaml.safe_dump(dict(content), sort_keys=False))
    tmp.replace(path)


def norm_dict_main(argv: list[str] | None = None) -> int:
    """Entry point of ``salt norm-dict``; returns the exit code."""
    parser = OneLineParser(
        prog="salt norm-dict",
        description="Write the norm dict (and class dict) of a config's training files.",
    )
    parser.add_argument("-c", "--config", type=Path, action="append", required=True)
    parser.add_argument("--train_file", nargs="+", help="files to read (default: the config's)")
    parser.add_argument("--norm_dict", type=Path, required=True, help="output norm dict YAML")
    parser.add_argument("--class_dict", type=Path, help="also write the class dict here")
    parser.add_argument("--num_jets", type=int, default=-1, help="jets to read (-1: all)")
    parser.add_argument("--block_size", type=int, default=100_000, help="jets read at once")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        for out in (args.norm_dict, args.class_dict):
            if out is not None and out.exists() and not args.overwrite:
                raise FileExistsError(f"'{out}' exists; pass --overwrite to replace it")
        config = load_config(args.config)
        spec = args.train_file or (config.get("data") or {}).get("train_file")
        if spec is None:
            raise ValueError("data.train_file: not in the config; pass --train_file")
        files = resolve_files(spec, "train_file")
        request = request_from_config(config, with_classes=args.class_dict is not None)
        moments, labels = compute(
            files, request, args.num_jets, args.block_size, progress=not args.no_progress
        )
        _write(args.norm_dict, norm_dict_of(moments), args.overwrite)
        log.info("norm dict written to %s", args.norm_dict)
        if args.class_dict is not None:
            classes: dict[str, dict[str, list[float]]] = {}
            for ds, per_label in labels.items():
                for label, counts in per_label.items():
                    if counts.unmapped:
                        log.warning(
                            "%s.%s: %d labels not in the label_map, not counted",
                            ds,
                            label,
                            counts.unmapped,
                        )
                    classes.setdefault(ds, {})[label] = counts.weights(f"{ds}.{label}")
            if not classes:
                raise ValueError("--class_dict: the config has no classification task")
            _write(args.class_dict, classes, args.overwrite)
            log.info("class dict written to %s", args.class_dict)
    except (OSError, KeyError, ValueError, yaml.YAMLError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"salt norm-dict: error: {message}", file=sys.stderr)
        return 2
    return 0


__all__ = ["RunningMoments", "compute", "norm_dict_main", "request_from_config"]
