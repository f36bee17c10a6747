"""Experiment loggers: Comet (the default) offline without a key, TensorBoard and CSV by config,
and no credentials in anything salt writes."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.helpers import demo_fit_args as fit_args

ROOT = Path(__file__).resolve().parents[1]
SECRET = "SeCrEtCoMeTkEy0123456789"


def comet_messages(run: Path) -> list[dict]:
    (archive,) = (run / "comet").glob("*.zip")
    with zipfile.ZipFile(archive) as zf:
        text = zf.read("messages.json").decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def val_losses_csv(run: Path) -> list[float]:
    with open(run / "metrics.csv") as f:
        return [float(r["val/loss"]) for r in csv.DictReader(f) if r.get("val/loss")]


def test_default_comet_logger_runs_offline_into_the_run_dir(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from salt.cli.main import main

    monkeypatch.delenv("COMET_API_KEY", raising=False)
    monkeypatch.setenv("COMET_CONFIG", str(tmp_path / "no-comet.config"))  # no ~/.comet.config
    assert main(fit_args(demo_dir, tmp_path, "comet")) == 0
    run = tmp_path / "comet_run"
    metrics = [m["payload"]["metric"] for m in comet_messages(run) if m["type"] == "metric_msg"]
    comet_val = [m["metricValue"] for m in metrics if m["metricName"] == "val/loss"]
    # the same validation losses reach Comet's offline archive and salt's metrics.csv
    assert comet_val == pytest.approx(val_losses_csv(run), rel=1e-6)
    assert len(comet_val) == 2
    saved = yaml.safe_load((run / "config.yaml").read_text())
    (comet,) = saved["trainer"]["logger"]
    assert comet["class_path"] == "salt.cli.loggers.CometLogger"
    # the saved config keeps the user's logger settings, not this run's paths
    assert comet["init_args"]["offline_directory"] is None


def test_api_key_never_written(demo_dir: Path, tmp_path: Path, capfd, monkeypatch):
    from salt.cli.main import main

    monkeypatch.delenv("COMET_API_KEY", raising=False)
    fragment = tmp_path / "comet_key.yaml"
    fragment.write_text(
        yaml.safe_dump(
            {
                "trainer": {
                    "logger": [
                        {
                            "class_path": "lightning.pytorch.loggers.CometLogger",
                            "init_args": {"api_key": SECRET, "online": False},
                        }
                    ]
                }
            }
        )
    )
    assert main(fit_args(demo_dir, tmp_path, "key", "--config", str(fragment))) == 0
    run = tmp_path / "key_run"
    assert comet_messages(run)  # Lightning's class path runs offline as well, given online: false
    saved = (run / "config.yaml").read_text()
    assert "${COMET_API_KEY}" in saved
    out, err = capfd.readouterr()
    assert SECRET not in out + err
    for path in run.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".zip":
                with zipfile.ZipFile(path) as zf:
                    data = b"".join(zf.read(n) for n in zf.namelist())
            assert SECRET.encode() not in data, path


def test_tensorboard_and_csv_only(demo_dir: Path, tmp_path: Path, monkeypatch):
    from salt.cli.main import main

    monkeypatch.delenv("COMET_API_KEY", raising=False)
    tb = ROOT / "configs" / "toolbox" / "tensorboard.yaml"
    assert main(fit_args(demo_dir, tmp_path, "tb", "--config", str(tb))) == 0
    run = tmp_path / "tb_run"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert list((run / "comet").glob("*.zip"))
    assert len(val_losses_csv(run)) == 2

    assert main(fit_args(demo_dir, tmp_path, "csv", "--trainer.logger=false")) == 0
    run = tmp_path / "csv_run"
    assert len(val_losses_csv(run)) == 2
    assert not (run / "comet").exists()


def test_online_without_a_key_is_one_line_error(
    demo_dir: Path, tmp_path: Path, capsys, monkeypatch
):
    from salt.cli.main import main

    monkeypatch.delenv("COMET_API_KEY", raising=False)
    monkeypatch.setenv("COMET_CONFIG", str(tmp_path / "no-comet.config"))
    args = fit_args(
        demo_dir,
        tmp_path,
        "online",
        '--trainer.logger=[{"class_path": "salt.cli.loggers.CometLogger", '
        '"init_args": {"online": true}}]',
    )
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("salt: error:") and "COMET_API_KEY" in err[-1]
    assert not (tmp_path / "online_run").exists()


def test_run_dir_loggers_unit(tmp_path: Path):
    from jsonargparse import Namespace

    from salt.cli.loggers import run_dir_loggers, without_credentials

    spec = [
        Namespace(class_path="lightning.pytorch.loggers.CometLogger", init_args=Namespace()),
        Namespace(
            class_path="lightning.pytorch.loggers.CSVLogger", init_args=Namespace(save_dir="x")
        ),
    ]
    loggers = run_dir_loggers(spec, tmp_path / "run")
    assert [lg.class_path for lg in loggers] == [
        "salt.metrics_csv.ResumableCSVLogger",  # salt's metrics.csv, first: log_dir = run dir
        "salt.cli.loggers.CometLogger",
    ]
    assert loggers[1].init_args.offline_directory == str(tmp_path / "run" / "comet")
    assert loggers[1].init_args.name == "run"
    assert spec[0].init_args.get("offline_directory") is None  # the user's spec is untouched
    assert [lg.class_path for lg in run_dir_loggers(False, tmp_path)] == [
        "salt.metrics_csv.ResumableCSVLogger"
    ]
    keyed = Namespace(class_path="salt.cli.loggers.CometLogger", init_args=Namespace(api_key="k"))
    assert without_credentials([keyed])[0].init_args.api_key == "${COMET_API_KEY}"
    assert keyed.init_args.api_key == "k"
