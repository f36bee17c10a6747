"""Flavour-tagging plots: discriminant shapes, rejection versus b-jet efficiency (with ratio to a
reference and binomial uncertainty bands) and efficiency or rejection versus jet pT.

Every plot takes :class:`Scores`, one per tagger (and sample), so the same functions draw a
single run (``salt test``, ``salt evaluate``) and an overlay of several (``salt compare``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from salt.evaluation.metrics import (
    BACKGROUNDS,
    SIGNAL,
    rejection_curve,
    rejection_uncertainty,
)
from salt.evaluation.style import (
    BACKGROUND_LINESTYLES,
    FLAVOUR_COLOURS,
    FLAVOUR_LABELS,
    headroom,
    info_box,
    legend,
    new_figure,
    plain_log_axis,
    save,
    tagger_colour,
)

DEFAULT_SIG_EFFS = np.linspace(0.5, 1.0, 101)


@dataclass
class Scores:
    """One tagger's discriminant on one sample, with the truth (and pT) of the same jets."""

    label: str
    disc: np.ndarray
    truth: np.ndarray
    pt: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.disc = np.asarray(self.disc, dtype=np.float64).ravel()
        self.truth = np.asarray(self.truth).astype(str).ravel()
        if self.truth.size != self.disc.size:
            raise ValueError(
                f"{self.label}: truth has {self.truth.size} jets, expected {self.disc.size} "
                "like the discriminant"
            )


def _reference(scores: Sequence[Scores], reference: str | None) -> int:
    labels = [s.label for s in scores]
    if reference is None:
        return 0
    if reference not in labels:
        raise ValueError(f"reference '{reference}': not among the taggers {labels}")
    return labels.index(reference)


def _edges(values: Sequence[np.ndarray], bins: int) -> np.ndarray:
    finite = [v[np.isfinite(v)] for v in values]
    finite = [v for v in finite if v.size]
    if not finite:
        raise ValueError("discriminant: no finite values to histogram")
    low = min(float(v.min()) for v in finite)
    high = max(float(v.max()) for v in finite)
    if low == high:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


def plot_discriminant(
    scores: Scores,
    path: str | Path,
    bins: int = 50,
    cuts: Mapping[str, float] | None = None,
    info: Sequence[str] = (),
    tag: str | None = None,
) -> Path:
    """Normalised discriminant of one tagger for each flavour present, working points marked.

    Shapes rather than counts are shown (each flavour integrates to one), because the sample
    composition is a choice of the preprocessing and says nothing about separation.
    """
    edges = _edges([scores.disc], bins)
    fig, ax, _ = new_figure()
    for flav in (SIGNAL, *BACKGROUNDS):
        selected = scores.disc[(scores.truth == flav) & np.isfinite(scores.disc)]
        if selected.size == 0:
            continue
        density, _ = np.histogram(selected, bins=edges, density=True)
        ax.stairs(
            density, edges, label=FLAVOUR_LABELS[flav], color=FLAVOUR_COLOURS[flav], linewidth=1.6
        )
    ax.set_yscale("log")
    headroom(ax, log=True)
    for label, cut in (cuts or {}).items():
        ax.axvline(cut, color="grey", linestyle=":", linewidth=1)
        ax.annotate(
            label,
            (cut, 0.72),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=7,
            color="grey",
        )
    ax.set_xlabel(f"$D_b$ ({scores.label})")
    ax.set_ylabel("Normalised number of jets")
    info_box(ax, info, tag)
    legend(ax)
    return save(fig, path)


def plot_discriminant_by_flavour(
    scores: Sequence[Scores],
    flavour: str,
    path: str | Path,
    bins: int = 50,
    info: Sequence[str] = (),
    tag: str | None = None,
) -> Path:
    """The discriminant of several taggers for the jets of one flavour, overlaid."""
    selected = [s.disc[(s.truth == flavour) & np.isfinite(s.disc)] for s in scores]
    edges = _edges(selected, bins)
    fig, ax, _ = new_figure()
    for i, (s, values) in enumerate(zip(scores, selected)):
        if values.size == 0:
            continue
        density, _ = np.histogram(values, bins=edges, density=True)
        ax.stairs(density, edges, label=s.label, color=tagger_colour(i), linewidth=1.6)
    ax.set_yscale("log")
    headroom(ax, log=True)
    ax.set_xlabel("$D_b$")
    ax.set_ylabel(f"Normalised number of {FLAVOUR_LABELS.get(flavour, flavour)}")
    info_box(ax, info, tag)
    legend(ax)
    return save(fig, path)


def _rejection_with_band(s: Scores, flavour: str, effs: np.ndarray) -> tuple[np.ndarray, ...]:
    bkg = s.disc[s.truth == flavour]
    rej = rejection_curve(s.disc[s.truth == SIGNAL], bkg, effs)
    rej = np.where(np.isfinite(rej), rej, np.nan)
    return rej, rejection_uncertainty(rej, bkg.size)


def plot_rejection(
    scores: Sequence[Scores],
    path: str | Path,
    reference: str | None = None,
    info: Sequence[str] = (),
    tag: str | None = None,
    sig_effs: np.ndarray | None = None,
) -> Path:
    """Rejection of each background versus b-jet efficiency, for one or more taggers.

    Colours tell the taggers apart, line styles the backgrounds (solid light, dashed c, dotted
    tau). Shaded bands are the binomial uncertainty of each curve. With several taggers, one
    ratio panel per background shows each tagger's rejection divided by the ``reference``'s
    (default: the first), its band included, which is what one reads off when comparing.
    Points where no background jet passes (unbounded rejection) are left out.
    """
    effs = DEFAULT_SIG_EFFS if sig_effs is None else np.asarray(sig_effs, np.float64)
    if not scores:
        raise ValueError("plot_rejection: expected at least one tagger")
    ref = _reference(scores, reference)
    backgrounds = [f for f in BACKGROUNDS if any((s.truth == f).any() for s in scores)]
    if not backgrounds or not all((s.truth == SIGNAL).any() for s in scores):
        raise ValueError("truth flavours: expected b-jets and at least one of c, u, tau jets")
    n_ratio = len(backgrounds) if len(scores) > 1 else 0
    fig, ax, ratios = new_figure(n_ratio)
    curves: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
    for i, s in enumerate(scores):
        for flav in backgrounds:
            if not (s.truth == flav).any():
                continue
            rej, err = _rejection_with_band(s, flav, effs)
            curves[(i, flav)] = rej, err
            colour = tagger_colour(i)
            style = BACKGROUND_LINESTYLES[flav]
            ax.plot(effs, rej, style, color=colour, linewidth=1.6)
            ax.fill_between(effs, rej - err, rej + err, color=colour, alpha=0.2, linewidth=0)
    # two legends: taggers by colour, backgrounds by line style
    tagger_handles = [
        ax.plot([], [], "-", color=tagger_colour(i), label=s.label)[0] for i, s in enumerate(scores)
    ]
    style_handles = [
        ax.plot(
            [], [], BACKGROUND_LINESTYLES[f], color="k", label=f"{FLAVOUR_LABELS[f]} rejection"
        )[0]
        for f in backgrounds
    ]
    ax.set_yscale("log")
    headroom(ax, log=True)
    first = ax.legend(handles=tagger_handles, frameon=False, loc="upper right", fontsize=9)
    ax.add_artist(first)
    ax.legend(handles=style_handles, frameon=False, loc="center right", fontsize=9)
    ax.set_ylabel("Background rejection")
    ax.set_xlim(effs.min(), effs.max())
    info_box(ax, info, tag)
    for ax_ratio, flav in zip(ratios, backgrounds):
        _ratio_panel(ax_ratio, flav, effs, scores, curves, ref)
    (ratios[-1] if ratios else ax).set_xlabel("$b$-jet efficiency")
    return save(fig, path)


def _ratio_panel(
    ax: Axes,
    flavour: str,
    effs: np.ndarray,
    scores: Sequence[Scores],
    curves: Mapping[tuple[int, str], tuple[np.ndarray, np.ndarray]],
    ref: int,
) -> None:
    if (ref, flavour) not in curves:
        return
    ref_rej = curves[(ref, flavour)][0]
    for i in range(len(scores)):
        if (i, flavour) not in curves:
            continue
        rej, err = curves[(i, flavour)]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio, band = rej / ref_rej, err / ref_rej
        colour = tagger_colour(i)
        ax.plot(effs, ratio, BACKGROUND_LINESTYLES[flavour], color=colour, linewidth=1.4)
        ax.fill_between(effs, ratio - band, ratio + band, color=colour, alpha=0.2, linewidth=0)
    short = {"u": "Light", "c": "$c$", "tau": r"$\tau$"}[flavour]
    ax.set_ylabel(f"{short} ratio", fontsize=9)


def plot_vs_pt(
    results: Mapping[str, Mapping[str, Any]],
    flavour: str,
    quantity: str,
    path: str | Path,
    reference: str | None = None,
    info: Sequence[str] = (),
    tag: str | None = None,
) -> Path:
    """Efficiency (``quantity="efficiency"``) or rejection of one flavour versus jet pT.

    ``results`` maps each tagger's label to the output of
    :func:`salt.evaluation.pt_bins.performance_vs_pt`. Points sit at the bin centres with the bin
    width as horizontal bar and the binomial uncertainty as vertical bar; with several taggers a
    ratio panel divides by the ``reference`` (default: the first).
    """
    if quantity not in ("efficiency", "rejection"):
        raise ValueError(f"quantity '{quantity}': expected 'efficiency' or 'rejection'")
    labels = [label for label, r in results.items() if flavour in r["flavours"]]
    if not labels:
        raise ValueError(f"no tagger has {flavour}-jets in its pT bins")
    ref_label = labels[0] if reference is None or reference not in labels else reference
    fig, ax, ratios = new_figure(1 if len(labels) > 1 else 0)

    def values(label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        entry = results[label]
        data = entry["flavours"][flavour]
        edges = np.asarray(entry["bins"], dtype=np.float64)
        y = np.asarray([np.nan if v is None else v for v in data[quantity]], dtype=np.float64)
        err = np.asarray(
            [np.nan if v is None else v for v in data[f"{quantity}_uncertainty"]],
            dtype=np.float64,
        )
        return edges, y, err

    _, ref_y, _ = values(ref_label)
    for i, label in enumerate(results):
        if label not in labels:
            continue
        edges, y, err = values(label)
        centres = (
            np.sqrt(edges[:-1] * edges[1:]) if edges[0] > 0 else 0.5 * (edges[:-1] + edges[1:])
        )
        xerr = np.stack([centres - edges[:-1], edges[1:] - centres])
        colour = tagger_colour(i)
        ax.errorbar(
            centres, y, yerr=err, xerr=xerr, fmt="o", markersize=3, color=colour, label=label
        )
        if ratios:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios[0].errorbar(
                    centres, y / ref_y, yerr=err / ref_y, xerr=xerr, fmt="o", markersize=3,
                    color=colour,
                )  # fmt: skip
    name = FLAVOUR_LABELS.get(flavour, flavour)
    ax.set_ylabel(f"{name} {quantity}")
    if quantity == "rejection":
        ax.set_yscale("log")
        plain_log_axis(ax.yaxis)
        headroom(ax, log=True)
    else:
        ax.set_ylim(0.0, 1.0)
        headroom(ax, log=False, fraction=0.35)
    edges = np.asarray(results[ref_label]["bins"], dtype=np.float64)
    if edges[0] > 0:
        ax.set_xscale("log")
        for axes in [ax, *ratios]:
            plain_log_axis(axes.xaxis)
    ax.set_xlim(edges[0], edges[-1])
    for axes in [ax, *ratios[:-1]] if ratios else []:
        axes.tick_params(which="both", labelbottom=False)
    info_box(ax, info, tag)
    legend(ax)
    if ratios:
        ratios[0].axhline(1.0, color="grey", linewidth=0.8)
        ratios[0].set_ylabel(f"Ratio to {ref_label}", fontsize=9)
    (ratios[-1] if ratios else ax).set_xlabel("Jet $p_T$ [GeV]")
    return save(fig, path)
