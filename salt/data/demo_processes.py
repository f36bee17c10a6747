"""Split demo files into process-like samples with per-jet weights, to try sample mixing.

Real trainings mix samples written one physics process at a time, e.g. top-pair (``ttbar``)
jets, mostly at low pT, and jets from a heavy Z' (``zprime``) that populate high pT. The demo
generator draws a single falling pT spectrum; cutting it at ``PT_CUT`` gives two files that
behave like those samples (each file one "process", very different pT ranges), so
``configs/toolbox/sample_mixing.yaml`` runs on demo data.

Each written file carries a ``weight`` field on its jets: the inverse of the jet-pT density of
its own sample (in bins of log pT), normalised to a mean of 1, so that the weighted sample is
flat in pT, a common choice of training weight.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

PROCESSES = ("ttbar", "zprime")
PT_CUT = 100_000.0  # MeV: ttbar-like below, zprime-like above
WEIGHT_FIELD = "weight"
PT_BINS = 20


def flat_pt_weights(pt: np.ndarray, bins: int = PT_BINS) -> np.ndarray:
    """Per-jet weights ``1 / density(log pT)``, mean 1: the weighted sample is flat in pT."""
    if pt.size == 0:
        return np.zeros(0, dtype=np.float32)
    log_pt = np.log(pt.astype(np.float64))
    counts, edges = np.histogram(log_pt, bins=bins)
    index = np.clip(np.searchsorted(edges, log_pt, side="right") - 1, 0, bins - 1)
    weights = 1.0 / counts[index]
    return (weights / weights.mean()).astype(np.float32)


def _with_weight(dtype: np.dtype) -> np.dtype:
    return np.dtype([*dtype.descr, (WEIGHT_FIELD, "<f4")])


def _write_selection(
    src: h5py.File, out: Path, keep: np.ndarray, weights: np.ndarray, block_size: int
) -> None:
    """Copy the rows ``keep`` of every dataset, block by block, adding the weight to the jets."""
    partial = out.with_name(f".{out.name}.partial")
    n = int(keep.sum())
    try:
        with h5py.File(partial, "w") as dst:
            for name, ds in src.items():
                dtype = _with_weight(ds.dtype) if name == "jets" else ds.dtype
                chunks = (max(1, min(n, 1000)), *ds.shape[1:]) if n else None
                target = dst.create_dataset(
                    name, shape=(n, *ds.shape[1:]), dtype=dtype, chunks=chunks
                )
                for key, value in ds.attrs.items():
                    target.attrs[key] = value
                pos = 0
                for start in range(0, len(keep), block_size):
                    rows = ds[start : start + block_size][keep[start : start + block_size]]
                    if name == "jets":
                        extended = np.zeros(len(rows), dtype=dtype)
                        for field in ds.dtype.names or ():
                            extended[field] = rows[field]
                        extended[WEIGHT_FIELD] = weights[pos : pos + len(rows)]
                        rows = extended
                    target[pos : pos + len(rows)] = rows
                    pos += len(rows)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


def write_process_files(
    out_dir: str | Path,
    splits: tuple[str, ...] = ("train", "val"),
    block_size: int = 100_000,
    overwrite: bool = False,
) -> dict[str, dict[str, Path]]:
    """Write ``<split>_ttbar.h5`` and ``<split>_zprime.h5`` from the demo ``<split>.h5`` files.

    Returns:
        ``{split: {process: path}}``.

    Raises:
        FileNotFoundError: a demo split file is missing (run ``salt demo-data`` first).
        FileExistsError: an output exists and ``overwrite`` is False.
    """
    out_dir = Path(out_dir)
    written: dict[str, dict[str, Path]] = {}
    for split in splits:
        source = out_dir / f"{split}.h5"
        if not source.is_file():
            raise FileNotFoundError(f"demo data: '{source}' does not exist (run salt demo-data)")
        outputs = {p: out_dir / f"{split}_{p}.h5" for p in PROCESSES}
        for path in outputs.values():
            if path.exists() and not overwrite:
                raise FileExistsError(f"{path} already exists: pass --overwrite to replace it")
        with h5py.File(source, "r") as src:
            pt = src["jets"].fields(["pt"])[:]["pt"]
            below = pt < PT_CUT
            for process, keep in zip(PROCESSES, (below, ~below)):
                weights = flat_pt_weights(pt[keep])
                _write_selection(src, outputs[process], keep, weights, block_size)
        written[split] = outputs
    return written
