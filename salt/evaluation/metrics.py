"""Flavour-tagging performance numbers: the b-tagging discriminant, cuts, rejections and AUCs.

Conventions used throughout: a jet is *tagged* when its discriminant is strictly greater than
the cut, flavours are the short names ``b``, ``c``, ``u`` and ``tau``, and the signal is always
b-jets. Everything here is plain numpy so that it runs on millions of jets without Python loops.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

FLAVOUR_OF_HADRON_LABEL: dict[int, str] = {5: "b", 4: "c", 0: "u", 15: "tau"}
"""Short flavour name of each ``HadronConeExclTruthLabelID`` value used by the FTAG samples."""

SIGNAL = "b"
BACKGROUNDS = ("c", "u", "tau")
"""Background flavours that get a rejection and an AUC, in the order they are reported."""

DEFAULT_WORKING_POINTS = (0.60, 0.70, 0.77, 0.85)

_LIGHT_ALIASES = {"l", "light", "u"}


def flavour_short_name(class_name: str) -> str:
    """Map a class name from the config (``bjets``, ``ljets``, ``taujets``) to its short name.

    Output fields of the model are named ``<tagger>_p<short name>``, so this is the bridge between
    the class list a user writes and the columns in the predictions file. Names that are not
    standard jet flavours (for example ``hbb``) are returned lower-cased without a ``jets`` suffix.
    """
    name = class_name.strip().lower()
    if name.endswith("jets"):
        name = name[: -len("jets")]
    if not name:
        raise ValueError(f"class name {class_name!r}: expected a flavour such as 'bjets' or 'b'")
    return "u" if name in _LIGHT_ALIASES else name


def b_discriminant(
    probs: Mapping[str, np.ndarray],
    fc: float = 0.2,
    ftau: float = 0.0,
    eps: float = 1e-8,
) -> np.ndarray:
    """Log-likelihood-ratio b-tagging discriminant.

    ``D_b = log(p_b / (fc * p_c + ftau * p_tau + (1 - fc - ftau) * p_u))``. The fractions set how
    much each background is weighed when ranking jets; ``eps`` keeps the ratio finite when a
    network outputs exact zeros. A fraction for a class the model lacks would silently be dropped,
    so it is an error instead (``fc`` needs ``probs["c"]``, ``ftau`` needs ``probs["tau"]``).

    Args:
        probs: Per-flavour probabilities keyed by short name; ``b`` and ``u`` are required.
        fc: Weight of the c-jet probability in the denominator.
        ftau: Weight of the tau-jet probability; only allowed when ``probs`` has ``tau``.
        eps: Added to numerator and denominator.

    Returns:
        The discriminant as float64, one value per jet.
    """
    for flav in ("b", "u"):
        if flav not in probs:
            raise ValueError(
                f"probs: missing '{flav}' probabilities, expected keys b, u [, c, tau]"
            )
    if fc < 0 or ftau < 0 or fc + ftau > 1:
        raise ValueError(f"fc={fc}, ftau={ftau}: expected non-negative fractions with fc+ftau <= 1")
    if fc > 0 and "c" not in probs:
        raise ValueError(f"fc={fc}: the model has no c-jet probability, expected fc=0")
    if ftau > 0 and "tau" not in probs:
        raise ValueError(f"ftau={ftau}: the model has no tau-jet probability, expected ftau=0")
    p_b = np.asarray(probs["b"], dtype=np.float64)
    denom = (1.0 - fc - ftau) * np.asarray(probs["u"], dtype=np.float64)
    if "c" in probs and fc > 0:
        denom = denom + fc * np.asarray(probs["c"], dtype=np.float64)
    if "tau" in probs and ftau > 0:
        denom = denom + ftau * np.asarray(probs["tau"], dtype=np.float64)
    if denom.shape != p_b.shape:
        raise ValueError(f"probs: arrays have different shapes {p_b.shape} and {denom.shape}")
    return np.log((p_b + eps) / (denom + eps))


def _check_effs(effs: np.ndarray) -> None:
    if effs.size and (not np.all(np.isfinite(effs)) or effs.min() <= 0 or effs.max() > 1):
        raise ValueError(f"signal efficiencies {effs.tolist()}: expected values in (0, 1]")


def _check_disc(disc: np.ndarray, what: str) -> np.ndarray:
    disc = np.asarray(disc, dtype=np.float64).ravel()
    if disc.size == 0:
        raise ValueError(f"{what}: no jets, expected at least one")
    if np.isnan(disc).any():
        raise ValueError(f"{what}: contains NaN, expected finite discriminant values")
    return disc


def _cuts(disc_signal: np.ndarray, effs: np.ndarray) -> np.ndarray:
    """Cuts at which a fraction ``effs`` of the signal lies strictly above (interpolated)."""
    return np.quantile(disc_signal, 1.0 - effs)


def _rejections(sorted_bkg: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Inverse background efficiency for each cut; ``inf`` where no background jet passes."""
    n_pass = sorted_bkg.size - np.searchsorted(sorted_bkg, cuts, side="right")
    with np.errstate(divide="ignore"):
        return np.where(n_pass > 0, sorted_bkg.size / np.maximum(n_pass, 1), np.inf)


def efficiency_cut(disc_signal: np.ndarray, eff: float) -> float:
    """Discriminant cut that tags a fraction ``eff`` of the signal (tagged means ``disc > cut``).

    The cut is the ``1 - eff`` quantile with linear interpolation, so on a continuous discriminant
    the efficiency is ``eff`` up to one jet; ties at the cut can only lower it.
    """
    disc = _check_disc(disc_signal, "signal discriminant")
    _check_effs(np.asarray([eff], dtype=np.float64))
    return float(_cuts(disc, np.asarray(eff, dtype=np.float64)))


def rejection(disc_bkg: np.ndarray, cut: float) -> float:
    """Background rejection ``1 / eff_bkg`` for jets with ``disc > cut``.

    Returns ``inf`` when no background jet passes: the true rejection is then only known to be
    larger than the number of background jets, which callers should report as such.
    """
    disc = np.sort(_check_disc(disc_bkg, "background discriminant"))
    return float(_rejections(disc, np.asarray([cut], dtype=np.float64))[0])


def rejection_curve(disc_sig: np.ndarray, disc_bkg: np.ndarray, sig_effs: np.ndarray) -> np.ndarray:
    """Background rejection at each signal efficiency in ``sig_effs`` (``inf`` if none pass)."""
    sig = _check_disc(disc_sig, "signal discriminant")
    bkg = np.sort(_check_disc(disc_bkg, "background discriminant"))
    effs = np.asarray(sig_effs, dtype=np.float64).ravel()
    _check_effs(effs)
    return _rejections(bkg, _cuts(sig, effs))


def roc_auc(disc_sig: np.ndarray, disc_bkg: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a signal jet outranks a background jet.

    This is the Mann-Whitney statistic; a tie between a signal and a background jet counts one
    half, so identical distributions give 0.5. It costs one sort of the background.
    """
    sig = _check_disc(disc_sig, "signal discriminant")
    bkg = np.sort(_check_disc(disc_bkg, "background discriminant"))
    below = np.searchsorted(bkg, sig, side="left").astype(np.float64)
    below_or_equal = np.searchsorted(bkg, sig, side="right").astype(np.float64)
    wins = 0.5 * float(np.sum(below + below_or_equal))
    return wins / (sig.size * bkg.size)


def rejection_uncertainty(rej: np.ndarray | float, n_bkg: int) -> np.ndarray:
    """Binomial standard deviation of a rejection measured on ``n_bkg`` background jets.

    The background efficiency ``e = 1 / rej`` is a binomial fraction with variance
    ``e (1 - e) / n``; propagated through ``rej = 1 / e`` that is ``rej * sqrt((rej - 1) / n)``.
    It is what lets a reader tell a real improvement from the statistics of a small test sample.
    Unbounded rejections (no background jet passes) get an unbounded uncertainty.
    """
    if n_bkg < 1:
        raise ValueError(f"n_bkg={n_bkg}: expected at least one background jet")
    rej = np.asarray(rej, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return rej * np.sqrt(np.maximum(rej - 1.0, 0.0) / n_bkg)


def efficiency_uncertainty(eff: np.ndarray | float, n: np.ndarray | int) -> np.ndarray:
    """Binomial standard deviation ``sqrt(e (1 - e) / n)`` of an efficiency; NaN where ``n = 0``."""
    eff = np.asarray(eff, dtype=np.float64)
    n_arr = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_arr > 0, np.sqrt(eff * (1.0 - eff) / np.maximum(n_arr, 1.0)), np.nan)


def _json_float(value: float) -> float | None:
    """JSON has no infinity: an unbounded rejection (no background jet passes) becomes null."""
    return float(value) if math.isfinite(value) else None


def wp_key(eff: float) -> str:
    """Key of a working point in the metrics dict, e.g. ``0.7 -> "0.70"``."""
    return f"{eff:.2f}"


def _performance(
    disc: np.ndarray,
    masks: Mapping[str, np.ndarray],
    backgrounds: Sequence[str],
    effs: np.ndarray,
) -> dict[str, Any]:
    """Working-point cuts, rejections and AUCs of one discriminant."""
    sig = _check_disc(disc[masks[SIGNAL]], "b-jet discriminant")
    cuts = _cuts(sig, effs)
    wps: dict[str, dict[str, float | None]] = {
        wp_key(e): {"cut": float(c)} for e, c in zip(effs, cuts)
    }
    auc: dict[str, float] = {}
    for flav in backgrounds:
        bkg = np.sort(_check_disc(disc[masks[flav]], f"{flav}-jet discriminant"))
        rejections = _rejections(bkg, cuts)
        errors = rejection_uncertainty(rejections, bkg.size)
        for e, rej, err in zip(effs, rejections, errors):
            wps[wp_key(e)][f"{flav}_rejection"] = _json_float(rej)
            wps[wp_key(e)][f"{flav}_rejection_uncertainty"] = _json_float(err)
        auc[f"b_vs_{flav}"] = roc_auc(sig, bkg)
    return {"working_points": wps, "auc": auc}


def compute_metrics(
    truth_flavours: np.ndarray,
    probs: Mapping[str, np.ndarray],
    fc: float = 0.2,
    working_points: Sequence[float] = DEFAULT_WORKING_POINTS,
    baselines: Mapping[str, np.ndarray] | None = None,
    *,
    ftau: float = 0.0,
) -> dict[str, Any]:
    """Summarise a tagger's b-tagging performance as a JSON-ready dict.

    Rejections are reported for each background flavour that has jets in the truth (c, u, tau);
    a rejection of ``None`` means no background jet passed the cut. Baselines are given as
    ready-made discriminants and get their own cuts at the same b-jet efficiencies.

    Args:
        truth_flavours: Short flavour name per jet (``"b"``, ``"c"``, ``"u"``, ``"tau"``; other
            names are counted but not used). Integer labels must be mapped to names first.
        probs: Tagger probabilities keyed by short flavour name.
        fc: c-jet fraction of the discriminant.
        working_points: b-jet efficiencies at which to cut.
        baselines: Other discriminants to compare with, aligned with ``truth_flavours``.
        ftau: tau-jet fraction of the discriminant.

    Returns:
        ``n_jets``, ``n_per_flavour``, ``fc``, ``ftau``, ``working_points``, ``auc`` and
        ``baselines``, made only of plain Python numbers, strings, dicts and ``None``.
    """
    truth = np.asarray(truth_flavours).ravel()
    if truth.dtype.kind not in "UO":
        raise ValueError(
            f"truth_flavours: got dtype {truth.dtype}, expected short flavour names such as 'b'"
        )
    truth = truth.astype(str)
    for name, arr in {**probs, **(baselines or {})}.items():
        if np.shape(arr) != truth.shape:
            raise ValueError(
                f"{name!r}: has shape {np.shape(arr)}, expected one value per jet {truth.shape}"
            )
    effs = np.asarray(working_points, dtype=np.float64).ravel()
    if effs.size == 0:
        raise ValueError("working_points: empty, expected at least one b-jet efficiency")
    _check_effs(effs)

    names, counts = np.unique(truth, return_counts=True)
    per_flavour = dict(zip(names.tolist(), counts.tolist()))
    missing = [f for f in (SIGNAL, "u") if per_flavour.get(f, 0) == 0]
    if missing:
        raise ValueError(
            f"truth flavours: no {', '.join(missing)} jets among {sorted(per_flavour)}, "
            "expected both b and u jets"
        )
    order = [*(f for f in (SIGNAL, *BACKGROUNDS) if f in per_flavour), *sorted(per_flavour)]
    n_per_flavour = {f: int(per_flavour[f]) for f in dict.fromkeys(order)}
    backgrounds = [f for f in BACKGROUNDS if f in per_flavour]
    masks = {f: truth == f for f in (SIGNAL, *backgrounds)}

    disc = b_discriminant(probs, fc=fc, ftau=ftau)
    result: dict[str, Any] = {
        "n_jets": int(truth.size),
        "n_per_flavour": n_per_flavour,
        "fc": float(fc),
        "ftau": float(ftau),
        **_performance(disc, masks, backgrounds, effs),
    }
    result["baselines"] = {
        name: _performance(np.asarray(values, dtype=np.float64), masks, backgrounds, effs)
        for name, values in (baselines or {}).items()
    }
    return result
