"""Pre-emption and resume with real signals: SIGTERM stops within a step with one last.ckpt,
``status: interrupted`` and exit code 143; a resume continues at that step and keeps the
metrics history; SIGKILL loses at most the steps since the last periodic checkpoint."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import yaml

from salt.callbacks.preemption import PREEMPTED_EXIT
from salt.class_paths import ALLOW_ENV
from salt.metrics_csv import HistoryWriter
from salt.safe_load import load_checkpoint
from tests.helpers import REPO, demo_fit_args

STEPS_PER_EPOCH = 1200 // 60


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# -- metrics history (no training) ----------------------------------------------------------------
def write_csv(path: Path, steps: list[int]) -> None:
    lines = ["epoch,step,train/loss"] + [f"0,{s},{s / 10}" for s in steps]
    path.write_text("\n".join(lines) + "\n")


def test_a_resumed_writer_keeps_rows_before_its_first_step(tmp_path: Path):
    write_csv(tmp_path / "metrics.csv", [0, 1, 2, 3, 4, 5, 6])
    writer = HistoryWriter(str(tmp_path))
    writer.resume = True
    writer.log_metrics({"train/loss": 0.05, "epoch": 0}, step=5)  # checkpoint at 5: 5, 6 replayed
    writer.save()
    got = rows(tmp_path / "metrics.csv")
    assert [int(r["step"]) for r in got] == [0, 1, 2, 3, 4, 5]
    assert got[-1]["train/loss"] == "0.05"


def test_a_new_fit_in_a_reused_directory_starts_a_new_file(tmp_path: Path):
    write_csv(tmp_path / "metrics.csv", [0, 1, 2])
    writer = HistoryWriter(str(tmp_path))
    assert (tmp_path / "metrics.csv").exists()  # nothing removed before the first write
    writer.log_metrics({"train/loss": 1.0, "epoch": 0}, step=0)
    writer.save()
    assert [int(r["step"]) for r in rows(tmp_path / "metrics.csv")] == [0]


# -- real signals ---------------------------------------------------------------------------------
class SignalAt(L.Callback):
    """Sends this process a real SIGTERM at a chosen moment (the handler under test sees an
    ordinary signal): before training step ``step``, or during the first validation batch of a
    training epoch."""

    def __init__(self, step: int = -1, during_validation: bool = False):
        self.step = step
        self.during_validation = during_validation

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_validation_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if self.during_validation and not trainer.sanity_checking:
            self.during_validation = False
            os.kill(os.getpid(), signal.SIGTERM)


def fit_args(demo: Path, root: Path, *extra: str) -> list[str]:
    args = demo_fit_args(demo, root, "sig", "--trainer.logger=false", *extra)
    return [
        *args,
        "--data.num_train=1200",
        "--data.batch_size=60",
        "--trainer.max_epochs=2",
        "--last_ckpt_every_n_steps=5",
    ]


def signal_at(**init_args: object) -> str:
    spec = {"class_path": f"{__name__}.SignalAt", "init_args": init_args}
    return f"--trainer.callbacks+={json.dumps(spec)}"


@pytest.fixture(autouse=True)
def allow_this_module(monkeypatch) -> None:
    """The test callback lives here, outside the packages salt imports by default."""
    monkeypatch.setenv(ALLOW_ENV, __name__.split(".")[0])


def metric_steps(run: Path, column: str) -> list[int]:
    return [int(r["step"]) for r in rows(run / "metrics.csv") if r.get(column)]


def resume_from_elsewhere(run: Path, tmp_path: Path, monkeypatch) -> None:
    """``salt fit --config RUN/config.yaml --ckpt_path last`` from another directory."""
    from salt.cli.main import main

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["fit", "--config", str(run / "config.yaml"), "--ckpt_path=last"]) == 0
    assert not (elsewhere / "logs").exists()  # the saved config found its own run


@pytest.mark.slow
def test_sigterm_mid_epoch_stops_at_once_and_resumes_at_the_same_step(
    demo_dir: Path, tmp_path: Path, monkeypatch
):
    from salt.cli.main import main

    run = tmp_path / "sig_run"
    with pytest.raises(SystemExit) as stopped_with:
        main(fit_args(demo_dir, tmp_path, signal_at(step=7)))
    assert stopped_with.value.code == PREEMPTED_EXIT + signal.SIGTERM == 143
    assert sorted(p.name for p in (run / "ckpts").iterdir()) == ["last.ckpt"]
    # the step running when the signal came finished; nothing after it
    assert load_checkpoint(run / "ckpts" / "last.ckpt")["global_step"] == 8
    meta = yaml.safe_load((run / "metadata.yaml").read_text())
    assert meta["status"] == "interrupted" and meta["interrupted_at_step"] == 8
    assert not metric_steps(run, "val/loss")  # no validation ran
    assert metric_steps(run, "train/loss") == list(range(8))

    resume_from_elsewhere(run, tmp_path, monkeypatch)
    assert load_checkpoint(run / "ckpts" / "last.ckpt")["global_step"] == 2 * STEPS_PER_EPOCH
    # history kept, no step logged twice, one validation per epoch
    assert metric_steps(run, "train/loss") == list(range(2 * STEPS_PER_EPOCH))
    assert len(metric_steps(run, "val/loss")) == 2
    assert yaml.safe_load((run / "metadata.yaml").read_text())["status"] == "finished"
    epochs = sorted(p.name[:9] for p in (run / "ckpts").glob("epoch=*.ckpt"))
    assert epochs == ["epoch=000", "epoch=001"]
    assert [p.name for p in (run / "ckpts").glob("last*.ckpt")] == ["last.ckpt"]


@pytest.mark.slow
def test_sigterm_during_validation_stops_after_the_epoch(
    demo_dir: Path, tmp_path: Path, monkeypatch
):
    """Validation finishes (with its epoch checkpoint); the fit exits before the next epoch, and
    the resume begins with epoch 1."""
    from salt.cli.main import main

    run = tmp_path / "sig_run"
    with pytest.raises(SystemExit) as stopped_with:
        main(fit_args(demo_dir, tmp_path, signal_at(during_validation=True)))
    assert stopped_with.value.code == 143
    assert load_checkpoint(run / "ckpts" / "last.ckpt")["global_step"] == STEPS_PER_EPOCH
    assert [p.name[:9] for p in (run / "ckpts").glob("epoch=*.ckpt")] == ["epoch=000"]
    assert yaml.safe_load((run / "metadata.yaml").read_text())["status"] == "interrupted"
    assert len(metric_steps(run, "val/loss")) == 1

    resume_from_elsewhere(run, tmp_path, monkeypatch)
    assert metric_steps(run, "train/loss") == list(range(2 * STEPS_PER_EPOCH))
    assert len(metric_steps(run, "val/loss")) == 2


def start(command: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))


def wait_for(condition, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the condition never held: " + log.read_text()[-2000:])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_keeps_the_history_up_to_the_last_checkpoint(demo_dir: Path, tmp_path: Path):
    run, log = tmp_path / "sig_run", tmp_path / "fit.log"
    proc = start([sys.executable, "-m", "salt", *fit_args(demo_dir, tmp_path)], log)

    def past_first_checkpoint() -> bool:
        last = run / "ckpts" / "last.ckpt"
        return last.exists() and load_checkpoint(last)["global_step"] >= 10

    wait_for(past_first_checkpoint, proc, log)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    stopped = load_checkpoint(run / "ckpts" / "last.ckpt")["global_step"]
    assert yaml.safe_load((run / "metadata.yaml").read_text())["status"] == "running"
    # flushed with each checkpoint (the row of its own step a moment later)
    assert set(range(stopped - 1)) <= set(metric_steps(run, "train/loss"))
    resume = [sys.executable, "-m", "salt", "fit", "--config", str(run / "config.yaml")]
    done = subprocess.run(
        [*resume, "--ckpt_path=last"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    steps = metric_steps(run, "train/loss")
    assert steps == sorted(set(steps))  # no step twice
    assert set(steps) >= set(range(stopped - 1)) | set(range(stopped, 2 * STEPS_PER_EPOCH))
    assert load_checkpoint(run / "ckpts" / "last.ckpt")["global_step"] == 2 * STEPS_PER_EPOCH


@pytest.mark.slow
def test_resume_with_more_epochs_stretches_the_schedule(demo_dir: Path, tmp_path: Path):
    """The run's OneCycle schedule was built for 1 epoch; resumed to 3 it follows the new
    length from the step it reached (it used to fail with "Tried to step N times")."""
    from salt.cli.main import main

    assert main([*demo_fit_args(demo_dir, tmp_path, "more"), "--trainer.max_epochs=1"]) == 0
    run = tmp_path / "more_run"
    resume = ["fit", "--config", str(run / "config.yaml"), "--ckpt_path=last"]
    assert main([*resume, "--trainer.max_epochs=3"]) == 0
    final = load_checkpoint(run / "ckpts" / "last.ckpt")
    assert final["global_step"] == 9  # 3 epochs of 300 / 100
    (schedule,) = final["lr_schedulers"]
    assert schedule["total_steps"] == 9 and schedule["last_epoch"] == 9
    assert yaml.safe_load((run / "metadata.yaml").read_text())["status"] == "finished"
    assert len(metric_steps(run, "val/loss")) == 3
