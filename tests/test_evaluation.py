"""Tests for the flavour-tagging evaluation: metrics against hand computations, files written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from salt.evaluation import evaluate
from salt.evaluation.evaluate import (
    baseline_ip_discriminant,
    evaluate_predictions,
    truth_flavours_from_labels,
)
from salt.evaluation.metrics import (
    b_discriminant,
    compute_metrics,
    efficiency_cut,
    flavour_short_name,
    rejection,
    rejection_curve,
    roc_auc,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASSES = ["bjets", "cjets", "ujets"]


def write_predictions(
    path: Path,
    n: int = 600,
    classes: list[str] = CLASSES,
    tagger: str = "GN2",
    label_field: str = "flavour_label",
    seed: int = 0,
) -> np.ndarray:
    """A predictions file whose tagger is informative but imperfect; returns the class indices."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(classes), n)
    logits = rng.normal(size=(n, len(classes))) + 1.0 * np.eye(len(classes))[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    short = [flavour_short_name(c) for c in classes]
    hadron_code = {"b": 5, "c": 4, "u": 0, "tau": 15}
    dtype = [(f"{tagger}_p{s}", "f4") for s in short]
    dtype += [(label_field, "i4"), ("pt", "f4"), ("eta", "f4")]
    jets = np.zeros(n, dtype=dtype)
    for i, s in enumerate(short):
        jets[f"{tagger}_p{s}"] = probs[:, i]
    if label_field == "HadronConeExclTruthLabelID":
        jets[label_field] = np.asarray([hadron_code[short[i]] for i in labels])
    else:
        jets[label_field] = labels
    jets["pt"] = rng.uniform(20e3, 250e3, n)
    jets["eta"] = rng.uniform(-2.5, 2.5, n)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("jets", data=jets)
    return labels


def write_tracks(path: Path, d0sig: np.ndarray, valid: np.ndarray) -> None:
    tracks = np.zeros(d0sig.shape, dtype=[("IP3D_signed_d0_significance", "f2"), ("valid", "?")])
    tracks["IP3D_signed_d0_significance"] = d0sig
    tracks["valid"] = valid
    with h5py.File(path, "w") as h5:
        h5.create_dataset("jets", data=np.zeros(d0sig.shape[0], dtype=[("pt", "f4")]))
        h5.create_dataset("tracks", data=tracks)


# --- metrics ----------------------------------------------------------------------------------


def test_flavour_short_name() -> None:
    assert [flavour_short_name(c) for c in ["bjets", "cjets", "ujets", "taujets"]] == [
        "b",
        "c",
        "u",
        "tau",
    ]
    assert flavour_short_name("light") == "u"
    assert flavour_short_name("ljets") == "u"
    assert flavour_short_name("b") == "b"
    with pytest.raises(ValueError, match="class name"):
        flavour_short_name("jets")


def test_b_discriminant_matches_hand_computation() -> None:
    probs = {"b": np.array([0.6, 0.1]), "c": np.array([0.3, 0.2]), "u": np.array([0.1, 0.7])}
    disc = b_discriminant(probs, fc=0.2, eps=0.0)
    expected = [math.log(0.6 / (0.2 * 0.3 + 0.8 * 0.1)), math.log(0.1 / (0.2 * 0.2 + 0.8 * 0.7))]
    np.testing.assert_allclose(disc, expected, rtol=1e-12)

    with_tau = {"b": np.array([0.5]), "c": np.array([0.2]), "u": np.array([0.2])}
    with_tau["tau"] = np.array([0.1])
    disc = b_discriminant(with_tau, fc=0.2, ftau=0.1, eps=0.0)
    np.testing.assert_allclose(disc, [math.log(0.5 / (0.04 + 0.01 + 0.7 * 0.2))], rtol=1e-12)


def test_b_discriminant_rejects_fraction_without_class() -> None:
    probs = {"b": np.array([0.5]), "u": np.array([0.5])}
    with pytest.raises(ValueError, match=r"fc=0\.2"):
        b_discriminant(probs, fc=0.2)
    with pytest.raises(ValueError, match=r"ftau=0\.1"):
        b_discriminant(probs, fc=0.0, ftau=0.1)
    assert b_discriminant(probs, fc=0.0)[0] == pytest.approx(0.0)


def test_efficiency_cut_and_rejection_on_known_values() -> None:
    signal = np.array([5.0, 1.0, 3.0, 2.0, 4.0])
    # 40% quantile of 1..5 with linear interpolation: 2 + 0.6 * (3 - 2).
    cut = efficiency_cut(signal, 0.6)
    assert cut == pytest.approx(2.6)
    assert np.mean(signal > cut) == pytest.approx(0.6)
    background = np.array([0.0, 1.0, 2.0, 2.7, 3.0])
    # 2 of 5 background jets pass -> rejection 5 / 2.
    assert rejection(background, cut) == pytest.approx(2.5)
    assert rejection(background, 10.0) == math.inf
    # Tagged means strictly above the cut: a jet sitting on it is not tagged.
    assert rejection(np.array([1.0, 2.0, 3.0]), 2.0) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="efficiencies"):
        efficiency_cut(signal, 1.5)


def test_roc_auc_equals_pairwise_count() -> None:
    rng = np.random.default_rng(1)
    # Rounded values so that ties between signal and background occur.
    sig = np.round(rng.normal(0.5, 1.0, 300), 1)
    bkg = np.round(rng.normal(0.0, 1.0, 200), 1)
    pairs = (sig[:, None] > bkg[None, :]) + 0.5 * (sig[:, None] == bkg[None, :])
    assert (sig[:, None] == bkg[None, :]).any()
    assert roc_auc(sig, bkg) == pytest.approx(pairs.mean(), abs=1e-12)
    assert roc_auc(sig + 100.0, bkg) == 1.0
    assert roc_auc(bkg, bkg) == pytest.approx(0.5)


def test_perfect_and_random_taggers() -> None:
    rng = np.random.default_rng(2)
    n = 20000
    truth = np.array(["b", "c", "u"])[rng.integers(0, 3, n)]
    is_b = truth == "b"
    perfect = {"b": np.where(is_b, 0.98, 0.01), "c": np.full(n, 0.01), "u": np.full(n, 0.01)}
    perfect["u"] = np.where(is_b, 0.01, 0.98)
    metrics = compute_metrics(truth, perfect)
    assert metrics["auc"] == {"b_vs_c": 1.0, "b_vs_u": 1.0}
    for wp in metrics["working_points"].values():
        assert wp["c_rejection"] is None and wp["u_rejection"] is None
    json.dumps(metrics, allow_nan=False)

    effs = np.array([0.5, 0.7, 0.77])
    random_disc = rng.uniform(size=n)
    rej = rejection_curve(random_disc[is_b], random_disc[truth == "u"], effs)
    np.testing.assert_allclose(rej, 1.0 / effs, rtol=0.05)
    assert roc_auc(random_disc[is_b], random_disc[truth == "u"]) == pytest.approx(0.5, abs=0.02)


def test_compute_metrics_structure_and_baselines() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    truth = np.array(["b", "c", "u", "tau"])[rng.integers(0, 4, n)]
    raw = rng.uniform(size=(n, 4)) + 0.5 * (truth[:, None] == np.array(["b", "c", "u", "tau"]))
    probs = {f: raw[:, i] / raw.sum(axis=1) for i, f in enumerate(["b", "c", "u", "tau"])}
    baseline = np.where(truth == "b", 1.0, 0.0) + rng.normal(size=n)
    metrics = compute_metrics(truth, probs, fc=0.1, baselines={"base": baseline}, ftau=0.05)
    assert metrics["n_jets"] == n
    assert sum(metrics["n_per_flavour"].values()) == n
    assert list(metrics["n_per_flavour"]) == ["b", "c", "u", "tau"]
    assert set(metrics["working_points"]) == {"0.60", "0.70", "0.77", "0.85"}
    wp = metrics["working_points"]["0.70"]
    disc = b_discriminant(probs, fc=0.1, ftau=0.05)
    assert np.mean(disc[truth == "b"] > wp["cut"]) == pytest.approx(0.7, abs=1e-3)
    assert wp["u_rejection"] == pytest.approx(rejection(disc[truth == "u"], wp["cut"]))
    keys = {f"{f}_rejection{s}" for f in ("c", "u", "tau") for s in ("", "_uncertainty")}
    assert set(wp) == {"cut", *keys}
    n_u = metrics["n_per_flavour"]["u"]
    u_rej = wp["u_rejection"]
    # binomial: sqrt(e (1 - e) / n) / e^2 with e = 1 / rejection
    eff = 1.0 / u_rej
    expected = math.sqrt(eff * (1 - eff) / n_u) / eff**2
    assert wp["u_rejection_uncertainty"] == pytest.approx(expected, rel=1e-9)
    # Tighter working points reject more.
    u_rej = [w["u_rejection"] for w in metrics["working_points"].values()]
    assert u_rej == sorted(u_rej, reverse=True)
    assert set(metrics["auc"]) == {"b_vs_c", "b_vs_u", "b_vs_tau"}
    base = metrics["baselines"]["base"]
    assert 0.5 < base["auc"]["b_vs_u"] < metrics["auc"]["b_vs_u"]
    json.dumps(metrics, allow_nan=False)


def test_compute_metrics_bad_input() -> None:
    probs = {"b": np.full(4, 0.5), "u": np.full(4, 0.5)}
    with pytest.raises(ValueError, match="no b jets"):
        compute_metrics(np.array(["u", "u", "c", "c"]), probs, fc=0.0)
    with pytest.raises(ValueError, match="short flavour names"):
        compute_metrics(np.array([5, 0, 5, 0]), probs, fc=0.0)
    with pytest.raises(ValueError, match="one value per jet"):
        compute_metrics(np.array(["b", "u", "b"]), probs, fc=0.0)


# --- baseline ---------------------------------------------------------------------------------


def test_ip_baseline_matches_hand_computation(tmp_path: Path, monkeypatch) -> None:
    d0sig = np.array(
        [
            [5.0, -1.0, 3.0, 2.0, 9.0],  # invalid 9 ignored: 5 + 3 + 2
            [1.0, -2.0, 7.0, 7.0, 7.0],  # two valid tracks, the third counts as 0
            [4.0, 4.0, 4.0, 4.0, 4.0],  # no valid tracks
            [-3.0, -1.0, -2.0, -4.0, 0.5],  # negative significances still count
        ]
    )
    valid = np.array(
        [
            [True, True, True, True, False],
            [True, True, False, False, False],
            [False] * 5,
            [True] * 5,
        ]
    )
    path = tmp_path / "test.h5"
    write_tracks(path, d0sig, valid)
    expected = [10.0, -1.0, 0.0, -2.5]
    np.testing.assert_allclose(baseline_ip_discriminant(path), expected)
    np.testing.assert_allclose(baseline_ip_discriminant(path, num_jets=2), expected[:2])
    np.testing.assert_allclose(baseline_ip_discriminant(path, n=1), [5.0, 1.0, 0.0, 0.5])
    # One jet per block must give the same answer as one block for all.
    monkeypatch.setattr(evaluate, "_BLOCK_ENTRIES", 1)
    np.testing.assert_allclose(baseline_ip_discriminant(path), expected)
    with pytest.raises(ValueError, match="expected at least 5"):
        baseline_ip_discriminant(path, num_jets=5)
    with pytest.raises(ValueError, match="no field 'd0'"):
        baseline_ip_discriminant(path, field="d0")
    with pytest.raises(FileNotFoundError, match=r"missing\.h5"):
        baseline_ip_discriminant(tmp_path / "missing.h5")


# --- evaluate_predictions ---------------------------------------------------------------------


def test_evaluate_predictions_writes_outputs(tmp_path: Path) -> None:
    pred = tmp_path / "preds.h5"
    labels = write_predictions(pred)
    rng = np.random.default_rng(4)
    # The test file holds 50 more jets than were predicted: rows align with its first ones.
    shift = np.concatenate([3.0 * (labels == 0), np.zeros(50)])[:, None]
    d0sig = rng.normal(size=(labels.size + 50, 8)) + shift
    write_tracks(tmp_path / "test.h5", d0sig, np.ones(d0sig.shape, dtype=bool))

    out = tmp_path / "eval"
    returned = evaluate_predictions(pred, out, "GN2", CLASSES, test_file=tmp_path / "test.h5")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == returned
    assert metrics["tagger"] == "GN2"
    assert metrics["n_jets"] == labels.size
    assert metrics["n_per_flavour"] == {
        f: int((labels == i).sum()) for i, f in enumerate(["b", "c", "u"])
    }
    assert metrics["fc"] == 0.2
    for wp in metrics["working_points"].values():
        assert set(wp) == {
            "cut",
            "c_rejection",
            "u_rejection",
            "c_rejection_uncertainty",
            "u_rejection_uncertainty",
        }
        assert wp["c_rejection"] >= 1.0 and wp["u_rejection"] >= 1.0
    for auc in metrics["auc"].values():
        assert 0.7 < auc <= 1.0
    (baseline,) = metrics["baselines"].values()
    assert baseline["auc"]["b_vs_u"] > 0.9  # b-jets were given the large significances
    # the file has the jet pt: efficiency and rejections versus pT at 70 % too
    assert metrics["pt"]["working_point"] == 0.7
    b_eff = metrics["pt"]["flavours"]["b"]
    assert sum(b_eff["n_jets"]) == int((labels == 0).sum())
    pngs = ["GN2_discriminant.png", "GN2_rejection.png", "GN2_pt_b_efficiency.png"]
    pngs += ["GN2_pt_c_rejection.png", "GN2_pt_u_rejection.png"]
    for name in pngs:
        data = (out / name).read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC)
    assert not list(out.glob(".*tmp"))


def test_evaluate_predictions_refuses_to_overwrite(tmp_path: Path) -> None:
    pred = tmp_path / "preds.h5"
    write_predictions(pred, n=200)
    out = tmp_path / "eval"
    evaluate_predictions(pred, out, "GN2", CLASSES)
    before = (out / "metrics.json").read_text()
    with pytest.raises(FileExistsError, match=r"metrics\.json.*--overwrite"):
        evaluate_predictions(pred, out, "GN2", CLASSES, fc=0.05)
    assert (out / "metrics.json").read_text() == before
    metrics = evaluate_predictions(pred, out, "GN2", CLASSES, fc=0.05, overwrite=True)
    assert json.loads((out / "metrics.json").read_text())["fc"] == metrics["fc"] == 0.05


def test_evaluate_predictions_hadron_labels_with_tau(tmp_path: Path) -> None:
    classes = ["bjets", "cjets", "ujets", "taujets"]
    pred = tmp_path / "preds.h5"
    labels = write_predictions(
        pred, n=400, classes=classes, label_field="HadronConeExclTruthLabelID"
    )
    metrics = evaluate_predictions(
        pred, tmp_path / "eval", "GN2", classes, label_field="HadronConeExclTruthLabelID", ftau=0.1
    )
    assert metrics["n_per_flavour"]["tau"] == int((labels == 3).sum())
    assert metrics["ftau"] == 0.1
    assert set(metrics["auc"]) == {"b_vs_c", "b_vs_u", "b_vs_tau"}
    assert "tau_rejection" in metrics["working_points"]["0.77"]


def test_evaluate_predictions_without_c_class(tmp_path: Path) -> None:
    pred = tmp_path / "preds.h5"
    write_predictions(pred, n=200, classes=["bjets", "ujets"])
    metrics = evaluate_predictions(pred, tmp_path / "eval", "GN2", ["bjets", "ujets"])
    assert metrics["fc"] == 0.0
    assert set(metrics["auc"]) == {"b_vs_u"}
    assert set(metrics["working_points"]["0.70"]) == {
        "cut",
        "u_rejection",
        "u_rejection_uncertainty",
    }


def test_truth_flavours_from_labels() -> None:
    hadron = truth_flavours_from_labels(
        np.array([5, 4, 0, 15, 3]), "HadronConeExclTruthLabelID", []
    )
    assert hadron.tolist() == ["b", "c", "u", "tau", "other"]
    index = truth_flavours_from_labels(np.array([2, 0, 1]), "flavour_label", CLASSES)
    assert index.tolist() == ["u", "b", "c"]
    with pytest.raises(ValueError, match="flavour_label"):
        truth_flavours_from_labels(np.array([0, 3]), "flavour_label", CLASSES)


def test_evaluate_predictions_errors(tmp_path: Path) -> None:
    pred = tmp_path / "preds.h5"
    write_predictions(pred, n=100)
    out = tmp_path / "eval"
    with pytest.raises(ValueError, match=r"no fields of tagger 'DL1'.*found: \['GN2'\]"):
        evaluate_predictions(pred, out, "DL1", CLASSES)
    with pytest.raises(ValueError, match="no field 'GN2_ptau'"):
        evaluate_predictions(pred, out, "GN2", [*CLASSES, "taujets"])
    with pytest.raises(ValueError, match="expected at least bjets and ujets"):
        evaluate_predictions(pred, out, "GN2", ["cjets", "ujets"])
    with pytest.raises(ValueError, match="no field 'truth'"):
        evaluate_predictions(pred, out, "GN2", CLASSES, label_field="truth")
    with pytest.raises(FileNotFoundError, match=r"nope\.h5"):
        evaluate_predictions(tmp_path / "nope.h5", out, "GN2", CLASSES)

    no_b = tmp_path / "no_b.h5"
    write_predictions(no_b, n=100)
    with h5py.File(no_b, "r+") as h5:
        jets = h5["jets"][()]
        jets["flavour_label"][jets["flavour_label"] == 0] = 2
        h5["jets"][...] = jets
    with pytest.raises(ValueError, match=r"no_b\.h5.*no b jets"):
        evaluate_predictions(no_b, out, "GN2", CLASSES)

    with h5py.File(pred, "r+") as h5:
        h5["jets"].attrs["flavour_label"] = ["cjets", "bjets", "ujets"]
    with pytest.raises(ValueError, match="attribute flavour_label"):
        evaluate_predictions(pred, out, "GN2", CLASSES)
    assert not out.exists()
