"""Real kills of a real ``salt fit`` at chosen moments: SIGKILL and SIGTERM during a checkpoint
write, during validation and mid-epoch.

A run must survive each: the last complete checkpoint stays intact under its final name (a write
cut short leaves at most a hidden temporary file, never picked as ``last`` and removed by the
next run), ``metrics.csv`` keeps its history, ``metadata.yaml`` says ``interrupted`` after a
SIGTERM (exit code 143) and ``running`` after a SIGKILL, and ``--ckpt_path last`` continues at
the checkpoint's step to the same final step as an uninterrupted fit.

The moments are made deterministic by test callbacks (allowed with ``SALT_ALLOW_MODULES``) that
stall the fit there, half-way through a checkpoint's bytes or inside a validation batch, and
touch a marker; the test waits for the marker, then sends the signal.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml

from salt.class_paths import ALLOW_ENV
from salt.safe_load import load_checkpoint
from tests.helpers import REPO, demo_fit_args

pytestmark = pytest.mark.timeout(600)

MODULE = "tests.test_kill_points"  # as the killed fit imports it (with the repository on its path)
STEPS_PER_EPOCH = 4  # 200 jets in batches of 50
EPOCHS = 2
LAST_EVERY = 1  # last.ckpt after every step (the epoch's last one after its validation)


# -- the stalls (run inside the killed fit) -------------------------------------------------------
def _wait_for(release: str | None, timeout: float = 120) -> None:
    """Stay here until ``release`` exists (never without one: the test kills the process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if release is not None and Path(release).exists():
            return
        time.sleep(0.02)


class _StallingTorch:
    """Stands in for the ``torch`` module in :mod:`salt.callbacks.checkpoint_io`: its ``save``
    writes the first half of the chosen checkpoint into the temporary file, touches ``ready``
    and waits, then writes the rest."""

    def __init__(self, stall: StallCheckpointWrite):
        self._stall = stall

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def save(self, obj: Any, handle: Any) -> None:
        temp = Path(os.readlink(f"/proc/self/fd/{handle.fileno()}")).name
        target = temp[1:].rsplit(".", 2)[0]  # ".last.ckpt.x1y2.tmp" -> "last.ckpt"
        if not self._stall.is_due(target):
            torch.save(obj, handle)
            return
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        data = buffer.getvalue()
        handle.write(data[: len(data) // 2])
        handle.flush()
        os.fsync(handle.fileno())
        Path(self._stall.ready).write_text(temp)
        _wait_for(self._stall.release)
        handle.write(data[len(data) // 2 :])


class StallCheckpointWrite(L.Callback):
    """Stalls the ``nth`` write of a checkpoint whose name matches ``target`` half-way, once per
    run (a resume's saved config names it again; it stays idle once ``ready`` exists)."""

    def __init__(self, ready: str, target: str = "last.ckpt", nth: int = 1, release: str = ""):
        self.ready, self.target, self.nth = ready, target, nth
        self.release = release or None
        self.seen = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not Path(self.ready).exists():
            import salt.callbacks.checkpoint_io as checkpoint_io

            checkpoint_io.torch = _StallingTorch(self)  # type: ignore[assignment]

    def is_due(self, target: str) -> bool:
        if not fnmatch.fnmatch(target, self.target) or Path(self.ready).exists():
            return False
        self.seen += 1
        return self.seen == self.nth


class StallValidation(L.Callback):
    """Stalls in the first validation batch of ``epoch`` (not the sanity check), once per run."""

    def __init__(self, ready: str, epoch: int = 0, release: str = ""):
        self.ready, self.epoch, self.release = ready, epoch, release or None

    def on_validation_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.sanity_checking or trainer.current_epoch != self.epoch:
            return
        if not Path(self.ready).exists():
            Path(self.ready).touch()
            _wait_for(self.release)


# -- driving the fit ------------------------------------------------------------------------------
def callback(cls: str, **init_args: object) -> str:
    spec = {"class_path": f"{MODULE}.{cls}", "init_args": init_args}
    return f"--trainer.callbacks+={json.dumps(spec)}"


def fit_args(demo: Path, root: Path, *extra: str) -> list[str]:
    args = demo_fit_args(demo, root, "kill", "--trainer.logger=false", *extra)
    return [
        *args,
        "--data.num_train=200",
        "--data.num_val=50",
        "--data.batch_size=50",
        f"--trainer.max_epochs={EPOCHS}",
        f"--last_ckpt_every_n_steps={LAST_EVERY}",
    ]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), ALLOW_ENV: "tests"}


class Fit:
    """A ``python -m salt`` process, its stderr in ``log``."""

    def __init__(self, args: list[str], log: Path):
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "salt", *args],
            env=env(),
            cwd=log.parent,
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )

    def wait_for(self, marker: Path, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not marker.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}: {self.tail()}")
            time.sleep(0.05)
        if not marker.exists():
            self.proc.kill()
            raise AssertionError(f"{marker.name} never appeared: {self.tail()}")

    def finish(self, timeout: float = 240) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"still running: {self.tail()}") from None

    def tail(self) -> str:
        return self.log.read_text()[-3000:]


def resume_args(run: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(run / "config.yaml"), "--ckpt_path=last", *extra]


def finish_here(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last resume, in this process (no kill to survive; saves a process start)."""
    from salt.cli.main import main

    monkeypatch.setenv(ALLOW_ENV, "tests")
    monkeypatch.chdir(run.parent)
    assert main(resume_args(run)) == 0


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def steps_with(run: Path, column: str) -> list[int]:
    return [int(r["step"]) for r in rows(run) if r.get(column)]


def status(run: Path) -> dict[str, Any]:
    return yaml.safe_load((run / "metadata.yaml").read_text())


def step_of(path: Path) -> int:
    return int(load_checkpoint(path)["global_step"])


def final_names(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "ckpts").glob("*.ckpt"))


def temp_files(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "ckpts").iterdir() if p.name.endswith(".tmp"))


def assert_every_final_checkpoint_loads(run: Path) -> None:
    """No truncated file under a final name: each ``*.ckpt`` is a complete, loadable archive."""
    for path in (run / "ckpts").glob("*.ckpt"):
        load_checkpoint(path)


def assert_finished_like_an_uninterrupted_fit(run: Path) -> None:
    total = EPOCHS * STEPS_PER_EPOCH
    assert step_of(run / "ckpts" / "last.ckpt") == total
    assert steps_with(run, "train/loss") == list(range(total))  # each step once, none lost
    assert len(steps_with(run, "val/loss")) == EPOCHS
    epochs = sorted(n[:9] for n in final_names(run) if n.startswith("epoch="))
    assert epochs == [f"epoch={e:03d}" for e in range(EPOCHS)]
    assert [n for n in final_names(run) if n.startswith("last")] == ["last.ckpt"]
    assert temp_files(run) == []  # what a killed write left was cleared
    assert status(run)["status"] == "finished"
    assert_every_final_checkpoint_loads(run)


# -- the kills ------------------------------------------------------------------------------------
def test_sigkill_during_checkpoint_writes_and_validation(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """One run killed three times: half-way through writing ``last.ckpt`` mid-epoch, in the
    first validation, and half-way through the ``last.ckpt`` written after that validation."""
    run = tmp_path / "kill_run"
    ready = tmp_path / "mid_epoch_write.ready"
    stall = callback("StallCheckpointWrite", ready=str(ready), target="last.ckpt", nth=2)
    fit = Fit(fit_args(demo_dir, tmp_path, stall), tmp_path / "fit1.log")
    fit.wait_for(ready)
    fit.proc.send_signal(signal.SIGKILL)
    assert fit.finish() == -signal.SIGKILL
    # the previous last.ckpt is intact; the half-written one lies under its temporary name
    assert final_names(run) == ["last.ckpt"]
    assert step_of(run / "ckpts" / "last.ckpt") == 1
    assert temp_files(run) == [ready.read_text()]
    assert status(run)["status"] == "running"
    assert steps_with(run, "train/loss")[:1] == [0]

    ready = tmp_path / "validation.ready"
    fit = Fit(
        resume_args(run, callback("StallValidation", ready=str(ready), epoch=0)),
        tmp_path / "fit2.log",
    )
    fit.wait_for(ready)
    fit.proc.send_signal(signal.SIGKILL)
    assert fit.finish() == -signal.SIGKILL
    assert temp_files(run) == []  # the resume's first write cleared the killed one
    # the step before validation: a resume from it validates the epoch
    assert final_names(run) == ["last.ckpt"]
    assert step_of(run / "ckpts" / "last.ckpt") == STEPS_PER_EPOCH - 1
    assert steps_with(run, "train/loss")[: STEPS_PER_EPOCH - 1] == list(range(STEPS_PER_EPOCH - 1))
    assert steps_with(run, "val/loss") == []
    assert status(run)["status"] == "running"

    ready = tmp_path / "epoch_end_write.ready"
    stall = callback("StallCheckpointWrite", ready=str(ready), target="last.ckpt", nth=1)
    fit = Fit(resume_args(run, stall), tmp_path / "fit3.log")
    fit.wait_for(ready)
    fit.proc.send_signal(signal.SIGKILL)
    assert fit.finish() == -signal.SIGKILL
    (epoch_0,) = (n for n in final_names(run) if n.startswith("epoch="))
    assert step_of(run / "ckpts" / epoch_0) == STEPS_PER_EPOCH
    assert step_of(run / "ckpts" / "last.ckpt") == STEPS_PER_EPOCH - 1
    assert temp_files(run) == [ready.read_text()]
    assert len(steps_with(run, "val/loss")) == 1
    assert_every_final_checkpoint_loads(run)

    finish_here(run, monkeypatch)  # replays the epoch's last step and validation
    assert_finished_like_an_uninterrupted_fit(run)
    assert epoch_0 in final_names(run)  # written again under the same name


def test_sigterm_during_checkpoint_writes(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """SIGTERM while a checkpoint is half-written: the write completes, the fit stops after
    at most one more step with one ``last.ckpt``, ``status: interrupted`` and exit code 143."""
    run = tmp_path / "kill_run"
    ready, release = tmp_path / "mid_epoch_write.ready", tmp_path / "mid_epoch_write.release"
    stall = callback(
        "StallCheckpointWrite", ready=str(ready), target="last.ckpt", nth=2, release=str(release)
    )
    fit = Fit(fit_args(demo_dir, tmp_path, stall), tmp_path / "fit1.log")
    fit.wait_for(ready)
    fit.proc.send_signal(signal.SIGTERM)
    release.touch()
    assert fit.finish() == 143, fit.tail()
    assert final_names(run) == ["last.ckpt"] and temp_files(run) == []
    assert step_of(run / "ckpts" / "last.ckpt") == 3  # the step after the stalled write
    meta = status(run)
    assert meta["status"] == "interrupted" and meta["interrupted_at_step"] == 3
    assert steps_with(run, "train/loss") == [0, 1, 2]
    assert steps_with(run, "val/loss") == []

    ready, release = tmp_path / "epoch_write.ready", tmp_path / "epoch_write.release"
    stall = callback(
        "StallCheckpointWrite", ready=str(ready), target="epoch=*", release=str(release)
    )
    fit = Fit(resume_args(run, stall), tmp_path / "fit2.log")
    fit.wait_for(ready)
    fit.proc.send_signal(signal.SIGTERM)
    release.touch()
    assert fit.finish() == 143, fit.tail()
    # the epoch checkpoint completed; the fit stopped one step into the next epoch
    assert temp_files(run) == []
    assert [n[:9] for n in final_names(run)] == ["epoch=000", "last.ckpt"]
    assert step_of(run / "ckpts" / "last.ckpt") == STEPS_PER_EPOCH + 1
    meta = status(run)
    assert meta["status"] == "interrupted" and meta["interrupted_at_step"] == STEPS_PER_EPOCH + 1
    assert steps_with(run, "train/loss") == list(range(STEPS_PER_EPOCH + 1))
    assert len(steps_with(run, "val/loss")) == 1
    assert_every_final_checkpoint_loads(run)

    finish_here(run, monkeypatch)
    assert_finished_like_an_uninterrupted_fit(run)
