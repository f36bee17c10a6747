"""Tagging efficiency and rejection versus jet pT at one working point.

The cut is the inclusive working-point cut (what an analysis applies), so the b-jet efficiency
varies with pT and shows where the tagger is weak; every bin gets binomial uncertainties.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from salt.evaluation.metrics import (
    BACKGROUNDS,
    SIGNAL,
    efficiency_cut,
    efficiency_uncertainty,
)

DEFAULT_PT_BINS = (20.0, 30.0, 40.0, 60.0, 85.0, 110.0, 140.0, 175.0, 250.0, 400.0, 1000.0)
"""Bin edges in GeV: the usual flavour-tagging calibration binning up to 1 TeV."""


def _json_list(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]


def performance_vs_pt(
    disc: np.ndarray,
    truth: np.ndarray,
    pt: np.ndarray,
    working_point: float,
    bins: Sequence[float] = DEFAULT_PT_BINS,
) -> dict[str, Any]:
    """Efficiency of every flavour and rejection of every background per pT bin.

    Args:
        disc: Discriminant per jet.
        truth: Short truth flavour per jet.
        pt: Jet pT in GeV; jets outside the bins are left out.
        working_point: Inclusive b-jet efficiency that fixes the cut.
        bins: Increasing pT bin edges in GeV.

    Returns:
        A JSON-ready dict: ``working_point``, ``cut``, ``bins`` and, per flavour present,
        ``{flavour: {"n_jets", "efficiency", "efficiency_uncertainty"}}`` lists (one value per
        bin, ``None`` where the bin is empty); backgrounds also get ``rejection`` and
        ``rejection_uncertainty`` (``None`` where no jet passes).
    """
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"pt bins {list(bins)}: expected at least two increasing edges")
    disc = np.asarray(disc, dtype=np.float64).ravel()
    truth = np.asarray(truth).astype(str).ravel()
    pt = np.asarray(pt, dtype=np.float64).ravel()
    if not disc.size == truth.size == pt.size:
        raise ValueError(
            f"pt: {pt.size} jets, discriminant: {disc.size}, truth: {truth.size}, expected equal"
        )
    cut = efficiency_cut(disc[truth == SIGNAL], working_point)
    index = np.digitize(pt, edges) - 1
    inside = (index >= 0) & (index < edges.size - 1)
    tagged = disc > cut
    result: dict[str, Any] = {
        "working_point": float(working_point),
        "cut": float(cut),
        "bins": edges.tolist(),
        "flavours": {},
    }
    for flav in (SIGNAL, *BACKGROUNDS):
        selected = inside & (truth == flav)
        if not selected.any():
            continue
        n = np.bincount(index[selected], minlength=edges.size - 1).astype(np.float64)
        n_tagged = np.bincount(index[selected & tagged], minlength=edges.size - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            eff = np.where(n > 0, n_tagged / np.maximum(n, 1.0), np.nan)
        eff_err = efficiency_uncertainty(eff, n)
        entry: dict[str, Any] = {
            "n_jets": n.astype(int).tolist(),
            "efficiency": _json_list(eff),
            "efficiency_uncertainty": _json_list(eff_err),
        }
        if flav != SIGNAL:
            with np.errstate(invalid="ignore", divide="ignore"):
                rej = np.where(n_tagged > 0, 1.0 / np.where(eff > 0, eff, np.nan), np.inf)
                rej = np.where(n > 0, rej, np.nan)
                rej_err = eff_err / np.where(eff > 0, eff, np.nan) ** 2
            entry["rejection"] = _json_list(rej)
            entry["rejection_uncertainty"] = _json_list(rej_err)
        result["flavours"][flav] = entry
    return result
