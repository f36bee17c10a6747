"""Evaluate a ``salt test`` predictions file: metrics.json plus the standard b-tagging plots.

Run as ``python -m salt.evaluation.evaluate PRED_FILE --tagger GN2 --class_names bjets cjets
ujets [--test_file TEST_FILE] [--out_dir DIR] [--overwrite]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from salt.evaluation.metrics import (
    BACKGROUNDS,
    DEFAULT_WORKING_POINTS,
    FLAVOUR_OF_HADRON_LABEL,
    SIGNAL,
    b_discriminant,
    compute_metrics,
    flavour_short_name,
)
from salt.evaluation.plots import plot_discriminant, plot_rejection

log = logging.getLogger(__name__)

HADRON_LABEL_FIELD = "HadronConeExclTruthLabelID"
JETS = "jets"
OTHER = "other"
"""Flavour name given to jets whose truth label is none of b, c, u, tau."""

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


def truth_flavours_from_labels(
    labels: np.ndarray, label_field: str, class_names: Sequence[str]
) -> np.ndarray:
    """Turn integer truth labels into short flavour names.

    ``HadronConeExclTruthLabelID`` holds physics codes (5, 4, 0, 15); any other label field is
    taken to hold indices into ``class_names``, as written by the preprocessing. Hadron codes
    outside b, c, u, tau become ``"other"`` and take no part in the metrics.
    """
    labels = np.asarray(labels).ravel()
    if labels.dtype.kind not in "iu":
        raise ValueError(f"'{label_field}': has dtype {labels.dtype}, expected integer labels")
    if label_field == HADRON_LABEL_FIELD:
        flavours = np.full(labels.shape, OTHER, dtype=object)
        for code, flav in FLAVOUR_OF_HADRON_LABEL.items():
            flavours[labels == code] = flav
        return flavours.astype(str)
    short = np.asarray([flavour_short_name(c) for c in class_names])
    if labels.size and (labels.min() < 0 or labels.max() >= short.size):
        raise ValueError(
            f"'{label_field}': labels span [{labels.min()}, {labels.max()}], expected indices "
            f"0..{short.size - 1} into class names {list(class_names)}"
        )
    return short[labels]


def _check_class_attribute(ds: h5py.Dataset, path: Path, class_names: Sequence[str]) -> None:
    """The jets dataset may record its class order; a different order would swap flavours."""
    stored = ds.attrs.get("flavour_label")
    if stored is None:
        return
    stored_names = [s.decode() if isinstance(s, bytes) else str(s) for s in np.atleast_1d(stored)]
    if [flavour_short_name(s) for s in stored_names] != [
        flavour_short_name(c) for c in class_names
    ]:
        raise ValueError(
            f"{path}: '{JETS}' attribute flavour_label is {stored_names}, "
            f"expected the class names {list(class_names)}"
        )


def _read_predictions(
    path: Path, tagger: str, flavours: Sequence[str], class_names: Sequence[str], label_field: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Read only the tagger outputs and the truth label from the jets of a predictions file."""
    with h5py.File(path, "r") as h5:
        if JETS not in h5 or not isinstance(h5[JETS], h5py.Dataset):
            raise ValueError(
                f"{path}: no dataset '{JETS}', expected the predictions of 'salt test'"
            )
        ds = h5[JETS]
        names = ds.dtype.names or ()
        prob_fields = {flav: f"{tagger}_p{flav}" for flav in flavours}
        for field in [*prob_fields.values(), label_field]:
            if field not in names:
                found = [n for n in names if n.startswith(f"{tagger}_p")]
                raise ValueError(
                    f"{path}: '{JETS}' has no field '{field}' (tagger fields found: {found})"
                )
        if label_field != HADRON_LABEL_FIELD:
            _check_class_attribute(ds, path, class_names)
        data = ds.fields([*prob_fields.values(), label_field])[()]
    probs = {flav: np.asarray(data[field]) for flav, field in prob_fields.items()}
    return probs, np.asarray(data[label_field])


def _track_field_exists(path: Path, tracks: str, field: str) -> bool:
    with h5py.File(path, "r") as h5:
        ds = h5.get(tracks)
        return isinstance(ds, h5py.Dataset) and field in (ds.dtype.names or ())


def _write_json(data: dict[str, Any], path: Path) -> None:
    """Write through a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("x") as handle:
            json.dump(data, handle, indent=2, allow_nan=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _format_rejection(value: float | None) -> str:
    return "inf" if value is None else f"{value:.1f}"


def summary_table(metrics: dict[str, Any]) -> str:
    """A short text table of cuts and rejections per working point, for logs and terminals."""
    backgrounds = [f for f in BACKGROUNDS if f"b_vs_{f}" in metrics["auc"]]
    header = ["WP", "cut", *(f"{f} rej" for f in backgrounds)]
    rows = [
        [key, f"{wp['cut']:.3f}", *(_format_rejection(wp[f"{f}_rejection"]) for f in backgrounds)]
        for key, wp in metrics["working_points"].items()
    ]
    rows.append(["AUC", "", *(f"{metrics['auc'][f'b_vs_{f}']:.4f}" for f in backgrounds)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *rows])


def evaluate_predictions(
    pred_file: str | Path,
    out_dir: str | Path,
    tagger: str,
    class_names: list[str],
    label_field: str = "flavour_label",
    fc: float = 0.2,
    working_points: Sequence[float] = DEFAULT_WORKING_POINTS,
    test_file: str | Path | None = None,
    overwrite: bool = False,
    *,
    ftau: float = 0.0,
) -> dict[str, Any]:
    """Compute b-tagging metrics of one tagger and write metrics.json and two plots.

    Outputs are ``out_dir/metrics.json``, ``out_dir/<tagger>_discriminant.png`` and
    ``out_dir/<tagger>_rejection.png``; none is replaced unless ``overwrite``. With a
    ``test_file`` whose ``tracks`` carry ``IP3D_signed_d0_significance``, the IP baseline (rows
    aligned 1:1 with the predictions) is added for comparison. Fractions of classes the model does
    not have (``fc`` without c, ``ftau`` without tau) are set to zero, and the used values are
    recorded in the metrics.

    Args:
        pred_file: Predictions file written by ``salt test``.
        out_dir: Directory for the outputs, created if needed.
        tagger: Model name, the prefix of the ``<tagger>_p<flavour>`` fields.
        class_names: The model's classes in output order, e.g. ``["bjets", "cjets", "ujets"]``.
        label_field: Truth label field of the jets: class indices, or hadron codes when it is
            ``HadronConeExclTruthLabelID``.
        fc: c-jet fraction of the discriminant.
        working_points: b-jet efficiencies at which to report rejections.
        test_file: Optional test file for the IP baseline.
        overwrite: Replace existing outputs.
        ftau: tau-jet fraction of the discriminant.

    Returns:
        The metrics dict that was written to metrics.json.
    """
    pred_path = Path(pred_file)
    if not pred_path.is_file():
        raise FileNotFoundError(f"{pred_path}: predictions file not found")
    flavours = [flavour_short_name(c) for c in class_names]
    if SIGNAL not in flavours or "u" not in flavours:
        raise ValueError(f"class_names {list(class_names)}: expected at least bjets and ujets")

    out_path = Path(out_dir)
    outputs = {
        "metrics": out_path / "metrics.json",
        "discriminant": out_path / f"{tagger}_discriminant.png",
        "rejection": out_path / f"{tagger}_rejection.png",
    }
    if not overwrite:
        for path in outputs.values():
            if path.exists():
                raise FileExistsError(f"{path}: already exists, pass --overwrite to replace it")

    probs, labels = _read_predictions(pred_path, tagger, flavours, class_names, label_field)
    truth = truth_flavours_from_labels(labels, label_field, class_names)
    absent = [f for f in (SIGNAL, "u") if not (truth == f).any()]
    if absent:
        raise ValueError(
            f"{pred_path}: '{label_field}' has no {' or '.join(absent)} jets, expected both b and u"
        )
    if "c" not in probs and fc != 0:
        log.info("%s has no c-jet class: using fc=0 instead of %s", tagger, fc)
        fc = 0.0
    if "tau" not in probs and ftau != 0:
        log.info("%s has no tau-jet class: using ftau=0 instead of %s", tagger, ftau)
        ftau = 0.0

    baselines: dict[str, np.ndarray] = {}
    if test_file is not None:
        test_path = Path(test_file)
        if not test_path.is_file():
            raise FileNotFoundError(f"{test_path}: test file not found")
        if _track_field_exists(test_path, "tracks", "IP3D_signed_d0_significance"):
            n_top = 3
            baselines[f"IP d0 sig. top-{n_top} sum"] = baseline_ip_discriminant(
                test_path, n=n_top, num_jets=truth.size
            )
        else:
            log.warning(
                "%s: no tracks/IP3D_signed_d0_significance, skipping the IP baseline", test_path
            )

    metrics = compute_metrics(truth, probs, fc, working_points, baselines, ftau=ftau)
    metrics = {
        "tagger": tagger,
        "pred_file": str(pred_path),
        "label_field": label_field,
        "class_names": list(class_names),
        **metrics,
    }

    out_path.mkdir(parents=True, exist_ok=True)
    disc = b_discriminant(probs, fc=fc, ftau=ftau)
    cuts = {f"{float(key):.0%}": wp["cut"] for key, wp in metrics["working_points"].items()}
    plot_discriminant(disc, truth, outputs["discriminant"], tagger, cuts=cuts)
    plot_rejection(disc, truth, outputs["rejection"], tagger, baselines=baselines)
    # Written last: its presence means the whole evaluation finished.
    _write_json(metrics, outputs["metrics"])

    log.info(
        "%s on %d jets (fc=%.3g, ftau=%.3g):\n%s",
        tagger,
        metrics["n_jets"],
        fc,
        ftau,
        summary_table(metrics),
    )
    for name, perf in metrics["baselines"].items():
        log.info("baseline %s:\n%s", name, summary_table(perf))
    log.info("wrote %s", ", ".join(str(p) for p in outputs.values()))
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point wrapping :func:`evaluate_predictions`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pred_file", type=Path, help="predictions file written by 'salt test'")
    parser.add_argument("--tagger", required=True, help="model name, prefix of <tagger>_p<flav>")
    parser.add_argument("--class_names", nargs="+", required=True, help="e.g. bjets cjets ujets")
    parser.add_argument("--out_dir", type=Path, help="default: <pred_file dir>/evaluation")
    parser.add_argument("--label_field", default="flavour_label")
    parser.add_argument("--fc", type=float, default=0.2)
    parser.add_argument("--ftau", type=float, default=0.0)
    parser.add_argument(
        "--working_points", type=float, nargs="+", default=list(DEFAULT_WORKING_POINTS)
    )
    parser.add_argument("--test_file", type=Path, help="test file for the IP baseline")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        evaluate_predictions(
            args.pred_file,
            args.out_dir or args.pred_file.parent / "evaluation",
            args.tagger,
            args.class_names,
            label_field=args.label_field,
            fc=args.fc,
            working_points=args.working_points,
            test_file=args.test_file,
            overwrite=args.overwrite,
            ftau=args.ftau,
        )
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        # These already say what is wrong in one line; a traceback would only bury it.
        parser.exit(1, f"error: {err}\n")


if __name__ == "__main__":
    main()
