"""Standard flavour-tagging plots: discriminant shapes and rejection versus b-jet efficiency.

Figures are built with the object API on an Agg canvas rather than ``pyplot``, so plotting never
needs a display and never touches global matplotlib state that other code may rely on.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from salt.evaluation.metrics import BACKGROUNDS, SIGNAL, rejection_curve

FLAVOUR_LABELS = {
    "b": "$b$-jets",
    "c": "$c$-jets",
    "u": "light-flavour jets",
    "tau": r"$\tau$-jets",
}
FLAVOUR_COLOURS = {"b": "tab:blue", "c": "tab:orange", "u": "tab:green", "tau": "tab:purple"}


def _save(fig: Figure, path: str | Path) -> Path:
    """Write a PNG atomically so an interrupted run never leaves a truncated image behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    # A unique sibling opened with "x" (not mkstemp) so the image gets the usual umask permissions.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("xb") as handle:
            fig.savefig(handle, format="png", dpi=120)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _truth(truth_flavours: np.ndarray, n: int) -> np.ndarray:
    truth = np.asarray(truth_flavours).astype(str).ravel()
    if truth.size != n:
        raise ValueError(
            f"truth_flavours: has {truth.size} jets, expected {n} like the discriminant"
        )
    return truth


def plot_discriminant(
    disc: np.ndarray,
    truth_flavours: np.ndarray,
    path: str | Path,
    tagger: str,
    bins: int = 50,
    cuts: Mapping[str, float] | None = None,
    log_y: bool = True,
) -> Path:
    """Normalised histogram of the b-tagging discriminant for each flavour present.

    Shapes rather than counts are shown (each flavour integrates to one), because the sample
    composition is a choice of the preprocessing and says nothing about separation.

    Args:
        disc: Discriminant per jet.
        truth_flavours: Short flavour name per jet; flavours other than b, c, u, tau are skipped.
        path: Output PNG.
        tagger: Name shown in the axis label.
        bins: Number of common bins spanning the finite discriminant range.
        cuts: Optional working-point cuts, drawn as labelled vertical lines (label -> cut).
        log_y: Logarithmic density axis, which shows the tails that set the rejection.

    Returns:
        The written path.
    """
    values = np.asarray(disc, dtype=np.float64).ravel()
    truth = _truth(truth_flavours, values.size)
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError(f"{tagger} discriminant: no finite values to histogram")
    edges = np.linspace(values[finite].min(), values[finite].max(), bins + 1)
    if edges[0] == edges[-1]:
        edges = np.linspace(edges[0] - 0.5, edges[0] + 0.5, bins + 1)

    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    for flav in (SIGNAL, *BACKGROUNDS):
        selected = values[(truth == flav) & finite]
        if selected.size == 0:
            continue
        density, _ = np.histogram(selected, bins=edges, density=True)
        ax.stairs(
            density, edges, label=FLAVOUR_LABELS[flav], color=FLAVOUR_COLOURS[flav], linewidth=1.5
        )
    for label, cut in (cuts or {}).items():
        ax.axvline(cut, color="grey", linestyle=":", linewidth=1)
        ax.annotate(
            label,
            (cut, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=7,
            color="grey",
        )
    if log_y:
        ax.set_yscale("log")
    # Headroom above the peaks for the legend and the working-point labels.
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top * 30 if log_y else top * 1.35)
    ax.set_xlabel(f"$D_b$ ({tagger})")
    ax.set_ylabel("Normalised number of jets")
    ax.legend(frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def plot_rejection(
    disc: np.ndarray,
    truth_flavours: np.ndarray,
    path: str | Path,
    tagger: str,
    baselines: Mapping[str, np.ndarray] | None = None,
    sig_effs: np.ndarray | None = None,
    ratio: bool = True,
) -> Path:
    """Background rejection versus b-jet efficiency, one column per background flavour present.

    Baselines are drawn dashed on the same axes; with ``ratio`` an extra panel shows each
    baseline's rejection divided by the tagger's, which is what one reads off when comparing.
    Points with unbounded rejection (no background jet passes) are left out.

    Args:
        disc: Tagger discriminant per jet.
        truth_flavours: Short flavour name per jet; needs b-jets and at least one background.
        path: Output PNG.
        tagger: Name of the tagger in the legend.
        baselines: Other discriminants per jet, keyed by the name shown in the legend.
        sig_effs: b-jet efficiencies to scan; defaults to 0.5 to 1.0.
        ratio: Draw the ratio panel when there are baselines.

    Returns:
        The written path.
    """
    values = np.asarray(disc, dtype=np.float64).ravel()
    truth = _truth(truth_flavours, values.size)
    effs = np.linspace(0.5, 1.0, 101) if sig_effs is None else np.asarray(sig_effs, np.float64)
    backgrounds = [f for f in BACKGROUNDS if (truth == f).any()]
    if not (truth == SIGNAL).any() or not backgrounds:
        raise ValueError("truth_flavours: expected b-jets and at least one of c, u, tau jets")
    curves = {
        tagger: values,
        **{k: np.asarray(v, np.float64) for k, v in (baselines or {}).items()},
    }
    with_ratio = ratio and len(curves) > 1

    fig = Figure(figsize=(5.0 * len(backgrounds), 6.0 if with_ratio else 4.5))
    grid = fig.add_gridspec(
        2 if with_ratio else 1, len(backgrounds), height_ratios=[3, 1] if with_ratio else [1]
    )
    sig_mask = truth == SIGNAL
    for col, flav in enumerate(backgrounds):
        ax = fig.add_subplot(grid[0, col])
        ax_ratio = fig.add_subplot(grid[1, col], sharex=ax) if with_ratio else None
        reference = None
        for i, (name, d) in enumerate(curves.items()):
            rej = rejection_curve(d[sig_mask], d[truth == flav], effs)
            rej = np.where(np.isfinite(rej), rej, np.nan)
            style = "-" if i == 0 else "--"
            ax.plot(effs, rej, style, label=name)
            if i == 0:
                reference = rej
            elif ax_ratio is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ax_ratio.plot(effs, rej / reference, style, color=f"C{i}")
        ax.set_yscale("log")
        ax.set_ylabel(f"{FLAVOUR_LABELS[flav]} rejection")
        ax.set_xlim(effs.min(), effs.max())
        ax.legend(frameon=False)
        bottom = ax
        if ax_ratio is not None:
            ax_ratio.axhline(1.0, color="C0", linewidth=1)
            ax_ratio.set_ylabel(f"Ratio to {tagger}")
            ax.tick_params(labelbottom=False)
            bottom = ax_ratio
        bottom.set_xlabel("$b$-jet efficiency")
    fig.tight_layout()
    return _save(fig, path)
