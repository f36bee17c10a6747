"""salt norm-dict: means and stds over valid constituents, inverse-frequency class weights."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from salt.cli.main import main
from salt.data.norm_stats import RunningMoments


def test_running_moments_match_numpy_over_blocks():
    rng = np.random.default_rng(0)
    values = rng.normal(1e4, 3.0, size=10_001)  # a large offset: naive sums lose digits
    moments = RunningMoments()
    for block in np.array_split(values, 7):
        moments.add(block)
    moments.add(np.array([np.nan, np.inf]))
    assert moments.count == values.size and moments.non_finite == 2
    assert moments.mean == pytest.approx(values.mean(), rel=1e-12)
    assert moments.std == pytest.approx(values.std(), rel=1e-9)


def write_config(tmp_path: Path, files: list[Path], label_map: bool = False) -> Path:
    task = {
        "name": "jets_classification",
        "input_name": "jets",
        "label": "flavour_label",
        "class_names": ["bjets", "cjets", "ujets"],
        "dense_config": {"hidden_layers": [8]},
    }
    if label_map:
        task["label_map"] = {0: 0, 1: 1}  # label 2 is dropped
        task["class_names"] = ["bjets", "cjets"]
    config = {
        "model": {
            "model": {
                "class_path": "salt.models.SaltModel",
                "init_args": {
                    "tasks": {  # salt-ml's form is accepted too
                        "class_path": "torch.nn.ModuleList",
                        "init_args": {
                            "modules": [
                                {"class_path": "salt.models.ClassificationTask", "init_args": task}
                            ]
                        },
                    }
                },
            }
        },
        "data": {
            "train_file": [str(f) for f in files],
            "variables": {"jets": ["pt"], "tracks": ["d0", "z0SinTheta"]},
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_norm_dict_and_class_dict_from_a_config(tiny_files, tmp_path: Path):
    files = [tiny_files["train_a"], tiny_files["train_b"]]
    config = write_config(tmp_path, files)
    norm, classes = tmp_path / "out" / "norm.yaml", tmp_path / "out" / "class.yaml"
    args = ["norm-dict", "-c", str(config), "--norm_dict", str(norm), "--class_dict", str(classes)]
    assert main([*args, "--block_size", "64", "--no_progress"]) == 0
    got = yaml.safe_load(norm.read_text())
    jets, d0, valid = [], [], []
    for f in files:
        with h5py.File(f) as h5:
            jets.append(h5["jets"]["pt"])
            d0.append(h5["tracks"]["d0"])
            valid.append(h5["tracks"]["valid"])
    pt = np.concatenate(jets).astype(np.float64)
    d0_valid = np.concatenate(d0)[np.concatenate(valid)].astype(np.float64)
    assert got["jets"]["pt"]["mean"] == pytest.approx(pt.mean())
    assert got["jets"]["pt"]["std"] == pytest.approx(pt.std())
    assert got["tracks"]["d0"]["mean"] == pytest.approx(d0_valid.mean(), rel=1e-6)
    assert got["tracks"]["d0"]["std"] == pytest.approx(d0_valid.std(), rel=1e-6)
    # z0SinTheta is 2.0 on every valid track: constant, written with std 1 (never 0)
    assert got["tracks"]["z0SinTheta"] == {"mean": 2.0, "std": 1.0}
    # 500 jets, label = row % 3: counts 167, 167, 166 -> N / (K n_c)
    weights = yaml.safe_load(classes.read_text())["jets"]["flavour_label"]
    assert weights == pytest.approx([500 / (3 * 167), 500 / (3 * 167), 500 / (3 * 166)])
    # outputs are never replaced without --overwrite
    assert main([*args, "--no_progress"]) == 2
    assert main([*args, "--no_progress", "--overwrite", "--num_jets", "30"]) == 0
    assert yaml.safe_load(classes.read_text())["jets"]["flavour_label"] == [1.0, 1.0, 1.0]


def test_label_map_and_bad_variables(tiny_files, tmp_path: Path, capsys):
    config = write_config(tmp_path, [tiny_files["train_a"]], label_map=True)
    norm, classes = tmp_path / "computed_norm.yaml", tmp_path / "class.yaml"
    base = ["norm-dict", "-c", str(config), "--norm_dict", str(norm), "--no_progress"]
    assert main([*base, "--class_dict", str(classes)]) == 0
    # 300 jets: 100 of each label; label 2 is outside the map and not counted
    assert yaml.safe_load(classes.read_text())["jets"]["flavour_label"] == [1.0, 1.0]
    content = yaml.safe_load(config.read_text())
    content["data"]["variables"]["tracks"].append("nonexistent")
    config.write_text(yaml.safe_dump(content))
    assert main([*base, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "nonexistent" in err and "tracks" in err
