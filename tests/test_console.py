"""What a user sees in the terminal: a tiny ``salt fit`` then ``salt test``, as separate
processes with the progress bar, the model summary and the default (offline) Comet logger on.
Third-party chatter is absent; the end-of-fit summary and the test's table and paths are there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import demo_fit_args

from salt.cli.console import is_noise

# lines of the issue the console exists to remove, as they appeared before
NOISE = (
    "litlogger",
    "💡 Tip",
    "Seed set to",
    "GPU available",
    "TPU available",
    "will be deleted",
    "LeafSpec",
    "IterableDataset",
    "weights_only",
    "Total FLOPs",
    "FLOPs",
    "v_num",
    "0.00it/s",
    "COMET",
    "Restoring states",
    "estimate number of stepping batches",
)


def run_salt(args: list[str], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMET_", "SALT_"))}
    done = subprocess.run(
        [sys.executable, "-m", "salt", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def assert_quiet(output: str) -> None:
    for line in output.splitlines():
        assert not is_noise(line), line
        for fragment in NOISE:
            assert fragment not in line, line


@pytest.mark.slow
def test_fit_and_test_console(demo_dir: Path, tmp_path: Path):
    args = [
        a
        for a in demo_fit_args(demo_dir, tmp_path / "logs", "quiet")
        if not a.startswith(("--trainer.enable_", "--trainer.log_every_n_steps"))
    ]
    fit = run_salt([*args, "--trainer.log_every_n_steps=1"], tmp_path)
    assert_quiet(fit)
    run = tmp_path / "logs" / "quiet_run"
    # the model summary (parameters, no FLOPs) and the end summary, last
    assert "trainable parameters" in fit
    summary = fit[fit.index("fit finished:") :]
    assert re.search(r"fit finished: 2 epochs in [\d.]+ s, 600 training jets at [\d,]+ jets/s", fit)
    assert f"run directory:   {run}" in summary
    best = re.search(r"best checkpoint: (\S+) \(val/loss ([\d.]+)\)", summary)
    assert best is not None
    ckpt = Path(best.group(1))
    assert ckpt.is_file() and ckpt.parent == run / "ckpts"
    recorded = float(ckpt.stem.split("val_loss=")[1])
    lowest = min(float(p.stem.split("val_loss=")[1]) for p in ckpt.parent.glob("epoch=*.ckpt"))
    assert recorded == lowest
    assert float(best.group(2)) == pytest.approx(recorded, rel=1e-4)
    archive = re.search(r"comet archive:\s+(\S+\.zip)", summary)
    assert archive is not None and Path(archive.group(1)).is_file()
    assert f"salt test --config {run / 'config.yaml'}" in summary

    test = run_salt(["test", "--config", str(run / "config.yaml")], tmp_path)
    assert_quiet(test)
    assert re.search(r"^\s*WP\s+cut", test, re.MULTILINE)  # the working-point table
    written = re.findall(r"predictions written to (\S+)", test)
    assert len(written) == 1 and Path(written[0]).is_file()
    listing = re.findall(r"evaluation written to (\S+):\n((?:  \S+\n?)+)", test)
    assert len(listing) == 1
    out_dir = Path(listing[0][0])
    files = listing[0][1].split()
    assert "metrics.json" in files
    assert all((out_dir / name).is_file() for name in files)
