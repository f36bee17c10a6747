"""Mass sculpting of light jets: figures on synthetic predictions files with known answers, and
the DisCo demo fragment parsing on top of the demo GN2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from salt.evaluation.sculpting import (
    DEFAULT_MASS_BINS_GEV,
    js_divergence,
    main,
    mass_sculpting,
    sculpting_figures,
)

ROOT = Path(__file__).resolve().parents[1]
CLASSES = [b"bjets", b"cjets", b"ujets", b"taujets"]


def write_predictions(
    path: Path, flavour: np.ndarray, pb: np.ndarray, mass_gev: np.ndarray, tagger: str = "GN2"
) -> Path:
    """A ``salt test``-like file: ``pu = 1 - pb`` (``pc = 0``), mass in MeV, class indices."""
    dtype = [
        ("flavour_label", "i4"),
        ("mass", "f4"),
        (f"{tagger}_pb", "f4"),
        (f"{tagger}_pc", "f4"),
        (f"{tagger}_pu", "f4"),
    ]
    jets = np.zeros(flavour.size, dtype=dtype)
    jets["flavour_label"] = flavour
    jets["mass"] = mass_gev * 1e3
    jets[f"{tagger}_pb"] = pb
    jets[f"{tagger}_pu"] = 1 - pb
    with h5py.File(path, "w") as h5:
        h5.create_dataset("jets", data=jets)
        h5["jets"].attrs["flavour_label"] = CLASSES
    return path


def sample(n: int, light_pb: np.ndarray, rng: np.random.Generator, light_mass: np.ndarray):
    """``n`` b jets with uniform pb, then the given light jets."""
    flavour = np.concatenate([np.zeros(n, int), np.full(light_mass.size, 2)])
    pb = np.concatenate([rng.uniform(0.02, 0.98, n), light_pb])
    return flavour, pb, np.concatenate([np.full(n, 100.0), light_mass])


def test_cut_independent_of_mass_does_not_sculpt(tmp_path: Path):
    rng = np.random.default_rng(1)
    light_mass = rng.lognormal(np.log(6.0), 0.6, 40_000)
    light_pb = rng.uniform(0.02, 0.98, light_mass.size)  # the same as the b jets: no power
    path = write_predictions(tmp_path / "p.h5", *sample(20_000, light_pb, rng, light_mass))
    fig = mass_sculpting(path, working_point=0.5)
    assert abs(fig.n_light_pass / fig.n_light - 0.5) < 0.02
    assert fig.light_rejection == pytest.approx(fig.n_light / fig.n_light_pass)
    assert fig.ks < 1.63 / math.sqrt(fig.n_light_pass) * 0.5  # 99 % band of a random half
    assert fig.ks_pvalue > 0.001
    assert fig.js < 1e-3 and fig.js_null < 1e-3


def test_cut_on_high_mass_sculpts(tmp_path: Path):
    rng = np.random.default_rng(2)
    light_mass = rng.lognormal(np.log(6.0), 0.6, 20_000)
    light_pb = np.where(light_mass > np.quantile(light_mass, 0.8), 0.99, 0.01)
    path = write_predictions(tmp_path / "p.h5", *sample(5_000, light_pb, rng, light_mass))
    fig = mass_sculpting([path], working_point=0.7)
    assert fig.n_light_pass == pytest.approx(4_000, abs=1)  # the top mass fifth
    assert fig.ks == pytest.approx(0.8, abs=1e-3)  # F_all = 0.8 where F_pass starts rising
    assert fig.ks_pvalue < 1e-10
    assert fig.js > 0.5 > 10 * fig.js_null


def test_tiny_case_by_hand(tmp_path: Path):
    # b jets at D_b of pb 0.1 .. 0.9: the 70 % cut lies between the lowest three; light jets of
    # mass 1, 2, 3, 4 GeV of which only the two heaviest pass
    flavour = np.array([0] * 9 + [2] * 4)
    pb = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.05, 0.05, 0.95, 0.95])
    mass = np.array([50.0] * 9 + [1.0, 2.0, 3.0, 4.0])
    path = write_predictions(tmp_path / "p.h5", flavour, pb, mass)
    fig = mass_sculpting(path, working_point=0.7, null_draws=0)
    assert (fig.n_light, fig.n_light_pass, fig.light_rejection) == (4, 2, 2.0)
    assert fig.ks == pytest.approx(0.5)  # F_all(2) = 1/2, F_pass(2) = 0
    # bins [0,2) [2,3) [3,4) [4,5): P = 1/4 each, Q = 0, 0, 1/2, 1/2, M = 1/8, 1/8, 3/8, 3/8
    kl_pm = 0.5 * math.log2(2) + 0.5 * math.log2(2 / 3)
    kl_qm = math.log2(4 / 3)
    assert fig.js == pytest.approx(0.5 * (kl_pm + kl_qm))
    assert math.isnan(fig.js_null)
    assert fig.as_dict()["js_null"] is None


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    flavour = np.array([0, 0, 0, 0, 2, 2, 2])
    pb = np.array([0.2, 0.4, 0.6, 0.8, 0.1, 0.9, 0.95])
    path = write_predictions(tmp_path / "p.h5", flavour, pb, np.arange(7.0), tagger="GN2_disco")
    main([str(path), str(path), "--working_point", "0.5"])  # a file twice: pooled
    printed = json.loads(capsys.readouterr().out)
    assert (printed["n_light"], printed["n_light_pass"]) == (6, 4)
    assert printed["light_rejection"] == pytest.approx(1.5)


def test_js_divergence_bounds():
    assert js_divergence(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(1.0)
    assert js_divergence(np.array([2.0, 2.0]), np.array([1.0, 1.0])) == pytest.approx(0.0)


def test_no_light_jet_passes():
    disc = np.array([1.0, 2.0, 3.0, -5.0, -6.0])
    fig = sculpting_figures(disc, np.array(["b", "b", "b", "u", "u"]), np.ones(5), 0.7)
    assert fig.n_light_pass == 0 and math.isinf(fig.light_rejection) and math.isnan(fig.ks)


def test_errors(tmp_path: Path):
    path = tmp_path / "p.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("jets", data=np.zeros(3, dtype=[("GN2_pb", "f4"), ("GN2_pu", "f4")]))
    with pytest.raises(ValueError, match="mass"):
        mass_sculpting(path)
    with pytest.raises(ValueError, match="increasing"):
        sculpting_figures(np.zeros(2), np.array(["b", "u"]), np.ones(2), bins=[1.0, 1.0])
    assert list(DEFAULT_MASS_BINS_GEV) == sorted(DEFAULT_MASS_BINS_GEV)


def test_disco_fragment_parses(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    from salt.cli.main import main

    monkeypatch.chdir(ROOT)
    configs = ["GN2.yaml", "GN2_demo.yaml", "GN2_disco.yaml"]
    args = [a for c in configs for a in ("--config", str(ROOT / "configs" / c))]
    with pytest.raises(SystemExit) as info:
        main(["fit", *args, "--print_config"])
    assert info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["name"] == "GN2_disco"
    (disco,) = printed["model"]["regularisers"]
    assert disco["class_path"] == "salt.losses.DisCo"
    assert disco["init_args"]["variables"] == ["mass"]
    assert disco["init_args"]["strength"] > 0
    assert "mass" in printed["evaluation"]["jet_fields"]
    assert printed["model"]["model"]["init_args"]["encoder"]["init_args"]["embed_dim"] == 64
