"""Compare several runs or taggers: one table (Markdown and JSON) and overlaid plots.

Each source is a run directory (its newest ``ckpts/*__test_*.h5`` predictions, tagger = the run's
``name``), a predictions file (its only tagger, or that of the run it lies in) or
``FILE:TAGGER`` for one tagger of a file, e.g. a reference tagger carried over from the test
file. Every number is computed exactly as ``salt test`` computes metrics.json, so the table
agrees with each run's own evaluation at the same ``fc`` and working points.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from salt.evaluation.metrics import (
    BACKGROUNDS,
    DEFAULT_WORKING_POINTS,
    compute_metrics,
    wp_key,
)
from salt.evaluation.outputs import (
    info_lines,
    pt_flavours,
    pt_plot_names,
    refuse_overwrite,
    write_json,
    write_pt_plots,
    write_text,
)
from salt.evaluation.plots import Scores, plot_discriminant_by_flavour, plot_rejection
from salt.evaluation.predictions import Predictions, find_taggers, read_predictions
from salt.evaluation.pt_bins import DEFAULT_PT_BINS, performance_vs_pt

log = logging.getLogger(__name__)

TABLE_MD = "comparison.md"
TABLE_JSON = "comparison.json"
REJECTION_PLOT = "rejection.png"


@dataclass
class Source:
    """One curve of the comparison: a tagger in a predictions file."""

    pred_file: Path
    tagger: str
    run_dir: Path | None = None


def _run_name(run_dir: Path) -> str | None:
    config = run_dir / "config.yaml"
    if not config.is_file():
        return None
    loaded = yaml.safe_load(config.read_text())
    name = loaded.get("name") if isinstance(loaded, dict) else None
    return str(name) if name else None


def _newest_predictions(run_dir: Path) -> Path:
    found = sorted(
        (run_dir / "ckpts").glob("*__test_*.h5"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    if not found:
        raise FileNotFoundError(
            f"{run_dir}: no predictions file ckpts/*__test_*.h5, run 'salt test' on it first"
        )
    if len(found) > 1:
        log.info("%s: using the newest predictions file %s", run_dir, found[0].name)
    return found[0]


def _file_taggers(path: Path) -> list[str]:
    import h5py

    with h5py.File(path, "r") as h5:
        ds = h5.get("jets")
        names = ds.dtype.names if isinstance(ds, h5py.Dataset) else None
    return list(find_taggers(names or ()))


def resolve_source(spec: str) -> Source:
    """Turn ``RUN_DIR``, ``PRED.h5`` or ``PRED.h5:TAGGER`` into a :class:`Source`."""
    path, tagger = Path(spec), None
    if not path.exists() and ":" in spec:
        head, _, tail = spec.rpartition(":")
        if Path(head).exists() and tail:
            path, tagger = Path(head), tail
    if path.is_dir():
        run_dir: Path | None = path
        pred = _newest_predictions(path)
    elif path.is_file():
        pred = path
        run_dir = path.parent.parent if path.parent.name == "ckpts" else None
    else:
        raise FileNotFoundError(f"{spec}: no such run directory or predictions file")
    if tagger is None:
        taggers = _file_taggers(pred)
        name = _run_name(run_dir) if run_dir is not None else None
        if name in taggers:
            tagger = name
        elif len(taggers) == 1:
            tagger = taggers[0]
        else:
            raise ValueError(
                f"{pred}: holds the taggers {taggers}, expected one; choose with {pred}:TAGGER"
            )
    return Source(pred, tagger, run_dir)


def _labels(sources: Sequence[Source]) -> list[str]:
    """Tagger names, made unique with the run directory (or file) name where they repeat."""
    names = [s.tagger for s in sources]
    labels = []
    for s in sources:
        if names.count(s.tagger) == 1:
            labels.append(s.tagger)
        else:
            where = s.run_dir.name if s.run_dir is not None else s.pred_file.stem
            labels.append(f"{s.tagger} ({where})")
    if len(set(labels)) != len(labels):
        raise ValueError(f"sources: the same tagger is given twice ({labels})")
    return labels


def _fmt(value: float | None, uncertainty: float | None = None, digits: int = 1) -> str:
    if value is None:
        return "inf"
    text = f"{value:.{digits}f}"
    return text if uncertainty is None else f"{text} ± {uncertainty:.{digits}f}"


def markdown_table(summary: dict[str, Any]) -> str:
    """The comparison as Markdown: AUCs, then rejections per working point with their ratio
    to the reference."""
    taggers: dict[str, Any] = summary["taggers"]
    reference = summary["reference"]
    backgrounds = [f for f in BACKGROUNDS if any(f"b_vs_{f}" in t["auc"] for t in taggers.values())]
    lines = [
        f"# Comparison (fc = {summary['fc']:g}, reference {reference})",
        "",
        "| tagger | sample | jets | " + " | ".join(f"AUC b vs {f}" for f in backgrounds) + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in backgrounds) + " |",
    ]
    for label, t in taggers.items():
        aucs = " | ".join(_fmt(t["auc"].get(f"b_vs_{f}"), digits=4) for f in backgrounds)
        lines.append(f"| {label} | {t['sample']} | {t['n_jets']:,} | {aucs} |")
    for key in summary["working_points"]:
        lines += [
            "",
            f"## {float(key):.0%} b-jet efficiency",
            "",
            "| tagger | cut | "
            + " | ".join(f"{f} rejection | {f} ratio" for f in backgrounds)
            + " |",
            "| --- | ---: | " + " | ".join("---: | ---:" for _ in backgrounds) + " |",
        ]
        for label, t in taggers.items():
            wp = t["working_points"][key]
            cells = []
            for f in backgrounds:
                cells.append(_fmt(wp.get(f"{f}_rejection"), wp.get(f"{f}_rejection_uncertainty")))
                cells.append(_fmt(t["ratio_to_reference"][key].get(f), digits=3))
            lines.append(f"| {label} | {wp['cut']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _ratios(metrics: dict[str, Any], ref: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for key, wp in metrics["working_points"].items():
        ref_wp = ref["working_points"][key]
        out[key] = {}
        for f in BACKGROUNDS:
            mine, theirs = wp.get(f"{f}_rejection"), ref_wp.get(f"{f}_rejection")
            if f"{f}_rejection" in wp and f"{f}_rejection" in ref_wp:
                out[key][f] = None if mine is None or theirs is None else mine / theirs
    return out


def output_paths(out_dir: Path, flavours: Sequence[str], with_pt: bool) -> list[Path]:
    paths = [out_dir / TABLE_MD, out_dir / TABLE_JSON, out_dir / REJECTION_PLOT]
    paths += [out_dir / f"discriminant_{f}.png" for f in flavours]
    if with_pt:
        paths += [out_dir / n for n in pt_plot_names("", flavours).values()]
    return paths


def compare(
    specs: Sequence[str],
    out_dir: str | Path,
    reference: str | None = None,
    fc: float = 0.2,
    ftau: float = 0.0,
    working_points: Sequence[float] = DEFAULT_WORKING_POINTS,
    pt_working_point: float = 0.70,
    pt_bins: Sequence[float] = DEFAULT_PT_BINS,
    overwrite: bool = False,
    tag: str | None = None,
) -> dict[str, Any]:
    """Evaluate every source at the same ``fc`` and working points and write the comparison.

    Outputs in ``out_dir`` (none replaced unless ``overwrite``): ``comparison.md`` and
    ``comparison.json`` (per tagger: the metrics of ``salt test`` plus the sample and ratios to
    the reference), ``rejection.png`` (rejection versus b-jet efficiency with a ratio panel per
    background and binomial bands), ``discriminant_<flavour>.png`` and, when every file has the
    jet ``pt``, ``pt_b_efficiency.png`` and ``pt_<background>_rejection.png`` at
    ``pt_working_point``.

    Args:
        specs: Run directories, predictions files or ``FILE:TAGGER``.
        out_dir: Output directory.
        reference: Label of the tagger the ratios divide by (default: the first).
        fc: c-jet fraction of every discriminant (0 for a tagger without c class).
        ftau: tau-jet fraction (0 for a tagger without tau class).
        working_points: b-jet efficiencies of the table.
        pt_working_point: b-jet efficiency whose inclusive cut the pT plots apply.
        pt_bins: pT bin edges in GeV.
        overwrite: Replace existing outputs.
        tag: Bold first line of the information boxes.

    Returns:
        The summary written to comparison.json.
    """
    if not specs:
        raise ValueError("sources: expected at least one run directory or predictions file")
    sources = [resolve_source(s) for s in specs]
    labels = _labels(sources)
    if reference is not None and reference not in labels:
        raise ValueError(f"--reference '{reference}': not among the taggers {labels}")
    ref_label = reference or labels[0]

    cache: dict[Path, Predictions] = {}
    scores: list[Scores] = []
    per_tagger: dict[str, dict[str, Any]] = {}
    for source, label in zip(sources, labels):
        file_taggers = [s.tagger for s in sources if s.pred_file == source.pred_file]
        if source.pred_file not in cache:
            cache[source.pred_file] = read_predictions(source.pred_file, file_taggers, None)
        preds = cache[source.pred_file]
        probs = preds.probs[source.tagger]
        used_fc = fc if "c" in probs else 0.0
        used_ftau = ftau if "tau" in probs else 0.0
        metrics = compute_metrics(preds.truth, probs, used_fc, working_points, ftau=used_ftau)
        per_tagger[label] = {
            "tagger": source.tagger,
            "pred_file": str(source.pred_file),
            "run_dir": None if source.run_dir is None else str(source.run_dir),
            "sample": preds.sample,
            "label_field": preds.label_field,
            **metrics,
        }
        scores.append(
            Scores(label, preds.discriminant(source.tagger, fc, ftau), preds.truth, preds.pt)
        )

    sizes = {label: t["n_jets"] for label, t in per_tagger.items()}
    if len(set(sizes.values())) > 1:
        log.warning("the taggers were evaluated on different numbers of jets: %s", sizes)
    flavours = pt_flavours(np.concatenate([s.truth for s in scores]))
    with_pt = all(s.pt is not None for s in scores)
    out_path = Path(out_dir)
    paths = output_paths(out_path, flavours, with_pt)
    refuse_overwrite(paths, overwrite)

    for t in per_tagger.values():
        t["ratio_to_reference"] = _ratios(t, per_tagger[ref_label])
    summary: dict[str, Any] = {
        "reference": ref_label,
        "fc": float(fc),
        "ftau": float(ftau),
        "working_points": [wp_key(e) for e in working_points],
        "taggers": per_tagger,
    }

    out_path.mkdir(parents=True, exist_ok=True)
    samples = sorted({s["sample"] for s in per_tagger.values()})
    n_jets = max(sizes.values())
    info = info_lines(", ".join(samples), n_jets, fc, ftau)
    plot_rejection(scores, out_path / REJECTION_PLOT, reference=ref_label, info=info, tag=tag)
    for flav in flavours:
        plot_discriminant_by_flavour(
            scores, flav, out_path / f"discriminant_{flav}.png", info=info, tag=tag
        )
    if with_pt:
        pt_results = {
            s.label: performance_vs_pt(s.disc, s.truth, s.pt, pt_working_point, pt_bins)
            for s in scores
            if s.pt is not None
        }
        for label, result in pt_results.items():
            per_tagger[label]["pt"] = result
        write_pt_plots(
            pt_results,
            out_path,
            pt_plot_names("", flavours),
            ref_label,
            info_lines(", ".join(samples), n_jets, fc, ftau, pt_working_point),
            tag,
        )
    else:
        log.info("not every predictions file has the jet pt: no plots versus pT")
    table = markdown_table(summary)
    write_text(table, out_path / TABLE_MD)
    # Written last: its presence means the whole comparison finished.
    write_json(summary, out_path / TABLE_JSON)
    log.info("comparison of %d taggers:\n%s", len(labels), table)
    log.info(
        "comparison written to %s:\n%s",
        out_path,
        "\n".join(f"  {p.name}" for p in paths if p.exists()),
    )
    return summary
