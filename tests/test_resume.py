"""A salt fit killed with SIGKILL resumes from last.ckpt to the same final step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def fit_command(demo: Path, root: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "salt",
        "fit",
        "--config",
        str(ROOT / "configs" / "GN2.yaml"),
        "--config",
        str(ROOT / "configs" / "GN2_demo.yaml"),
        f"--data.train_file={demo / 'train.h5'}",
        f"--data.val_file={demo / 'val.h5'}",
        f"--data.test_file={demo / 'test.h5'}",
        f"--data.norm_dict={demo / 'norm_dict.yaml'}",
        f"--data.class_dict={demo / 'class_dict.yaml'}",
        "--data.batch_size=60",
        "--data.num_workers=0",
        "--data.num_train=3000",
        "--data.num_val=200",
        "--trainer.max_epochs=3",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--last_ckpt_every_n_steps=5",
        f"--trainer.default_root_dir={root}",
        "--log_suffix=kill",
        "-n",
        "resume",
    ]


@pytest.mark.timeout(240)
def test_sigkill_then_resume_reaches_the_same_final_step(demo_dir: Path, tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run_dir = tmp_path / "resume_kill"
    last = run_dir / "ckpts" / "last.ckpt"
    log = (tmp_path / "fit.log").open("w")  # a file, not a pipe: a full pipe would block
    proc = subprocess.Popen(
        fit_command(demo_dir, tmp_path), env=env, stdout=subprocess.DEVNULL, stderr=log
    )
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if last.exists():
            step = torch.load(last, weights_only=False)["global_step"]
            if step >= 5:  # the first periodic checkpoint: kill at once, mid-epoch
                proc.send_signal(signal.SIGKILL)
                killed_at = step
                break
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert killed_at is not None, (
        "the run finished or never wrote last.ckpt: " + (tmp_path / "fit.log").read_text()[-2000:]
    )
    assert proc.returncode == -signal.SIGKILL
    meta = yaml.safe_load((run_dir / "metadata.yaml").read_text())
    assert meta["status"] == "running"  # the killed run never claimed to have finished

    resume = [
        sys.executable,
        "-m",
        "salt",
        "fit",
        "--config",
        str(run_dir / "config.yaml"),
        "--ckpt_path=last",
        "--trainer.enable_progress_bar=false",
    ]
    done = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    final = torch.load(last, weights_only=False)
    assert final["global_step"] == 3 * 50  # 3 epochs of 3000 / 60 batches
    meta = yaml.safe_load((run_dir / "metadata.yaml").read_text())
    assert meta["status"] == "finished" and meta["resumed"] == "last"
    epochs = sorted(p.name for p in (run_dir / "ckpts").glob("epoch=*.ckpt"))
    assert [name[:9] for name in epochs] == ["epoch=000", "epoch=001", "epoch=002"]
