"""Read a predictions file of ``salt test``: truth flavours, tagger probabilities and jet pT.

A predictions file is self-describing: its ``jets`` dataset carries the class names of the model
(attribute ``flavour_label``), one ``<tagger>_p<flavour>`` field per class and per tagger (the
trained model, plus any reference tagger carried over from the test file such as ``GN2v01``),
the truth labels and the jet kinematics. So evaluation needs nothing but the file.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from salt.evaluation.metrics import (
    BACKGROUNDS,
    FLAVOUR_OF_HADRON_LABEL,
    SIGNAL,
    b_discriminant,
    flavour_short_name,
)

log = logging.getLogger(__name__)

HADRON_LABEL_FIELD = "HadronConeExclTruthLabelID"
INDEX_LABEL_FIELD = "flavour_label"
JETS = "jets"
OTHER = "other"
"""Flavour name given to jets whose truth label is none of b, c, u, tau."""

LABEL_MAP_ATTRIBUTE = "label_map"
"""Attribute of the jets dataset: JSON ``{"field": label field, "map": {stored: index}}``,
written by ``salt test`` when the model's classifier was trained with a ``label_map``."""

PT_FIELD = "pt"
_MEV_MEDIAN = 1000.0
"""A median jet pT above this many units can only be in MeV (FTAG files); salt plots GeV."""

_TAGGER_FIELD = re.compile(r"^(?P<tagger>.+)_p(?P<flavour>b|c|u|tau)$")


def apply_label_map(
    labels: np.ndarray, label_field: str, label_map: Mapping[int, int]
) -> np.ndarray:
    """Stored labels as class indices through ``label_map``; -1 where a label is not in it.

    The labels left out are counted and reported in one log line: a model trained with a
    ``label_map`` never learnt them, so they take no part in its metrics.
    """
    if not label_map:
        raise ValueError(f"'{label_field}': the label_map is empty")
    labels = np.asarray(labels).astype(np.int64).ravel()
    stored = np.array(sorted(label_map), dtype=np.int64)
    index = np.array([label_map[k] for k in sorted(label_map)], dtype=np.int64)
    where = np.clip(np.searchsorted(stored, labels), 0, stored.size - 1)
    inside = stored[where] == labels
    mapped = np.where(inside, index[where], -1)
    unmapped = int((~inside).sum())
    if unmapped:
        values, counts = np.unique(labels[~inside], return_counts=True)
        log.info(
            "'%s': %d of %d jets have labels outside the label_map %s (%s); they take no part "
            "in the metrics",
            label_field,
            unmapped,
            labels.size,
            dict(label_map),
            ", ".join(f"{v}: {c}" for v, c in zip(values.tolist(), counts.tolist())),
        )
    return mapped


def stored_label_map(ds: h5py.Dataset) -> tuple[str, dict[int, int]] | None:
    """``(label field, {stored value: class index})`` recorded on a predictions file, if any."""
    raw = ds.attrs.get(LABEL_MAP_ATTRIBUTE)
    if raw is None:
        return None
    try:
        content = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
        return str(content["field"]), {int(k): int(v) for k, v in content["map"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(
            f"'{JETS}' attribute {LABEL_MAP_ATTRIBUTE}: expected JSON "
            f'{{"field": ..., "map": {{stored: index}}}}, got {raw!r} ({err})'
        ) from err


def label_map_attribute(label_field: str, label_map: Mapping[int, int]) -> str:
    """The value of :data:`LABEL_MAP_ATTRIBUTE` for a classifier's label field and map."""
    return json.dumps({"field": label_field, "map": {str(k): int(v) for k, v in label_map.items()}})


def truth_flavours_from_labels(
    labels: np.ndarray,
    label_field: str,
    class_names: Sequence[str],
    label_map: Mapping[int, int] | None = None,
) -> np.ndarray:
    """Turn integer truth labels into short flavour names.

    ``HadronConeExclTruthLabelID`` holds physics codes (5, 4, 0, 15); any other label field is
    taken to hold indices into ``class_names``, as written by the preprocessing. Hadron codes
    outside b, c, u, tau become ``"other"`` and take no part in the metrics. With a
    ``label_map`` (``{stored value: class index}``, as the model was trained) the labels are
    mapped first; labels outside it become ``"other"`` and are reported once.
    """
    labels = np.asarray(labels).ravel()
    if labels.dtype.kind not in "iu":
        raise ValueError(f"'{label_field}': has dtype {labels.dtype}, expected integer labels")
    if label_map:
        short = np.asarray([flavour_short_name(c) for c in class_names] + [OTHER])
        mapped = apply_label_map(labels, label_field, label_map)
        bad = mapped[mapped >= short.size - 1]
        if bad.size:
            raise ValueError(
                f"'{label_field}': label_map targets {sorted(set(bad.tolist()))} are outside "
                f"0..{short.size - 2} (class names {list(class_names)})"
            )
        return short[mapped]  # -1 picks OTHER, the last entry
    if label_field == HADRON_LABEL_FIELD:
        flavours = np.full(labels.shape, OTHER, dtype=object)
        for code, flav in FLAVOUR_OF_HADRON_LABEL.items():
            flavours[labels == code] = flav
        return flavours.astype(str)
    short = np.asarray([flavour_short_name(c) for c in class_names])
    if labels.size and (labels.min() < 0 or labels.max() >= short.size):
        raise ValueError(
            f"'{label_field}': labels span [{labels.min()}, {labels.max()}], expected indices "
            f"0..{short.size - 1} into class names {list(class_names)} (or a label_map)"
        )
    return short[labels]


def stored_class_names(ds: h5py.Dataset) -> list[str] | None:
    """The class names a predictions (or training) file records on its jets, if any."""
    stored = ds.attrs.get(INDEX_LABEL_FIELD)
    if stored is None:
        return None
    return [s.decode() if isinstance(s, bytes) else str(s) for s in np.atleast_1d(stored)]


def check_class_attribute(ds: h5py.Dataset, path: Path, class_names: Sequence[str]) -> None:
    """The jets dataset may record its class order; a different order would swap flavours."""
    stored = stored_class_names(ds)
    if stored is None:
        return
    if [flavour_short_name(s) for s in stored] != [flavour_short_name(c) for c in class_names]:
        raise ValueError(
            f"{path}: '{JETS}' attribute flavour_label is {stored}, "
            f"expected the class names {list(class_names)}"
        )


def find_taggers(field_names: Sequence[str]) -> dict[str, list[str]]:
    """Taggers in a jets dataset: ``{tagger: [flavours]}`` for every prefix with ``_pb`` and
    ``_pu`` fields, in the order the fields appear."""
    found: dict[str, list[str]] = {}
    for name in field_names:
        match = _TAGGER_FIELD.match(name)
        if match:
            found.setdefault(match["tagger"], []).append(match["flavour"])
    return {t: f for t, f in found.items() if SIGNAL in f and "u" in f}


def pt_in_gev(pt: np.ndarray, path: Path) -> np.ndarray:
    """Jet pT in GeV; FTAG files store MeV, which is recognised by the size of the median."""
    pt = np.asarray(pt, dtype=np.float64)
    finite = pt[np.isfinite(pt)]
    if finite.size and np.median(finite) > _MEV_MEDIAN:
        log.info(
            "%s: jet pT taken to be in MeV (median %.3g), shown in GeV", path, np.median(finite)
        )
        return pt / 1000.0
    return pt


@dataclass
class Predictions:
    """What evaluation needs from one predictions file.

    Attributes:
        path: The file.
        truth: Short truth flavour per jet (``b``, ``c``, ``u``, ``tau`` or ``other``).
        probs: ``{tagger: {flavour: probabilities}}`` for the requested taggers.
        label_field: The truth field that was read.
        class_names: The model's classes recorded in the file, or the flavours of the first
            tagger when the file does not record them.
        pt: Jet pT in GeV, when the file has a ``pt`` field.
        all_taggers: Every tagger of the file.
        label_map: The ``{stored label: class index}`` map applied to the truth labels.
    """

    path: Path
    truth: np.ndarray
    probs: dict[str, dict[str, np.ndarray]]
    label_field: str
    class_names: list[str]
    pt: np.ndarray | None = None
    all_taggers: list[str] = field(default_factory=list)
    label_map: dict[int, int] | None = None

    @property
    def sample(self) -> str:
        """The test sample's name: ``<ckpt>__test_<sample>.h5`` gives ``<sample>``."""
        stem = self.path.stem
        for marker in ("__test_", "__predict_"):
            if marker in stem:
                return stem.split(marker, 1)[1]
        return stem

    def discriminant(self, tagger: str, fc: float, ftau: float = 0.0) -> np.ndarray:
        """``D_b`` of one tagger; fractions of classes the tagger lacks count as zero."""
        probs = self.probs[tagger]
        return b_discriminant(
            probs, fc=fc if "c" in probs else 0.0, ftau=ftau if "tau" in probs else 0.0
        )


def _default_label_field(names: Sequence[str], has_class_attribute: bool) -> str:
    """Class indices when the file says which classes they index, else hadron codes."""
    if INDEX_LABEL_FIELD in names and has_class_attribute:
        return INDEX_LABEL_FIELD
    if HADRON_LABEL_FIELD in names:
        return HADRON_LABEL_FIELD
    if INDEX_LABEL_FIELD in names:
        return INDEX_LABEL_FIELD
    raise ValueError(
        f"'{JETS}' has neither '{INDEX_LABEL_FIELD}' nor '{HADRON_LABEL_FIELD}', expected a "
        "truth label field (pass --label_field)"
    )


def read_predictions(
    pred_file: str | Path,
    taggers: Sequence[str] | None = None,
    label_field: str | None = None,
    class_names: Sequence[str] | None = None,
    label_map: Mapping[int, int] | None = None,
) -> Predictions:
    """Read truth, probabilities of ``taggers`` (default: all found) and pT from a file.

    Only the needed fields are read. ``class_names`` (default: the file's ``flavour_label``
    attribute) are what the integer labels of an index label field point into; when given and
    the file records a different order, that is an error rather than swapped flavours.
    ``label_map`` (default: the one ``salt test`` recorded for the label field, see
    :data:`LABEL_MAP_ATTRIBUTE`) maps stored labels to class indices first.
    """
    path = Path(pred_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions file not found")
    with h5py.File(path, "r") as h5:
        ds = h5.get(JETS)
        if not isinstance(ds, h5py.Dataset) or ds.dtype.names is None:
            raise ValueError(
                f"{path}: no dataset '{JETS}', expected the predictions of 'salt test'"
            )
        names = list(ds.dtype.names)
        found = find_taggers(names)
        if not found:
            raise ValueError(
                f"{path}: '{JETS}' has no tagger fields, expected <tagger>_pb and <tagger>_pu"
            )
        wanted = list(taggers) if taggers else list(found)
        for tagger in wanted:
            if tagger not in found:
                raise ValueError(
                    f"{path}: '{JETS}' has no fields of tagger '{tagger}' "
                    f"(expected {tagger}_pb, {tagger}_pu; taggers found: {list(found)})"
                )
        stored = stored_class_names(ds)
        recorded_map = stored_label_map(ds)
        if class_names is not None:
            check_class_attribute(ds, path, class_names)
            classes = list(class_names)
        else:
            classes = stored or [f"{f}jets" for f in found[wanted[0]]]
        label = label_field or _default_label_field(names, stored is not None)
        if label not in names:
            raise ValueError(f"{path}: '{JETS}' has no field '{label}', expected the truth label")
        prob_fields = {t: {f: f"{t}_p{f}" for f in found[t]} for t in wanted}
        read = [label, *(f for fields in prob_fields.values() for f in fields.values())]
        if PT_FIELD in names:
            read.append(PT_FIELD)
        data = ds.fields(list(dict.fromkeys(read)))[()]
    if label_map is None and recorded_map is not None and recorded_map[0] == label:
        label_map = recorded_map[1]
    truth = truth_flavours_from_labels(data[label], label, classes, label_map)
    missing = [f for f in (SIGNAL, "u") if not (truth == f).any()]
    if missing:
        raise ValueError(
            f"{path}: '{label}' has no {' or '.join(missing)} jets, expected both b and u"
        )
    probs = {
        t: {f: np.asarray(data[name]) for f, name in fields.items()}
        for t, fields in prob_fields.items()
    }
    pt = pt_in_gev(data[PT_FIELD], path) if PT_FIELD in names else None
    return Predictions(
        path, truth, probs, label, classes, pt, list(found), dict(label_map) if label_map else None
    )


def present_backgrounds(truth: np.ndarray) -> list[str]:
    """Background flavours with at least one jet, in reporting order."""
    return [f for f in BACKGROUNDS if (truth == f).any()]
