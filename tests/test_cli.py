"""The set-up path: the subcommand table, the callback sections, user errors versus bugs, the
NaN guard's contract and the one way tools read a config."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from salt.callbacks.checkpoint import checkpoint_val_loss, lowest_val_loss
from salt.callbacks.memory import MemoryLogger
from salt.callbacks.nan_guard import NaNLossGuard, NonFiniteLossError
from salt.cli.errors import BUG_EXIT, USER_ERROR_EXIT, is_user_error, run_cli
from salt.cli.main import COMMANDS, LIGHTNING_SUBCOMMANDS, main
from salt.cli.salt_cli import read_data_config, renamed_flags
from salt.errors import ConfigError, UserError
from salt.s3.mirror import best_checkpoint_name
from salt.utils.label_fields import merge_label_fields
from salt.utils.versions import versions
from tests.helpers import REPO


def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in [*LIGHTNING_SUBCOMMANDS, *COMMANDS]:
        assert f"  {name} " in out
    for command in COMMANDS.values():  # every row points at a real entry point
        assert callable(command.load())


def test_old_checkpoint_flags_map_to_the_callback_sections():
    argv = ["fit", "--save_top_k", "3", "--last_ckpt_every_n_steps=7", "--data.x=1"]
    assert renamed_flags(argv) == [
        "fit",
        "--checkpoint.save_top_k",
        "3",
        "--last_checkpoint.every_n_train_steps=7",
        "--data.x=1",
    ]


@pytest.mark.slow  # parses the whole GN2 config (about 6 s here)
def test_print_config_shows_the_callbacks_every_run_has(capsys):
    configs = ["--config", str(REPO / "configs" / "GN2.yaml")]
    with pytest.raises(SystemExit) as info:
        main(["fit", *configs, "--save_top_k", "3", "--print_config"])
    assert info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["checkpoint"]["save_top_k"] == 3
    assert printed["checkpoint"]["monitor"] == "val/loss"
    assert printed["last_checkpoint"]["every_n_train_steps"] == 200
    assert printed["nan_guard"]["check_every_n_steps"] == 20
    assert printed["preemption"] == {"path": None}


def _raise_on_purpose() -> None:
    MemoryLogger(every_n_steps=0)  # salt validates its input with a plain ValueError


def _fail_by_accident() -> None:
    versions(packages=5)  # type: ignore[arg-type]  # a TypeError inside salt, not a raise


def test_user_errors_and_bugs_are_told_apart(capsys):
    for err in (UserError("x"), ConfigError("x"), FileNotFoundError("f")):
        assert is_user_error(err)
    with pytest.raises(ValueError) as on_purpose:
        _raise_on_purpose()
    assert is_user_error(on_purpose.value)
    with pytest.raises(TypeError) as accident:
        _fail_by_accident()
    assert not is_user_error(accident.value)
    with pytest.raises(ValueError) as in_library:
        math.sqrt(-1)
    assert not is_user_error(in_library.value)

    assert run_cli(_raise_on_purpose, []) == USER_ERROR_EXIT
    err = capsys.readouterr().err
    assert err == "salt: error: MemoryLogger.every_n_steps must be >= 1, got 0\n"
    assert run_cli(_fail_by_accident, [], prog="to_onnx") == BUG_EXIT
    err = capsys.readouterr().err
    assert "Traceback" in err and "TypeError" in err
    assert "to_onnx: this looks like a bug in salt" in err


def test_nan_guard_reads_the_training_step_output():
    guard = NaNLossGuard(check_every_n_steps=2)
    trainer = SimpleNamespace(global_step=1)
    finite = {"loss": torch.tensor(1.0), "task_losses": {"jets": torch.tensor(1.0)}}
    guard.on_train_batch_end(trainer, None, finite, None, 0)  # type: ignore[arg-type]
    bad = {"loss": torch.tensor(1.0), "task_losses": {"tracks": torch.tensor(float("nan"))}}
    trainer.global_step = 2
    with pytest.raises(NonFiniteLossError, match="task 'tracks' between steps 0 and 2"):
        guard.on_train_batch_end(trainer, None, bad, None, 1)  # type: ignore[arg-type]


def test_data_section_merges_as_salt_fit_does(tmp_path: Path):
    base = tmp_path / "base.yaml"
    base.write_text(
        yaml.safe_dump(
            {
                "model": {"anything": "not read"},
                "data": {
                    "train_file": "a.h5",
                    "variables": {"jets": ["pt", "eta"], "tracks": ["d0"]},
                    "batch_size": 10,
                },
            }
        )
    )
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"data": {"variables": {"jets": ["pt"]}}}))
    data = read_data_config([base, override])
    assert data["variables"] == {"jets": ["pt"]}  # a later file replaces a dict argument
    assert data["batch_size"] == 10 and data["train_file"] == "a.h5"
    assert data["global_object"] == "jets"  # packaged default
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        read_data_config([tmp_path / "missing.yaml"])


def test_one_reading_of_checkpoint_names():
    names = [
        "ckpts/epoch=000-val_loss=0.90000.ckpt",
        "ckpts/epoch=003-val_loss=0.41000.ckpt",
        "ckpts/last.ckpt",
        "ckpts/epoch=004-val_loss=nan-ish.ckpt",
        "other/epoch=009-val_loss=0.10000.ckpt",
    ]
    assert checkpoint_val_loss(names[1]) == 0.41
    assert checkpoint_val_loss(names[2]) is None and checkpoint_val_loss(names[3]) is None
    assert lowest_val_loss(names[:4]) == names[1]
    assert best_checkpoint_name(names) == names[1]  # the S3 mirror reads names the same way


def test_label_fields_merge_in_first_seen_order():
    merged = merge_label_fields(
        {"jets": ["pt", "flavour_label"]},
        {"jets": ["flavour_label", "eta"], "tracks": ["origin"]},
        {"tracks": ["origin", "vertex"]},
    )
    assert merged == {"jets": ["pt", "flavour_label", "eta"], "tracks": ["origin", "vertex"]}
