"""A classifier trained with a ``label_map`` on atlas-ftag-tools' mock files (``flavour_label``
holds 0/4/5): fit, test and evaluation map the stored labels alike, and labels outside the map
are counted and reported once."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from ftag import get_mock_file

from salt.cli.main import main
from salt.evaluation.predictions import (
    LABEL_MAP_ATTRIBUTE,
    OTHER,
    label_map_attribute,
    read_predictions,
    truth_flavours_from_labels,
)

CLASSES = ["bjets", "cjets", "ujets"]
LABEL_MAP = {5: 0, 4: 1, 0: 2}


def mock_files(folder: Path) -> dict[str, Path]:
    files = {}
    for split, jets in (("train", 200), ("val", 100), ("test", 150)):
        _, h5 = get_mock_file(num_jets=jets, fname=str(folder / f"{split}.h5"), num_tracks=8)
        h5.close()
        files[split] = folder / f"{split}.h5"
    return files


def write_config(folder: Path, files: dict[str, Path], classes: list[str], label_map: dict) -> Path:
    task = {
        "class_path": "salt.models.ClassificationTask",
        "init_args": {
            "name": "jets_classification",
            "input_name": "jets",
            "label": "flavour_label",
            "class_names": classes,
            "label_map": label_map,
            "dense_config": {"hidden_layers": [8]},
        },
    }
    config = {
        "name": "mock",
        "model": {
            "model": {
                "class_path": "salt.models.SaltModel",
                "init_args": {
                    "init_nets": [
                        {"input_name": "tracks", "dense_config": {"output_size": 8}},
                    ],
                    "pool_net": {"class_path": "salt.models.GlobalAttentionPooling"},
                    "tasks": [task],
                },
            }
        },
        "data": {
            "variables": {"jets": ["pt_btagJes", "eta_btagJes"], "tracks": ["d0", "z0SinTheta"]},
            "train_file": str(files["train"]),
            "val_file": str(files["val"]),
            "test_file": str(files["test"]),
            "norm_dict": str(folder / "norm_dict.yaml"),
            "batch_size": 50,
            "num_workers": 0,
        },
        "trainer": {
            "max_epochs": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(folder / "logs"),
        },
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def fit_and_test(folder: Path, classes: list[str], label_map: dict) -> tuple[Path, Path]:
    files = mock_files(folder)
    config = write_config(folder, files, classes, label_map)
    main(["norm-dict", "-c", str(config), "--norm_dict", str(folder / "norm_dict.yaml")])
    main(["fit", "-c", str(config), "--log_suffix=run", "-n", "mock"])
    run = folder / "logs" / "mock_run"
    main(["test", "-c", str(run / "config.yaml")])
    (predictions,) = (run / "ckpts").glob("*__test_test.h5")
    return run, predictions


@pytest.mark.slow
def test_fit_test_and_evaluate_with_label_map(tmp_path: Path):
    run, predictions = fit_and_test(tmp_path, CLASSES, LABEL_MAP)
    with h5py.File(predictions, "r") as h5:
        jets = h5["jets"]
        recorded = json.loads(jets.attrs[LABEL_MAP_ATTRIBUTE])
        stored = jets["flavour_label"]  # carried unchanged from the test file
    assert recorded == {"field": "flavour_label", "map": {"5": 0, "4": 1, "0": 2}}
    with h5py.File(run.parent.parent / "test.h5", "r") as h5:
        np.testing.assert_array_equal(stored, h5["jets"]["flavour_label"])
    (metrics_file,) = (run / "evaluation").glob("*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    expected = {f: int((stored == code).sum()) for code, f in ((5, "b"), (4, "c"), (0, "u"))}
    assert metrics["n_per_flavour"] == expected
    assert metrics["n_jets"] == 150
    assert metrics["label_map"] == {"5": 0, "4": 1, "0": 2}
    # salt evaluate reads the map from the file alone
    out = tmp_path / "again"
    main(["evaluate", str(predictions), "--tagger", "mock", "--out", str(out)])
    assert json.loads((out / "metrics.json").read_text())["n_per_flavour"] == expected


@pytest.mark.slow
def test_labels_outside_the_map_are_counted_and_reported_once(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO)
    _, predictions = fit_and_test(tmp_path, ["bjets", "ujets"], {5: 0, 0: 1})
    with h5py.File(predictions, "r") as h5:
        n_c = int((h5["jets"]["flavour_label"] == 4).sum())
    assert n_c > 0
    fit_lines = [r for r in caplog.records if "not in the label_map" in r.getMessage()]
    assert len(fit_lines) == 1 and "[4]" in fit_lines[0].getMessage()
    test_lines = [r for r in caplog.records if "outside the label_map" in r.getMessage()]
    assert len(test_lines) == 1
    assert f"{n_c} of 150 jets" in test_lines[0].getMessage()
    assert f"4: {n_c}" in test_lines[0].getMessage()


def test_truth_through_a_label_map():
    labels = np.array([5, 4, 0, 15, 5, 0], dtype=np.int32)
    truth = truth_flavours_from_labels(labels, "flavour_label", CLASSES, LABEL_MAP)
    assert truth.tolist() == ["b", "c", "u", OTHER, "b", "u"]
    with pytest.raises(ValueError, match=r"label_map targets \[3\] are outside 0\.\.2"):
        truth_flavours_from_labels(labels, "flavour_label", CLASSES, {5: 3})
    with pytest.raises(ValueError, match=r"labels span \[0, 15\].*or a label_map"):
        truth_flavours_from_labels(labels, "flavour_label", CLASSES)


def test_recorded_label_map_is_applied_only_to_its_field(tmp_path: Path):
    path = tmp_path / "preds.h5"
    jets = np.zeros(4, dtype=[("flavour_label", "i4"), ("t_pb", "f4"), ("t_pu", "f4")])
    jets["flavour_label"] = [5, 0, 5, 7]
    with h5py.File(path, "w") as h5:
        ds = h5.create_dataset("jets", data=jets)
        ds.attrs["flavour_label"] = np.array(["bjets", "ujets"], dtype="S")
        ds.attrs[LABEL_MAP_ATTRIBUTE] = label_map_attribute("flavour_label", {5: 0, 0: 1})
    preds = read_predictions(path)
    assert preds.truth.tolist() == ["b", "u", "b", OTHER]
    assert preds.label_map == {5: 0, 0: 1}
    with h5py.File(path, "a") as h5:
        h5["jets"].attrs[LABEL_MAP_ATTRIBUTE] = "not json"
    with pytest.raises(ValueError, match="attribute label_map: expected JSON"):
        read_predictions(path)
