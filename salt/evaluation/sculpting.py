"""Mass sculpting: how much a b-tagging cut changes the mass distribution of light jets.

A tagger whose output depends on the jet mass turns a smooth background mass spectrum into a
bump when one cuts on it, which fakes a signal in searches that fit the mass. The figures here
compare the mass of the light jets that pass the cut at a b-jet working point with the mass of
all light jets:

- the Kolmogorov-Smirnov distance ``sup_m |F_pass(m) - F_all(m)|`` of the two empirical CDFs
  (unbinned, in [0, 1]), with the p-value of the two-sample KS test of passing against failing
  light jets (disjoint samples, so the test is valid; a mass-independent cut gives a uniform
  p-value);
- the Jensen-Shannon divergence (base 2, so in [0, 1]) of the two normalised histograms in the
  fixed bins :data:`DEFAULT_MASS_BINS_GEV`, and the same divergence for random subsets of the
  same size (``js_null``): with a few tens of passing jets a histogram is noisy, and the JS of a
  mass-independent cut is then well above zero, so the two are to be read together;
- the light rejection at the working point and the number of light jets passing, which says how
  far the other figures can be trusted.

Run as ``python -m salt.evaluation.sculpting PRED_FILE [PRED_FILE ...] [--working_point 0.7]``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from salt.evaluation.evaluate import HADRON_LABEL_FIELD, JETS, truth_flavours_from_labels
from salt.evaluation.metrics import b_discriminant, efficiency_cut, rejection

DEFAULT_MASS_BINS_GEV: tuple[float, ...] = (0, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100)
"""Bin edges (GeV) of the JS histograms: finer where light jets of R = 0.4 sit, 12 bins so that
a few tens of passing jets still fill them. Masses outside go to the first or last bin."""


@dataclass(frozen=True)
class Sculpting:
    """Mass-sculpting figures of light jets at one b-jet working point.

    Attributes:
        working_point: b-jet efficiency of the cut.
        cut: discriminant cut (a jet passes when ``D_b > cut``).
        light_rejection: ``n_light / n_light_pass`` (``inf`` if none pass).
        n_light: light jets with a finite mass.
        n_light_pass: light jets passing the cut.
        ks: KS distance between passing and all light jets' mass (NaN if none pass).
        ks_pvalue: two-sample KS p-value of passing against failing light jets.
        js: JS divergence (bits) of the binned mass of passing and all light jets.
        js_null: mean JS of random subsets of ``n_light_pass`` light jets.
    """

    working_point: float
    cut: float
    light_rejection: float
    n_light: int
    n_light_pass: int
    ks: float
    ks_pvalue: float
    js: float
    js_null: float

    def as_dict(self) -> dict[str, float | int | None]:
        """Plain numbers for JSON (which has no NaN or infinity: those become None)."""
        return {
            k: (v if isinstance(v, int) or math.isfinite(v) else None)
            for k, v in asdict(self).items()
        }


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits of two histograms (normalised here), in [0, 1].

    scipy's ``jensenshannon`` returns the JS *distance*, the square root of the divergence.
    """
    return float(jensenshannon(p, q, base=2) ** 2)


def _histogram(mass: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in ``edges``, with under- and overflow folded into the first and last bins."""
    clipped = np.clip(mass, edges[0], edges[-1])
    return np.histogram(clipped, bins=edges)[0].astype(np.float64)


def sculpting_figures(
    disc: np.ndarray,
    flavours: np.ndarray,
    mass: np.ndarray,
    working_point: float = 0.70,
    bins: Sequence[float] = DEFAULT_MASS_BINS_GEV,
    null_draws: int = 20,
    seed: int = 0,
) -> Sculpting:
    """Sculpting figures from per-jet arrays: discriminant, short flavour name and mass.

    Args:
        disc: b-tagging discriminant per jet.
        flavours: short flavour names (``b``, ``c``, ``u``, ...); b sets the cut, u is measured.
        mass: jet mass, in the units of ``bins``; light jets with a non-finite mass are dropped.
        working_point: b-jet efficiency of the cut.
        bins: increasing histogram edges for the JS divergence.
        null_draws: random subsets averaged in ``js_null`` (0 = skip, NaN).
        seed: seed of those draws, so the figures are reproducible.
    """
    disc = np.asarray(disc, dtype=np.float64).ravel()
    flavours = np.asarray(flavours).astype(str).ravel()
    mass = np.asarray(mass, dtype=np.float64).ravel()
    if not disc.shape == flavours.shape == mass.shape:
        raise ValueError(
            f"disc, flavours and mass: shapes {disc.shape}, {flavours.shape}, {mass.shape}, "
            "expected one value per jet each"
        )
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bins {list(bins)}: expected at least two increasing edges")
    is_b = flavours == "b"
    light = (flavours == "u") & np.isfinite(mass)
    if not is_b.any() or not light.any():
        raise ValueError("flavours: expected b jets and light (u) jets with a finite mass")
    cut = efficiency_cut(disc[is_b], working_point)
    light_disc, light_mass = disc[light], mass[light]
    passing = light_disc > cut
    n_pass = int(passing.sum())
    nan = float("nan")
    ks = ks_p = js = js_null = nan
    if n_pass:
        ks = float(ks_2samp(light_mass[passing], light_mass).statistic)
        if n_pass < light_mass.size:
            ks_p = float(ks_2samp(light_mass[passing], light_mass[~passing]).pvalue)
        reference = _histogram(light_mass, edges)
        js = js_divergence(_histogram(light_mass[passing], edges), reference)
        if null_draws > 0:
            rng = np.random.default_rng(seed)
            draws = [
                js_divergence(
                    _histogram(rng.choice(light_mass, n_pass, replace=False), edges), reference
                )
                for _ in range(null_draws)
            ]
            js_null = float(np.mean(draws))
    return Sculpting(
        working_point=float(working_point),
        cut=cut,
        light_rejection=rejection(light_disc, cut),
        n_light=int(light_mass.size),
        n_light_pass=n_pass,
        ks=ks,
        ks_pvalue=ks_p,
        js=js,
        js_null=js_null,
    )


def _tagger_name(names: Sequence[str], path: Path) -> str:
    """The single ``<tagger>`` with a ``<tagger>_pb`` field; several need ``tagger=``."""
    taggers = [n[: -len("_pb")] for n in names if n.endswith("_pb")]
    if len(taggers) != 1:
        raise ValueError(f"{path}: found taggers {taggers}, expected one (pass tagger=...)")
    return taggers[0]


def read_predictions(
    path: str | Path, tagger: str | None = None, fc: float = 0.2, mass_field: str = "mass"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Discriminant, short flavour names and mass of the jets in a ``salt test`` file.

    The truth is ``HadronConeExclTruthLabelID`` when carried, else ``flavour_label`` with the
    class names of the dataset attribute. ``fc`` becomes 0 for a model without a c class.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions file not found")
    with h5py.File(path, "r") as h5:
        if JETS not in h5:
            raise ValueError(f"{path}: no dataset '{JETS}', expected the output of 'salt test'")
        ds = h5[JETS]
        names = ds.dtype.names or ()
        tagger = tagger or _tagger_name(names, path)
        label_field = HADRON_LABEL_FIELD if HADRON_LABEL_FIELD in names else "flavour_label"
        class_names = [
            c.decode() if isinstance(c, bytes) else str(c)
            for c in np.atleast_1d(ds.attrs.get("flavour_label", []))
        ]
        flavs = {f: f"{tagger}_p{f}" for f in ("b", "c", "u")}
        wanted = [flavs["b"], flavs["u"], mass_field, label_field]
        if flavs["c"] in names:
            wanted.insert(1, flavs["c"])
        missing = [f for f in wanted if f not in names]
        if missing:
            hint = " (salt test --evaluation.jet_fields carries it)"
            raise ValueError(
                f"{path}: '{JETS}' has no field {missing}{hint if mass_field in missing else ''}"
            )
        data = ds.fields(wanted)[()]
    probs = {f: data[name] for f, name in flavs.items() if name in wanted}
    disc = b_discriminant(probs, fc=fc if "c" in probs else 0.0)
    truth = truth_flavours_from_labels(data[label_field], label_field, class_names)
    return disc, truth, np.asarray(data[mass_field], dtype=np.float64)


def mass_sculpting(
    pred_files: str | Path | Sequence[str | Path],
    working_point: float = 0.70,
    fc: float = 0.2,
    tagger: str | None = None,
    mass_field: str = "mass",
    mass_scale: float = 1e-3,
    bins: Sequence[float] = DEFAULT_MASS_BINS_GEV,
    null_draws: int = 20,
    seed: int = 0,
) -> Sculpting:
    """Mass-sculpting figures of light jets from one or more predictions files.

    Several files (e.g. the test and validation samples of one model) are pooled, since a good
    tagger lets only a few tens of light jets pass per 50k jets.

    Args:
        pred_files: predictions file(s) of ``salt test`` that carry ``mass_field``.
        working_point: b-jet efficiency of the cut.
        fc: c-jet fraction of ``D_b = log(pb / (fc pc + (1 - fc) pu))``.
        tagger: model name, the prefix of the ``<tagger>_p<flavour>`` fields; found if unique.
        mass_field: jet mass field.
        mass_scale: multiplies the stored mass to get the units of ``bins`` (FTAG files store
            MeV, the bins are in GeV).
        bins: histogram edges of the JS divergence.
        null_draws: random subsets averaged in ``js_null``.
        seed: seed of those draws.
    """
    paths = [pred_files] if isinstance(pred_files, str | Path) else list(pred_files)
    if not paths:
        raise ValueError("pred_files: empty, expected at least one predictions file")
    parts = [read_predictions(p, tagger, fc, mass_field) for p in paths]
    disc, truth, mass = (np.concatenate(x) for x in zip(*parts))
    return sculpting_figures(disc, truth, mass * mass_scale, working_point, bins, null_draws, seed)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the sculpting figures of predictions files as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pred_files", type=Path, nargs="+", help="files written by 'salt test'")
    parser.add_argument("--working_point", type=float, default=0.70)
    parser.add_argument("--fc", type=float, default=0.2)
    parser.add_argument("--tagger", default=None, help="default: the only <tagger>_pb field")
    parser.add_argument("--mass_field", default="mass")
    parser.add_argument("--mass_scale", type=float, default=1e-3, help="to GeV (MeV files: 1e-3)")
    args = parser.parse_args(argv)
    try:
        figures = mass_sculpting(
            args.pred_files, args.working_point, args.fc, args.tagger, args.mass_field,
            args.mass_scale,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as err:
        parser.exit(1, f"error: {err}\n")
    print(json.dumps(figures.as_dict(), indent=2))


if __name__ == "__main__":
    main()
