"""Real Lightning DDP on CPU (gloo, 2 processes): one run directory, one ordered predictions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DDP = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]


def salt(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "salt", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)


@pytest.mark.timeout(600)
def test_ddp_fit_and_test_on_two_cpu_processes(demo_dir: Path, tmp_path: Path):
    fit = salt(
        "fit",
        "--config", str(ROOT / "configs" / "GN2.yaml"),
        "--config", str(ROOT / "configs" / "GN2_demo.yaml"),
        "--config", str(ROOT / "configs" / "GN2_noaux.yaml"),
        f"--data.train_file={demo_dir / 'train.h5'}",
        f"--data.val_file={demo_dir / 'val.h5'}",
        f"--data.test_file={demo_dir / 'test.h5'}",
        f"--data.norm_dict={demo_dir / 'norm_dict.yaml'}",
        f"--data.class_dict={demo_dir / 'class_dict.yaml'}",
        "--data.num_train=1000",
        "--data.num_val=300",
        "--data.num_test=777",
        "--data.batch_size=100",
        "--data.num_workers=0",
        "--trainer.max_epochs=2",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
        "--log_suffix=ddp",
        "-n", "ddp",
        *DDP,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    runs = list(tmp_path.iterdir())
    assert [r.name for r in runs] == ["ddp_ddp"]  # the run directory is written once
    run = runs[0]
    ckpts = sorted((run / "ckpts").glob("epoch=*.ckpt"))
    assert len(ckpts) == 2
    # 1000 rows over 2 ranks at batch 100: 5 steps per epoch on each rank
    assert torch.load(ckpts[-1], weights_only=False)["global_step"] == 10

    test = salt(
        "test", "--config", str(run / "config.yaml"), "--trainer.enable_progress_bar=false", *DDP
    )
    assert test.returncode == 0, test.stderr[-3000:]
    (pred,) = (run / "ckpts").glob("*__test_test.h5")
    assert not list((run / "ckpts").glob("*.tmp"))
    with h5py.File(pred) as h5, h5py.File(demo_dir / "test.h5") as ref:
        jets = h5["jets"][:]
        truth = ref["jets"].fields(["pt", "eventNumber"])[:777]
    assert len(jets) == 777
    np.testing.assert_array_equal(jets["pt"], truth["pt"])  # complete and in file order
    assert (run / "evaluation").is_dir()
