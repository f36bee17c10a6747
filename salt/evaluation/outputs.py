"""Writing evaluation outputs: atomic files, the refusal to overwrite, information-box lines and
the set of pT plots shared by ``salt evaluate`` and ``salt compare``."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from salt.evaluation.metrics import BACKGROUNDS, SIGNAL
from salt.evaluation.plots import plot_vs_pt


def write_text(text: str, path: Path) -> None:
    """Write through a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("x") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(data: Mapping[str, Any], path: Path) -> None:
    """JSON without NaN or infinity (unbounded values are ``null``), written atomically."""
    write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", path)


def refuse_overwrite(paths: Iterable[Path], overwrite: bool) -> None:
    """Stop before any work when an output exists and replacing it was not asked for."""
    if overwrite:
        return
    for path in paths:
        if path.exists():
            raise FileExistsError(f"{path}: already exists, pass --overwrite to replace it")


def info_lines(
    sample: str,
    n_jets: int,
    fc: float,
    ftau: float = 0.0,
    working_point: float | None = None,
) -> list[str]:
    """What the information box says: sample and jets, fractions, and the working point."""
    lines = [
        f"{sample}, {n_jets:,} jets",
        f"$f_c$ = {fc:g}" + (f", $f_\\tau$ = {ftau:g}" if ftau else ""),
    ]
    if working_point is not None:
        lines.append(f"{working_point:.0%} $b$-jet efficiency WP (inclusive cut)")
    return lines


def pt_plot_names(prefix: str, flavours: Sequence[str]) -> dict[tuple[str, str], str]:
    """File names of the pT plots: b-jet efficiency and the rejection of each background."""
    names = {}
    for flav in flavours:
        quantity = "efficiency" if flav == SIGNAL else "rejection"
        names[(flav, quantity)] = f"{prefix}pt_{flav}_{quantity}.png"
    return names


def pt_flavours(truth_flavours: Iterable[str]) -> list[str]:
    present = set(truth_flavours)
    return [f for f in (SIGNAL, *BACKGROUNDS) if f in present]


def write_pt_plots(
    results: Mapping[str, Mapping[str, Any]],
    out_dir: Path,
    names: Mapping[tuple[str, str], str],
    reference: str | None,
    info: Sequence[str],
    tag: str | None,
) -> list[Path]:
    """One plot per (flavour, quantity) in ``names``, every tagger of ``results`` overlaid."""
    return [
        plot_vs_pt(results, flav, quantity, out_dir / name, reference, info, tag)
        for (flav, quantity), name in names.items()
    ]
