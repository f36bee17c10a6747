"""salt fit -> salt test on a tiny generated dataset, through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from salt.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def data_args(demo: Path) -> list[str]:
    return [
        f"--data.train_file={demo / 'train.h5'}",
        f"--data.val_file={demo / 'val.h5'}",
        f"--data.test_file={demo / 'test.h5'}",
        f"--data.norm_dict={demo / 'norm_dict.yaml'}",
        f"--data.class_dict={demo / 'class_dict.yaml'}",
    ]


def tiny_model_args() -> list[str]:
    return [
        "--config",
        str(ROOT / "configs" / "GN2.yaml"),
        "--config",
        str(ROOT / "configs" / "GN2_demo.yaml"),
        "--data.batch_size=250",
        "--data.num_workers=0",
        "--data.num_train=1000",
        "--data.num_val=500",
        "--trainer.max_epochs=2",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]


@pytest.fixture(scope="module")
def trained_run(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("logs")
    args = ["fit", *tiny_model_args(), *data_args(demo_dir)]
    main([*args, f"--trainer.default_root_dir={root}", "--log_suffix=e2e", "-n", "tiny"])
    return root / "tiny_e2e"


def test_fit_writes_a_complete_run_directory(trained_run: Path):
    assert (trained_run / "config.yaml").is_file()
    assert (trained_run / "norm_dict.yaml").is_file() and (
        trained_run / "class_dict.yaml"
    ).is_file()
    ckpts = sorted((trained_run / "ckpts").glob("epoch=*-val_loss=*.ckpt"))
    assert len(ckpts) == 2
    meta = yaml.safe_load((trained_run / "metadata.yaml").read_text())
    assert meta["status"] == "finished"
    assert meta["num_rows"] == {"train": 1000, "val": 500}
    assert meta["trainable_parameters"] > 1000
    assert {"salt", "torch", "lightning"} <= set(meta["versions"])
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    init = config["model"]["model"]["init_args"]["init_nets"][0]["init_args"]
    assert init["dense_config"]["input_size"] == 19 + 2  # derived: track + jet variables
    task = config["model"]["model"]["init_args"]["tasks"][0]["init_args"]
    assert task["class_names"] == ["bjets", "cjets", "ujets", "taujets"]  # from the file
    assert task["dense_config"]["input_size"] == 64


def test_test_writes_predictions_metrics_and_plots(
    trained_run: Path, demo_dir: Path, tmp_path, capsys
):
    # from another working directory: the saved config is all salt test needs
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        main(
            [
                "test",
                "--config",
                str(trained_run / "config.yaml"),
                "--trainer.enable_progress_bar=false",
            ]
        )
    finally:
        os.chdir(cwd)
    preds = list((trained_run / "ckpts").glob("*__test_test.h5"))
    assert len(preds) == 1
    best = min(
        (trained_run / "ckpts").glob("epoch=*.ckpt"), key=lambda p: float(p.stem.split("=")[-1])
    )
    assert preds[0].name == f"{best.stem}__test_test.h5"
    with h5py.File(preds[0]) as h5, h5py.File(demo_dir / "test.h5") as test:
        jets = h5["jets"][:]
        truth = test["jets"].fields(["flavour_label", "pt"])[:]
    assert len(jets) == len(truth) == 1000
    for field in ("tiny_pb", "tiny_pc", "tiny_pu", "tiny_ptau", "flavour_label", "pt"):
        assert field in jets.dtype.names
    probs = np.stack([jets[f"tiny_p{x}"] for x in ("b", "c", "u", "tau")], axis=1)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(jets["flavour_label"], truth["flavour_label"])  # row aligned
    np.testing.assert_array_equal(jets["pt"], truth["pt"])
    eval_dir = trained_run / "evaluation" / f"{best.stem}__test_test"
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["n_jets"] == 1000
    assert (eval_dir / "tiny_discriminant.png").stat().st_size > 1000
    assert (eval_dir / "tiny_rejection.png").stat().st_size > 1000
    # a second test refuses to overwrite the predictions: one line, exit code 2
    before = preds[0].stat().st_mtime_ns
    assert main(["test", "--config", str(trained_run / "config.yaml")]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("salt: error:") and "--overwrite" in message
    assert preds[0].stat().st_mtime_ns == before


def test_second_fit_into_same_run_needs_force(trained_run: Path, demo_dir: Path, capsys):
    args = ["fit", *tiny_model_args(), *data_args(demo_dir)]
    root = f"--trainer.default_root_dir={trained_run.parent}"
    before = {p: p.stat().st_mtime_ns for p in trained_run.rglob("*")}
    assert main([*args, root, "--log_suffix=e2e", "-n", "tiny"]) == 2
    assert "--force" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in trained_run.rglob("*")} == before


def test_print_config_shows_derived_sizes(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(ROOT / "configs" / "GN2.yaml"), "--print_config"])
    assert info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    model = printed["model"]["model"]["init_args"]
    assert model["init_nets"][0]["init_args"]["dense_config"]["input_size"] == 21
    assert model["pool_net"]["init_args"]["input_size"] == 128
    assert model["tasks"][0]["init_args"]["dense_config"]["input_size"] == 128
    assert model["encoder"]["init_args"]["num_layers"] == 4


def test_compiled_fit_checkpoint_evaluates(demo_dir: Path, tmp_path: Path):
    # the eager backend keeps the test fast; it runs the same dynamo capture as inductor
    args = ["fit", *tiny_model_args(), *data_args(demo_dir), "--config",
            str(ROOT / "configs" / "GN2_noaux.yaml")]  # fmt: skip
    fit = [*args, f"--trainer.default_root_dir={tmp_path}", "--log_suffix=c", "-n", "comp"]
    assert main([*fit, "--compile", "--compile_backend=eager"]) == 0
    run = tmp_path / "comp_c"
    ckpt = next((run / "ckpts").glob("epoch=001-*.ckpt"))
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    assert not [k for k in state if "_orig_mod" in k]  # the same names as an eager model
    test = ["test", "--config", str(run / "config.yaml"), "--trainer.enable_progress_bar=false"]
    assert main(test) == 0
    assert list((run / "ckpts").glob("*__test_test.h5"))
