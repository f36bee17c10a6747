"""The look of salt's evaluation plots, close to the FTAG community's (puma) plots.

Inward ticks on all four sides with minor ticks, a frameless legend, an information box in the
top-left corner (an optional bold tag such as "ATLAS Simulation Internal", then the sample, the
number of jets, the fractions, the working point) and ratio panels under the main axes.
Figures are built with the object API on an Agg canvas rather than ``pyplot``, so plotting never
needs a display and never touches global matplotlib state that other code may rely on.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

FLAVOUR_LABELS = {
    "b": "$b$-jets",
    "c": "$c$-jets",
    "u": "light-flavour jets",
    "tau": r"$\tau$-jets",
}
FLAVOUR_COLOURS = {"b": "#1f77b4", "c": "#ff7f0e", "u": "#2ca02c", "tau": "#7c5295"}
TAGGER_COLOURS = (
    "#AA3377",
    "#228833",
    "#4477AA",
    "#CCBB44",
    "#EE6677",
    "#66CCEE",
    "#BBBBBB",
    "#000000",
)
"""A colour-blind-safe cycle (Paul Tol's bright scheme) for taggers overlaid in one plot."""
BACKGROUND_LINESTYLES = {"u": "-", "c": "--", "tau": ":"}

_FONT_SIZE = 10
_DPI = 150


def tagger_colour(index: int) -> str:
    return TAGGER_COLOURS[index % len(TAGGER_COLOURS)]


def style_axes(ax: Axes) -> None:
    """Inward ticks on every side with minor ticks, as in the FTAG plots."""
    ax.tick_params(which="both", direction="in", top=True, right=True, labelsize=_FONT_SIZE)
    ax.tick_params(which="major", length=6)
    ax.tick_params(which="minor", length=3)
    ax.minorticks_on()


def new_figure(
    n_ratio: int = 0, width: float = 6.0, height: float = 4.6
) -> tuple[Figure, Axes, list[Axes]]:
    """A figure with its main axes and ``n_ratio`` ratio panels sharing the x axis below it."""
    height = height + 1.3 * n_ratio
    fig = Figure(figsize=(width, height), layout="constrained")
    grid = fig.add_gridspec(1 + n_ratio, 1, height_ratios=[3.5] + [1.0] * n_ratio, hspace=0.0)
    main = fig.add_subplot(grid[0])
    ratios = [fig.add_subplot(grid[1 + i], sharex=main) for i in range(n_ratio)]
    for ax in [main, *ratios]:
        style_axes(ax)
    if ratios:
        for ax in [main, *ratios[:-1]]:
            ax.tick_params(which="both", labelbottom=False)
    return fig, main, ratios


def plain_log_axis(axis: Axis, show_minor: bool = True) -> None:
    """Label a logarithmic axis with plain numbers (20, 50, 100) instead of powers of ten."""
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axis.set_major_locator(LogLocator(base=10.0))
    axis.set_major_formatter(plain)
    axis.set_minor_locator(LogLocator(base=10.0, subs=(2.0, 5.0)))
    axis.set_minor_formatter(plain if show_minor else NullFormatter())


def info_box(ax: Axes, lines: Sequence[str], tag: str | None = None) -> None:
    """Write the tag (bold italic) and the information lines in the top-left corner."""
    y = 0.95
    if tag:
        ax.text(
            0.04,
            y,
            tag,
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize=_FONT_SIZE + 1,
            fontweight="bold",
            fontstyle="italic",
        )
        y -= 0.075
    if lines:
        ax.text(
            0.04,
            y,
            "\n".join(lines),
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize=_FONT_SIZE - 1,
            linespacing=1.4,
        )


def headroom(ax: Axes, log: bool, fraction: float = 0.45) -> None:
    """Extend the y range so that the top ``fraction`` of the axes is free for the info box."""
    bottom, top = ax.get_ylim()
    if log:
        bottom = max(bottom, 1e-12)
        span = top / bottom
        ax.set_ylim(bottom, bottom * span ** (1.0 / (1.0 - fraction)))
    else:
        ax.set_ylim(bottom, bottom + (top - bottom) / (1.0 - fraction))


def legend(ax: Axes) -> None:
    ax.legend(frameon=False, loc="upper right", fontsize=_FONT_SIZE - 1)


def save(fig: Figure, path: str | Path) -> Path:
    """Write a PNG atomically so an interrupted run never leaves a truncated image behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    # A unique sibling opened with "x" (not mkstemp) so the image gets the usual umask permissions.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("xb") as handle:
            fig.savefig(handle, format="png", dpi=_DPI)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
