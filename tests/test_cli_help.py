"""The command line a new user explores: ``salt --help``, focused subcommand help, one-line
config errors that come before torch is imported, shell completion and the start-up benchmark."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

from salt.cli.main import COMMANDS, LIGHTNING_SUBCOMMANDS, main
from salt.cli.precheck import SECTIONS, check_config_file, section_keys


def salt(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "salt", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )


def test_salt_help_lists_every_subcommand_in_one_line():
    done = salt("--help")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    table = {**LIGHTNING_SUBCOMMANDS, **{name: c.help for name, c in COMMANDS.items()}}
    for name, text in table.items():
        assert sum(line.split()[:1] == [name] and text in line for line in lines) == 1, name
    assert any(line.split()[:1] == ["--debug"] for line in lines)
    assert "SALT_DEBUG" in done.stdout


def test_salt_without_subcommand_prints_usage_and_fails():
    done = salt()
    assert done.returncode == 2
    assert "subcommands:" in done.stdout


# -- errors found before torch is imported ------------------------------------------------------
CHECK = (
    "import sys\n"
    "from salt.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "print('torch imported' if 'torch' in sys.modules else 'torch not imported')\n"
    "sys.exit(code)\n"
)


@pytest.mark.parametrize(
    ("files", "args", "expected"),
    [
        (
            {"typo.yaml": "trainer:\n  max_epoch: 3\n"},
            ["--config", "typo.yaml"],
            "'trainer.max_epochs'",
        ),
        ({"typo.yaml": "data:\n  batch_sise: 3\n"}, ["--config", "typo.yaml"], "'data.batch_size'"),
        ({}, ["--model.optimiser=x"], "'--model.optimizer'"),
        ({}, ["--config", "missing.yaml"], "'missing.yaml' does not exist"),
        ({"bad.yaml": "trainer: [1,\n"}, ["--config", "bad.yaml"], "'bad.yaml' is not valid YAML"),
        ({"list.yaml": "- 1\n"}, ["--config", "list.yaml"], "is not a mapping"),
    ],
)
def test_config_error_is_one_line_without_torch(tmp_path, files, args, expected):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        [sys.executable, "-c", CHECK, "fit", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("salt: error:"), done.stderr
    assert expected in errors[0]
    assert done.stdout.strip() == "torch not imported"


def test_unknown_subcommand_suggests_one(capsys):
    assert main(["tset"]) == 2
    assert "unknown subcommand 'tset' (did you mean 'test'?)" in capsys.readouterr().err


def test_precheck_knows_exactly_the_options_of_each_section():
    from lightning.pytorch import Trainer

    from salt.data.datamodule import SaltDataModule
    from salt.training.module import SaltModule

    classes = {"trainer": Trainer, "model": SaltModule, "data": SaltDataModule}
    assert set(classes) == set(SECTIONS)
    for section, cls in classes.items():
        params = set(inspect.signature(cls.__init__).parameters) - {"self"}
        assert section_keys(section) == params, section


@pytest.mark.parametrize(
    "config",
    sorted(p.relative_to(REPO) for p in (REPO / "configs").rglob("*.yaml")),
    ids=str,
)
def test_precheck_accepts_every_shipped_config(config):
    check_config_file(str(REPO / config))  # raises ConfigError on a (false) unknown key


# -- focused help ---------------------------------------------------------------------------------
def subcommand_help(capsys, subcommand: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([subcommand, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.slow
def test_subcommand_help_shows_what_applies(capsys):
    test_help = subcommand_help(capsys, "test")
    assert test_help.startswith("usage: salt test --config CONFIG")
    assert LIGHTNING_SUBCOMMANDS["test"] in test_help
    for shown in ("--ckpt_path", "--evaluation.fc", "--data.test_file", "--trainer.devices"):
        assert shown in test_help, shown
    for hidden in (
        "--model.optimizer",
        "--model.lr_scheduler",
        "--model.lrs_config",
        "--trainer.max_epochs",
        "--checkpoint.save_top_k",
        "--data.train_file",
        "--model.norm_dict",
        "--weights_only",
        "--log_suffix",
    ):
        assert hidden not in test_help, hidden
    fit_help = subcommand_help(capsys, "fit")
    for shown in ("--model.optimizer", "--trainer.max_epochs", "--checkpoint.save_top_k"):
        assert shown in fit_help, shown
    assert "--model.norm_dict" not in fit_help  # copied from data.norm_dict
    assert len(test_help.splitlines()) < len(fit_help.splitlines())


# -- shell completion -----------------------------------------------------------------------------
def completions(tmp_path: Path, line: str) -> list[str]:
    out = tmp_path / "completions.txt"
    env = {
        "_ARGCOMPLETE": "1",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
    }
    salt(env=env)
    return out.read_text().replace("\x0b", " ").split() if out.exists() else []


def test_completion_of_subcommands(tmp_path):
    pytest.importorskip("argcomplete")
    assert completions(tmp_path, "salt in") == ["inspect"]
    assert completions(tmp_path, "salt --debug eval") == ["evaluate"]
    names = completions(tmp_path, "salt ")
    assert set(LIGHTNING_SUBCOMMANDS) | set(COMMANDS) <= set(names)


@pytest.mark.slow
def test_completion_of_options(tmp_path):
    pytest.importorskip("argcomplete")
    assert completions(tmp_path, "salt test --evaluation.f") == ["--evaluation.fc"]


# -- start-up benchmark ---------------------------------------------------------------------------
def test_startup_benchmark_runs():
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "startup.py"), "--repeat", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    labels = [row.split("|")[1].strip() for row in rows[2:]]
    assert labels == [
        "salt --help",
        "salt inspect train.h5",
        "config error (salt fit, misspelt key)",
    ]
    for row in rows[2:]:
        median = float(row.split("|")[2])
        assert median > 0
