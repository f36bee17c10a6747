"""PerformanceWriter: what a Katib search reads (stdout lines, the JSON file) is exactly what
salt logged, through a real ``salt fit`` and with a stand-in trainer for the edge cases."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn

from salt.callbacks import PerformanceWriter
from salt.callbacks.performance_writer import KATIB_METRIC, katib_line, katib_name

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def katib_parse(text: str) -> dict[str, list[float]]:
    """What Katib's default StdOut collector reads: every regex match, per name, in order."""
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        for name, value, *_ in KATIB_METRIC.findall(line):
            if value:
                out.setdefault(name, []).append(float(value))
    return out


# -- a real fit -----------------------------------------------------------------------------------
def test_fit_prints_and_writes_what_salt_logged(demo_dir: Path, tmp_path: Path, capsys):
    from salt.cli.main import main

    args = [
        "fit",
        *("--config", str(CONFIGS / "GN2.yaml")),
        *("--config", str(CONFIGS / "GN2_demo.yaml")),
        *("--config", str(CONFIGS / "toolbox" / "katib.yaml")),
        f"--data.train_file={demo_dir / 'train.h5'}",
        f"--data.val_file={demo_dir / 'val.h5'}",
        f"--data.test_file={demo_dir / 'test.h5'}",
        f"--data.norm_dict={demo_dir / 'norm_dict.yaml'}",
        f"--data.class_dict={demo_dir / 'class_dict.yaml'}",
        "--data.num_inputs={tracks: 8}",
        "--data.num_train=400",
        "--data.num_val=200",
        "--data.batch_size=100",
        "--data.num_workers=0",
        "--trainer.max_epochs=2",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_model_summary=false",
        "--trainer.logger=false",  # salt's metrics.csv only
        f"--trainer.default_root_dir={tmp_path}",
        "--log_suffix=katib",
        "-n",
        "perf",
    ]
    assert main(args) == 0
    printed = katib_parse(capsys.readouterr().out)
    run = tmp_path / "perf_katib"
    records = json.loads((run / "performance.json").read_text())
    assert [r["epoch"] for r in records] == [0, 1]
    assert [r["step"] for r in records] == [4, 8]  # 400 jets / 100 per batch, per epoch

    expected = {
        "train/loss",
        "val/loss",
        "val/jets_classification_loss",
        "val/track_origin_loss",
        "val/track_vertexing_loss",
        "val/jets_classification_accuracy",
    }
    assert set(records[0]["metrics"]) == expected
    for name in expected:  # stdout: the JSON's values, under the Katib names, once per epoch
        assert printed[katib_name(name)] == [r["metrics"][name] for r in records]
    assert printed["val_loss"] and "val/loss" not in printed

    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    val_rows = [r for r in rows if r.get("val/loss")]
    train_rows = [r for r in rows if r.get("train/loss")]
    assert len(val_rows) == 2 and len(train_rows) == 8
    for record, val_row in zip(records, val_rows):
        for name in expected - {"train/loss"}:
            assert record["metrics"][name] == pytest.approx(float(val_row[name]), rel=1e-6)
        # train/loss is logged per step: the value of the epoch's last step
        last = train_rows[4 * record["epoch"] + 3]
        assert record["metrics"]["train/loss"] == pytest.approx(float(last["train/loss"]), rel=1e-6)


# -- a stand-in trainer ---------------------------------------------------------------------------
def jet_classifier(name: str = "jets_classification", input_name: str = "jets"):
    from salt.tasks.classification import ClassificationTask

    classes = ["bjets", "cjets", "ujets"]
    return ClassificationTask(name, input_name, "label", {"input_size": 4}, class_names=classes)


def fake_module(tasks: list[object] | None = None) -> SimpleNamespace:
    tasks = tasks or [jet_classifier()]
    return SimpleNamespace(model=SimpleNamespace(tasks=tasks, global_object="jets"))


def fake_trainer(root: Path, metrics: dict[str, float]) -> SimpleNamespace:
    return SimpleNamespace(
        default_root_dir=str(root),
        sanity_checking=False,
        is_global_zero=True,
        state=SimpleNamespace(fn=TrainerFn.FITTING),
        current_epoch=0,
        global_step=0,
        callback_metrics={k: torch.tensor(v, dtype=torch.float64) for k, v in metrics.items()},
        progress_bar_callback=None,
        ckpt_path=None,
    )


def start(writer: PerformanceWriter, trainer: SimpleNamespace, module=None) -> None:
    module = module or fake_module()
    writer.setup(trainer, module, "fit")  # type: ignore[arg-type]
    writer.on_fit_start(trainer, module)  # type: ignore[arg-type]


def validate(writer: PerformanceWriter, trainer: SimpleNamespace, epoch: int) -> None:
    trainer.current_epoch, trainer.global_step = epoch, 10 * (epoch + 1)
    writer.on_validation_epoch_end(trainer, fake_module())  # type: ignore[arg-type]


LOGGED = {"train/loss": 0.5, "val/loss": 0.25, "val/jets_classification_loss": 0.25}


def test_missing_metric_warned_once_and_sanity_check_skipped(tmp_path: Path, caplog, capsys):
    trainer = fake_trainer(tmp_path, LOGGED)
    writer = PerformanceWriter(add_metrics=["val/never_logged"], stdOut=True)
    start(writer, trainer)
    trainer.sanity_checking = True
    validate(writer, trainer, 0)
    assert not (tmp_path / "performance.json").exists()
    assert capsys.readouterr().out == ""
    trainer.sanity_checking = False
    with caplog.at_level(logging.WARNING, logger="salt.callbacks.performance_writer"):
        for epoch in range(3):
            validate(writer, trainer, epoch)
    warnings = [r.getMessage() for r in caplog.records if "not logged" in r.getMessage()]
    # the jet classifier's accuracy is a default too, and not logged here
    assert len(warnings) == 1
    assert "'val/jets_classification_accuracy', 'val/never_logged' not logged" in warnings[0]
    assert "available: train/loss, val/jets_classification_loss, val/loss" in warnings[0]
    records = json.loads((tmp_path / "performance.json").read_text())
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert [r["step"] for r in records] == [10, 20, 30]
    assert records[-1]["metrics"] == LOGGED
    assert katib_parse(capsys.readouterr().out) == {
        katib_name(k): [v] * 3 for k, v in LOGGED.items()
    }


def test_defaults_follow_the_model():
    from salt.callbacks.performance_writer import default_metrics

    module = fake_module([jet_classifier(), jet_classifier("track_origin", "tracks")])
    module.regularisers = [SimpleNamespace(name="disco")]
    assert default_metrics(module) == [  # type: ignore[arg-type]
        "train/loss",
        "val/loss",
        "val/jets_classification_loss",
        "val/track_origin_loss",
        "val/jets_classification_accuracy",
        "val/disco",
    ]


@pytest.mark.parametrize("value", [1e-12, -3.5e20, 0.0, -0.0, 0.1 + 0.2, 123456789.0, 5e-324])
def test_values_round_trip_through_the_katib_regex(value: float):
    line = katib_line("val/jets_classification_loss", value)
    match = KATIB_METRIC.fullmatch(line)
    assert match is not None, line
    assert match.group(1) == "val_jets_classification_loss"
    assert float(match.group(2)) == value  # bit for bit


def test_non_finite_values_are_null_and_not_printed(tmp_path: Path, caplog, capsys):
    metrics = {**LOGGED, "val/loss": math.nan, "val/jets_classification_loss": math.inf}
    trainer = fake_trainer(tmp_path, {**metrics, "val/jets_classification_accuracy": 0.5})
    writer = PerformanceWriter(stdOut=True)
    start(writer, trainer)
    with caplog.at_level(logging.WARNING, logger="salt.callbacks.performance_writer"):
        validate(writer, trainer, 0)
    printed = katib_parse(capsys.readouterr().out)
    assert printed == {"train_loss": [0.5], "val_jets_classification_accuracy": [0.5]}
    text = (tmp_path / "performance.json").read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    (record,) = json.loads(text)
    assert record["metrics"]["val/loss"] is None
    assert record["metrics"]["val/jets_classification_loss"] is None
    skipped = [r.getMessage() for r in caplog.records if "not finite" in r.getMessage()]
    assert len(skipped) == 2 and any("'val/loss'" in m for m in skipped)
    with pytest.raises(ValueError, match="non-finite"):
        katib_line("val/loss", math.nan)


def test_only_rank_zero_and_fitting_write(tmp_path: Path):
    trainer = fake_trainer(tmp_path, LOGGED)
    writer = PerformanceWriter()
    start(writer, trainer)
    trainer.is_global_zero = False
    validate(writer, trainer, 0)
    trainer.is_global_zero, trainer.state.fn = True, TrainerFn.VALIDATING
    validate(writer, trainer, 0)
    assert not (tmp_path / "performance.json").exists()


def test_resume_continues_from_the_checkpoint_and_explicit_files_are_kept(tmp_path: Path):
    trainer = fake_trainer(tmp_path / "run", LOGGED)
    writer = PerformanceWriter()
    start(writer, trainer)
    validate(writer, trainer, 0)
    state = writer.state_dict()
    validate(writer, trainer, 1)  # lost: the run stops before the next checkpoint

    resumed = PerformanceWriter()
    resumed.load_state_dict(json.loads(json.dumps(state)))
    trainer.ckpt_path = "last.ckpt"
    start(resumed, trainer)
    validate(resumed, trainer, 1)
    records = json.loads((tmp_path / "run" / "performance.json").read_text())
    assert [r["epoch"] for r in records] == [0, 1]

    explicit = PerformanceWriter(dir_path=tmp_path / "run")
    trainer.ckpt_path = None
    with pytest.raises(FileExistsError, match=r"performance\.json"):
        start(explicit, trainer)
    start(PerformanceWriter(dir_path=tmp_path / "run", overwrite=True), trainer)


def test_names_that_print_alike_are_refused(tmp_path: Path):
    writer = PerformanceWriter(add_metrics=["val_loss"])
    with pytest.raises(ValueError, match="'val/loss' and 'val_loss'"):
        start(writer, fake_trainer(tmp_path, LOGGED))
