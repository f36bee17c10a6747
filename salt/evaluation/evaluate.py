"""Evaluate a ``salt test`` predictions file: metrics.json plus the standard b-tagging plots.

``salt test`` calls :func:`evaluate_predictions` after writing the predictions; ``salt evaluate
PRED.h5`` calls it again later, without the network, e.g. with another ``--fc``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from salt.evaluation.metrics import (
    BACKGROUNDS,
    DEFAULT_WORKING_POINTS,
    SIGNAL,
    b_discriminant,
    compute_metrics,
    flavour_short_name,
)
from salt.evaluation.outputs import (
    info_lines,
    pt_flavours,
    pt_plot_names,
    refuse_overwrite,
    write_json,
    write_pt_plots,
)
from salt.evaluation.plots import Scores, plot_discriminant, plot_rejection
from salt.evaluation.predictions import (
    HADRON_LABEL_FIELD,
    JETS,
    OTHER,
    read_predictions,
    truth_flavours_from_labels,
)
from salt.evaluation.pt_bins import DEFAULT_PT_BINS, performance_vs_pt

log = logging.getLogger(__name__)

__all__ = [
    "HADRON_LABEL_FIELD",
    "JETS",
    "OTHER",
    "baseline_ip_discriminant",
    "evaluate_predictions",
    "summary_table",
    "truth_flavours_from_labels",
]

_BLOCK_ENTRIES = 1 << 22
"""Track entries read per block by the IP baseline: a few tens of MB whatever the padding."""


def _top_n_sum(values: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
    """Per-row sum of the ``n`` largest valid entries; missing entries count as zero."""
    usable = valid.astype(bool) & np.isfinite(values)
    scores = np.where(usable, values.astype(np.float64), -np.inf)
    k = min(n, scores.shape[1])
    if k == 0:
        return np.zeros(scores.shape[0], dtype=np.float64)
    top = np.partition(scores, scores.shape[1] - k, axis=1)[:, -k:]
    return np.where(np.isfinite(top), top, 0.0).sum(axis=1)


def baseline_ip_discriminant(
    test_file: str | Path,
    n: int = 3,
    tracks: str = "tracks",
    field: str = "IP3D_signed_d0_significance",
    num_jets: int = -1,
) -> np.ndarray:
    """A simple physics baseline: the sum of the ``n`` largest signed d0 significances per jet.

    b-hadrons fly, so their decay tracks have large positive impact-parameter significance; a
    trained tagger that cannot beat this sum has learnt little. Jets with fewer than ``n`` valid
    tracks (and valid tracks with a non-finite significance) count the missing ones as zero.
    Only the two needed fields are read, in large contiguous blocks of jets.

    Args:
        test_file: HDF5 file with a ``tracks`` dataset of shape (N, L) and a bool ``valid`` field.
        n: Number of leading tracks to sum.
        tracks: Name of the track dataset.
        field: Name of the signed d0 significance field.
        num_jets: Number of leading jets to use (-1 = all), to align with a capped predictions file.

    Returns:
        The baseline discriminant as float64, one value per jet.
    """
    path = Path(test_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: test file not found")
    if n < 1:
        raise ValueError(f"n={n}: expected at least one track to sum")
    with h5py.File(path, "r") as h5:
        if tracks not in h5 or not isinstance(h5[tracks], h5py.Dataset):
            raise ValueError(f"{path}: no dataset '{tracks}', expected per-jet tracks")
        ds = h5[tracks]
        if ds.ndim != 2:
            raise ValueError(f"{path}: '{tracks}' has shape {ds.shape}, expected (jets, tracks)")
        names = ds.dtype.names or ()
        for required in (field, "valid"):
            if required not in names:
                raise ValueError(f"{path}: '{tracks}' has no field '{required}'")
        total, n_tracks = ds.shape
        if num_jets < 0:
            num_jets = total
        elif num_jets > total:
            raise ValueError(f"{path}: '{tracks}' has {total} jets, expected at least {num_jets}")
        out = np.empty(num_jets, dtype=np.float64)
        block = max(1, _BLOCK_ENTRIES // max(n_tracks, 1))
        view = ds.fields([field, "valid"])
        for start in range(0, num_jets, block):
            stop = min(start + block, num_jets)
            chunk = view[start:stop]
            out[start:stop] = _top_n_sum(chunk[field], chunk["valid"], n)
    return out


def _format_rejection(value: float | None, uncertainty: float | None = None) -> str:
    if value is None:
        return "inf"
    return f"{value:.1f}" if uncertainty is None else f"{value:.1f} ± {uncertainty:.1f}"


def summary_table(metrics: dict[str, Any]) -> str:
    """A short text table of cuts and rejections per working point, for logs and terminals."""
    backgrounds = [f for f in BACKGROUNDS if f"b_vs_{f}" in metrics["auc"]]
    header = ["WP", "cut", *(f"{f} rej" for f in backgrounds)]
    rows = [
        [
            key,
            f"{wp['cut']:.3f}",
            *(
                _format_rejection(wp[f"{f}_rejection"], wp.get(f"{f}_rejection_uncertainty"))
                for f in backgrounds
            ),
        ]
        for key, wp in metrics["working_points"].items()
    ]
    rows.append(["AUC", "", *(f"{metrics['auc'][f'b_vs_{f}']:.4f}" for f in backgrounds)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *rows])


def _ip_baseline(test_file: str | Path, n_jets: int) -> dict[str, np.ndarray]:
    test_path = Path(test_file)
    if not test_path.is_file():
        raise FileNotFoundError(f"{test_path}: test file not found")
    if not _track_field_exists(test_path, "tracks", "IP3D_signed_d0_significance"):
        log.warning(
            "%s: no tracks/IP3D_signed_d0_significance, skipping the IP baseline", test_path
        )
        return {}
    n_top = 3
    return {
        f"IP d0 sig. top-{n_top} sum": baseline_ip_discriminant(test_path, n=n_top, num_jets=n_jets)
    }


def _track_field_exists(path: Path, tracks: str, field: str) -> bool:
    with h5py.File(path, "r") as h5:
        ds = h5.get(tracks)
        return isinstance(ds, h5py.Dataset) and field in (ds.dtype.names or ())


def output_paths(out_dir: Path, tagger: str, flavours: Sequence[str]) -> dict[str, Path]:
    """Every file :func:`evaluate_predictions` writes, keyed by what it shows."""
    outputs = {
        "metrics": out_dir / "metrics.json",
        "discriminant": out_dir / f"{tagger}_discriminant.png",
        "rejection": out_dir / f"{tagger}_rejection.png",
    }
    for (flav, quantity), name in pt_plot_names(f"{tagger}_", flavours).items():
        outputs[f"pt_{flav}_{quantity}"] = out_dir / name
    return outputs


def evaluate_predictions(
    pred_file: str | Path,
    out_dir: str | Path,
    tagger: str,
    class_names: Sequence[str] | None = None,
    label_field: str | None = "flavour_label",
    fc: float = 0.2,
    working_points: Sequence[float] = DEFAULT_WORKING_POINTS,
    test_file: str | Path | None = None,
    overwrite: bool = False,
    *,
    ftau: float = 0.0,
    reference: str | None = None,
    pt_working_point: float = 0.70,
    pt_bins: Sequence[float] = DEFAULT_PT_BINS,
    tag: str | None = None,
) -> dict[str, Any]:
    """Compute b-tagging metrics of one tagger and write metrics.json and the plots.

    Outputs (none replaced unless ``overwrite``; see :func:`output_paths`): ``metrics.json``,
    the discriminant per flavour, rejection versus b-jet efficiency with binomial bands and,
    when the file has the jet ``pt``, b-jet efficiency and background rejections versus pT at
    ``pt_working_point``. A ``reference`` tagger of the same file (e.g. one carried over from
    the test file) gets its metrics under ``baselines`` and is the denominator of the ratio
    panels. With a ``test_file`` whose ``tracks`` carry ``IP3D_signed_d0_significance``, the IP
    baseline (rows aligned 1:1 with the predictions) is added too. Fractions of classes the
    model does not have (``fc`` without c, ``ftau`` without tau) are set to zero, and the used
    values are recorded in the metrics.

    Args:
        pred_file: Predictions file written by ``salt test``.
        out_dir: Directory for the outputs, created if needed.
        tagger: Model name, the prefix of the ``<tagger>_p<flavour>`` fields.
        class_names: The model's classes in output order, e.g. ``["bjets", "cjets", "ujets"]``
            (default: as recorded in the file).
        label_field: Truth label field of the jets: class indices, or hadron codes when it is
            ``HadronConeExclTruthLabelID`` (None: class indices when the file records the
            classes, else hadron codes).
        fc: c-jet fraction of the discriminant.
        working_points: b-jet efficiencies at which to report rejections.
        test_file: Optional test file for the IP baseline.
        overwrite: Replace existing outputs.
        ftau: tau-jet fraction of the discriminant.
        reference: Another tagger in the file to compare with.
        pt_working_point: b-jet efficiency whose inclusive cut is applied in the pT plots.
        pt_bins: pT bin edges in GeV.
        tag: Bold first line of the information box (e.g. ``"ATLAS Simulation Internal"``).

    Returns:
        The metrics dict that was written to metrics.json.
    """
    pred_path = Path(pred_file)
    if class_names is not None:
        flavours = [flavour_short_name(c) for c in class_names]
        if SIGNAL not in flavours or "u" not in flavours:
            raise ValueError(f"class_names {list(class_names)}: expected at least bjets and ujets")
    if reference == tagger:
        raise ValueError(f"reference '{reference}': expected a tagger other than '{tagger}'")
    taggers = [tagger, *([reference] if reference else [])]
    preds = read_predictions(pred_path, taggers, label_field, class_names)
    probs = preds.probs[tagger]
    if class_names is not None:
        missing = [f for f in flavours if f not in probs]
        if missing:
            raise ValueError(
                f"{pred_path}: '{JETS}' has no field '{tagger}_p{missing[0]}' "
                f"(tagger fields found: {[f'{tagger}_p{f}' for f in probs]})"
            )
        probs = {f: probs[f] for f in flavours}
    truth = preds.truth

    out_path = Path(out_dir)
    flavours_present = pt_flavours(truth) if preds.pt is not None else []
    outputs = output_paths(out_path, tagger, flavours_present)
    refuse_overwrite(outputs.values(), overwrite)

    if "c" not in probs and fc != 0:
        log.info("%s has no c-jet class: using fc=0 instead of %s", tagger, fc)
        fc = 0.0
    if "tau" not in probs and ftau != 0:
        log.info("%s has no tau-jet class: using ftau=0 instead of %s", tagger, ftau)
        ftau = 0.0

    baselines: dict[str, np.ndarray] = {}
    if reference:
        baselines[reference] = preds.discriminant(reference, fc, ftau)
    if test_file is not None:
        baselines.update(_ip_baseline(test_file, truth.size))

    metrics = compute_metrics(truth, probs, fc, working_points, baselines, ftau=ftau)
    metrics = {
        "tagger": tagger,
        "pred_file": str(pred_path),
        "label_field": preds.label_field,
        "class_names": list(class_names or preds.class_names),
        **metrics,
    }
    if preds.label_map:
        metrics["label_map"] = {str(k): v for k, v in preds.label_map.items()}
    if reference:
        metrics["reference"] = reference

    out_path.mkdir(parents=True, exist_ok=True)
    disc = b_discriminant(probs, fc=fc, ftau=ftau)
    info = info_lines(preds.sample, truth.size, fc, ftau)
    cuts = {f"{float(key):.0%}": wp["cut"] for key, wp in metrics["working_points"].items()}
    plot_discriminant(
        Scores(tagger, disc, truth), outputs["discriminant"], cuts=cuts, info=info, tag=tag
    )
    scores = [Scores(tagger, disc, truth, preds.pt)]
    scores += [Scores(name, values, truth, preds.pt) for name, values in baselines.items()]
    plot_rejection(scores, outputs["rejection"], reference=reference, info=info, tag=tag)
    if preds.pt is not None:
        pt_results = {
            s.label: performance_vs_pt(s.disc, truth, preds.pt, pt_working_point, pt_bins)
            for s in scores
        }
        metrics["pt"] = pt_results[tagger]
        write_pt_plots(
            pt_results,
            out_path,
            pt_plot_names(f"{tagger}_", flavours_present),
            reference,
            info_lines(preds.sample, truth.size, fc, ftau, pt_working_point),
            tag,
        )
    # Written last: its presence means the whole evaluation finished.
    write_json(metrics, outputs["metrics"])

    log.info(
        "%s on %d jets (fc=%.3g, ftau=%.3g):\n%s",
        tagger,
        metrics["n_jets"],
        fc,
        ftau,
        summary_table(metrics),
    )
    for name, perf in metrics["baselines"].items():
        log.info("%s:\n%s", name, summary_table(perf))
    log.info(
        "evaluation written to %s:\n%s",
        out_path,
        "\n".join(f"  {p.name}" for p in outputs.values() if p.exists()),
    )
    return metrics
