"""``salt calculate_quantiles``: quantile bin edges for the piecewise-linear encoding (PLE).

Quantile bins put the same number of training values in every bin, so the encoding has
resolution where the data are (arXiv 2203.05556, sec. 3.2.1). The edges are computed once from
the training file named by a salt config and stored next to it; the PLE embedding with
``ple_bins: quantile`` reads them through ``bins_path``.

File format (YAML, or NPZ when the name ends in ``.npz``)::

    num_bins: 16
    normalised: true          # edges below are in the model's units, (x - mean) / std
    edges: {tracks: {d0: [...], ...}, jets: {...}}
    raw_edges: {...}          # the same in the units of the file

Keys are salt's input names (``jets``, ``tracks``, ``GLOBAL``, ``PARAMETERS``). Duplicate edges
(integer variables) are merged, so a variable may have fewer bins than asked for.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from salt.data.batch import SPECIAL_GROUPS

log = logging.getLogger(__name__)

DEFAULT_NUM_JETS = 100_000
READ_ROWS = 50_000  # rows per contiguous read: large enough to be fast, small enough for memory

EdgeTable = dict[str, dict[str, list[float]]]


def quantile_edges(values: np.ndarray, num_bins: int) -> np.ndarray:
    """``num_bins + 1`` quantile edges of ``values``, duplicates merged (float64)."""
    quantiles = np.linspace(0.0, 1.0, num_bins + 1)
    return np.unique(np.quantile(values.astype(np.float64), quantiles))


def _inputs(data: dict[str, Any]) -> list[tuple[str, str, list[str], int | None]]:
    """(input name, HDF5 dataset, variables, max constituents) for every input of the config."""
    variables = data.get("variables")
    if not isinstance(variables, dict) or not variables:
        raise ValueError("data.variables: missing from the config(s)")
    glob = data.get("global_object", "jets")
    input_map = data.get("input_map") or {}
    num_inputs = data.get("num_inputs") or {}
    out = []
    for name, names in variables.items():
        key = name.upper() if name.upper() in SPECIAL_GROUPS else name
        source = glob if key in SPECIAL_GROUPS else key
        out.append((key, input_map.get(source, source), list(names), num_inputs.get(key)))
    return out


def read_values(
    files: Sequence[Path],
    dataset: str,
    variables: list[str],
    max_len: int | None,
    num_jets: int,
) -> dict[str, np.ndarray]:
    """All values of ``variables`` of real entries (``valid``) in the first ``num_jets`` jets.

    Reads contiguous row blocks with only the needed fields (``Dataset.fields``).
    """
    import h5py

    chunks: dict[str, list[np.ndarray]] = {v: [] for v in variables}
    remaining = num_jets
    for path in files:
        if remaining == 0:
            break
        with h5py.File(path, "r") as h5:
            if dataset not in h5:
                raise KeyError(f"data.train_file: '{path}' has no dataset '{dataset}'")
            ds = h5[dataset]
            names = ds.dtype.names or ()
            missing = [v for v in variables if v not in names]
            if missing:
                raise KeyError(f"data.variables: '{path}:{dataset}' has no field {missing[0]!r}")
            jagged = ds.ndim == 2
            if jagged and "valid" not in names:
                raise KeyError(f"data.train_file: '{path}:{dataset}' has no 'valid' field")
            fields = [*variables, "valid"] if jagged else list(variables)
            stop = len(ds) if remaining < 0 else min(len(ds), remaining)
            for start in range(0, stop, READ_ROWS):
                end = min(stop, start + READ_ROWS)
                if jagged:
                    rows = ds.fields(fields)[start:end, :max_len]
                    keep = rows["valid"]
                else:
                    rows = ds.fields(fields)[start:end]
                    keep = np.ones(rows.shape, dtype=bool)
                for var in variables:
                    chunks[var].append(rows[var][keep])
            if remaining > 0:
                remaining -= stop
    return {v: np.concatenate(c) if c else np.empty(0) for v, c in chunks.items()}


def calculate_quantiles(
    config: dict[str, Any], num_bins: int, num_jets: int = DEFAULT_NUM_JETS
) -> dict[str, Any]:
    """Quantile edges of every input variable of a merged salt config, ready to write."""
    from salt.data.normalisation import load_norm_dict
    from salt.data.paths import resolve_files

    if num_bins <= 0:
        raise ValueError(f"--bins: expected a positive int, got {num_bins}")
    if num_jets == 0 or num_jets < -1:
        raise ValueError(f"--num_jets: expected a positive int or -1 (all), got {num_jets}")
    data = config.get("data") or {}
    if data.get("train_file") is None:
        raise ValueError("data.train_file: missing from the config(s)")
    files = resolve_files(data["train_file"], "train_file")
    norm_path = data.get("norm_dict")
    norm = load_norm_dict(norm_path) if norm_path is not None else None
    edges: EdgeTable = {}
    raw_edges: EdgeTable = {}
    for name, dataset, variables, max_len in _inputs(data):
        values = read_values(files, dataset, variables, max_len, num_jets)
        edges[name], raw_edges[name] = {}, {}
        for var, vals in values.items():
            vals = vals[np.isfinite(vals)]
            if vals.size == 0:
                raise ValueError(f"data.variables: {dataset}.{var} has no finite values to bin")
            raw = quantile_edges(vals, num_bins)
            raw_edges[name][var] = raw.tolist()
            if norm is not None:
                stats = (norm.get(dataset) or {}).get(var)
                if not isinstance(stats, dict) or "mean" not in stats or "std" not in stats:
                    raise KeyError(f"data.norm_dict: '{norm_path}' has no {dataset}.{var}")
                raw = (raw - float(stats["mean"])) / float(stats["std"])
            edges[name][var] = raw.tolist()
    if norm is None:
        log.warning("no data.norm_dict in the config: bin edges are in the units of the file")
    return {
        "num_bins": num_bins,
        "num_jets": num_jets,
        "train_file": [str(f) for f in files],
        "norm_dict": None if norm_path is None else str(norm_path),
        "normalised": norm is not None,
        "edges": edges,
        "raw_edges": raw_edges,
    }


def write_bin_edges(content: dict[str, Any], path: str | Path, force: bool = False) -> Path:
    """Write the result of :func:`calculate_quantiles` as YAML, or NPZ for a ``.npz`` name."""
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"--out: '{path}' exists (use --force to overwrite it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        arrays: dict[str, np.ndarray] = {
            "num_bins": np.array(content["num_bins"]),
            "normalised": np.array(content["normalised"]),
        }
        for kind in ("edges", "raw_edges"):
            for name, table in content[kind].items():
                for var, values in table.items():
                    arrays[f"{kind}/{name}/{var}"] = np.asarray(values, dtype=np.float64)
        with path.open("wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
    else:
        header = "# PLE bin edges written by `salt calculate_quantiles`\n"
        path.write_text(header + yaml.safe_dump(content, sort_keys=False))
    return path


def load_bin_edges(path: str | Path) -> EdgeTable:
    """The ``edges`` table ``{input: {variable: [edges]}}`` of a quantile file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embeddings.bins_path: file '{path}' does not exist")
    if path.suffix == ".npz":
        with np.load(path) as npz:
            normalised = bool(npz["normalised"]) if "normalised" in npz else True
            table: EdgeTable = {}
            for key in npz.files:
                kind, _, rest = key.partition("/")
                if kind == "edges":
                    name, _, var = rest.partition("/")
                    table.setdefault(name, {})[var] = npz[key].tolist()
    else:
        content = yaml.safe_load(path.read_text()) or {}
        if not isinstance(content, dict) or not isinstance(content.get("edges"), dict):
            raise ValueError(f"embeddings.bins_path: '{path}' has no 'edges' mapping")
        normalised = bool(content.get("normalised", True))
        table = {
            str(k): {str(v): list(e) for v, e in t.items()} for k, t in content["edges"].items()
        }
    if not normalised:
        log.warning("'%s': bin edges are in file units, but the model sees normalised inputs", path)
    return table


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text}")
    return value


def calculate_quantiles_main(argv: list[str] | None = None) -> int:
    """``salt calculate_quantiles --config CONFIG... --bins N [--out PATH] [--num_jets N]``.

    ``--out`` defaults to ``ple_bins_<N>.yaml`` next to the (first) training file; an existing
    output is kept unless ``--force``. Errors are reported by :func:`salt.cli.errors.run_cli`:
    one line and exit code 2 for user errors, the traceback and exit code 1 for bugs.
    """
    from salt.cli.errors import run_cli

    parser = argparse.ArgumentParser(
        prog="salt calculate_quantiles",
        description="Quantile bin edges of every input variable, for ple_bins: quantile.",
    )
    parser.add_argument("--config", action="append", required=True, help="salt config(s)")
    parser.add_argument("--bins", type=_positive_int, required=True, help="bins per variable")
    parser.add_argument("--out", default=None, help="output .yaml or .npz file")
    parser.add_argument(
        "--num_jets",
        type=int,
        default=DEFAULT_NUM_JETS,
        help=f"jets read from the training file (-1 = all; default {DEFAULT_NUM_JETS:,})",
    )
    parser.add_argument(
        "--force",
        "--overwrite",
        dest="force",
        action="store_true",
        help="replace an existing output",
    )
    parser.add_argument("--debug", action="store_true", help="show every traceback")
    args = parser.parse_args(argv)

    def write() -> None:
        from salt.cli.salt_cli import read_data_config

        data = read_data_config(args.config)
        content = calculate_quantiles({"data": data}, args.bins, args.num_jets)
        out = args.out
        if out is None:
            out = Path(content["train_file"][0]).with_name(f"ple_bins_{args.bins}.yaml")
        path = write_bin_edges(content, out, force=args.force)
        n_vars = sum(len(t) for t in content["edges"].values())
        log.info("wrote %d bins for %d variables to %s", args.bins, n_vars, path)
        print(f"{path}  ({n_vars} variables, up to {args.bins} bins each)")

    argv = list(sys.argv[1:] if argv is None else argv)
    return run_cli(write, argv, prog="salt calculate_quantiles")


__all__ = [
    "calculate_quantiles",
    "calculate_quantiles_main",
    "load_bin_edges",
    "quantile_edges",
    "write_bin_edges",
]
