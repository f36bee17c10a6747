"""The GPU check script runs its whole sequence (fit, test, export, timing) on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_script_runs_on_cpu(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ACCELERATOR": "cpu",
        "TRAIN": "600",
        "TEST": "300",
        "BATCH": "100",
        "STEPS": "1",
        "MODES": "eager",
        "WORKERS": "0",
        "CONFIGS": "configs/GN2.yaml configs/GN2_demo.yaml",
        "PRECISIONS": "fp32 bf16",
        "BIN": str(Path(sys.executable).parent),
        "COMET_MODE": "offline",
    }
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith("mode"))) + 1 :]
    rows = [line.split() for line in table]
    assert [row[:2] for row in rows] == [["eager", "fp32"], ["eager", "bf16"]]
    assert all(float(row[2].replace(",", "")) > 0 for row in rows)
    run = next((tmp_path / "logs").glob("gpu_check_*"))
    assert list((run / "ckpts").glob("*__test_*.h5"))
    assert list(run.glob("*.onnx"))
