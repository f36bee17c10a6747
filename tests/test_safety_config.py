"""A config cannot run code: every class_path must lie in an allowed package and name a class of
the kind its place declares, checked before anything is imported or called."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from salt.class_paths import ALLOW_ENV, ClassPathError, check_class_path, class_paths
from tests.helpers import REPO
from tests.helpers import demo_fit_args as fit_args


def config_file(tmp_path: Path, content: dict) -> str:
    path = tmp_path / "extra.yaml"
    path.write_text(yaml.safe_dump(content))
    return str(path)


def last_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines, "nothing on stderr"
    return lines[-1]


@pytest.fixture
def planted_module(tmp_path: Path, monkeypatch) -> Path:
    """An importable module that leaves a marker file when imported."""
    marker = tmp_path / "imported"
    (tmp_path / "plantedmod.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\nclass Thing:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("plantedmod", None)


def test_every_shipped_config_passes():
    checked = 0
    for path in [*REPO.glob("configs/**/*.yaml"), *REPO.glob("salt/configs/**/*.yaml")]:
        for key, class_path in class_paths(yaml.safe_load(path.read_text())):
            check_class_path(key, class_path)
            checked += 1
    assert checked > 20


@pytest.mark.parametrize(
    ("key", "class_path", "expected"),
    [
        ("model.optimizer", "os.system", "outside the packages salt imports"),
        ("model.optimizer", "torch.nn.Linear", "not a subclass of torch.optim.optimizer.Optimizer"),
        ("model.optimizer", "torch.load", "is a function, not a class"),
        ("trainer.callbacks.0", "torch.optim.AdamW", "not a subclass of lightning"),
        ("model.lr_scheduler", "torch.nn.ReLU", "not a subclass of torch.optim.lr_scheduler"),
    ],
)
def test_class_paths_of_the_wrong_kind_are_refused(key: str, class_path: str, expected: str):
    with pytest.raises(ClassPathError, match=expected) as info:
        check_class_path(key, class_path)
    assert str(info.value).startswith(f"{key}: class_path '{class_path}'")


def test_a_module_outside_the_allowed_packages_is_never_imported(planted_module: Path, monkeypatch):
    with pytest.raises(ClassPathError, match=f"set {ALLOW_ENV}=plantedmod"):
        check_class_path("trainer.callbacks.0", "plantedmod.Thing")
    assert not planted_module.exists()
    monkeypatch.setenv(ALLOW_ENV, "plantedmod")
    with pytest.raises(ClassPathError, match="not a subclass of lightning"):
        check_class_path("trainer.callbacks.0", "plantedmod.Thing")  # allowed, still checked
    assert planted_module.exists()


@pytest.mark.parametrize(
    "extra",
    [
        "config",
        "--model.optimizer.class_path=os.system",
        '--trainer.callbacks+={"class_path": "os.system", "init_args": {"command": "x"}}',
        "--model.optimizer=os.system",
    ],
)
def test_salt_fit_refuses_a_config_that_would_run_a_command(
    demo_dir: Path, tmp_path: Path, capsys, extra: str
):
    from salt.cli.main import main

    marker = tmp_path / "ran"
    if extra == "config":
        evil = {"class_path": "os.system", "init_args": {"command": f"touch {marker}"}}
        extra_args = ["--config", config_file(tmp_path, {"model": {"optimizer": evil}})]
    else:
        extra_args = [extra]
    code = main(fit_args(demo_dir, tmp_path, "evil", *extra_args))
    assert code == 2
    line = last_error(capsys)
    assert line.startswith("salt: error:") and "class_path 'os.system'" in line
    assert not marker.exists()
    assert not (tmp_path / "evil_run").exists()


def test_secrets_are_redacted_in_print_config(tmp_path: Path, capsys):
    from salt.cli.main import main

    comet = {
        "class_path": "lightning.pytorch.loggers.CometLogger",
        "init_args": {"api_key": "COMETKEY77", "project": "p"},
    }
    s3 = {"use_S3": False, "pubKey": "PUBKEY99", "secKey": "TOPSECRET123"}
    args = ["fit", "--config", str(REPO / "configs" / "GN2.yaml")]
    args += ["--config", config_file(tmp_path, {"trainer": {"logger": comet}})]
    args += [f"--data.config_S3={yaml.safe_dump(s3, default_flow_style=True).strip()}"]
    with pytest.raises(SystemExit) as done:
        main([*args, "--print_config"])
    assert done.value.code in (0, None)
    out = capsys.readouterr()
    printed = out.out + out.err
    assert "api_key: <redacted>" in printed
    for secret in ("COMETKEY77", "TOPSECRET123"):
        assert secret not in printed


@pytest.mark.slow
def test_secrets_never_reach_the_run_directory(demo_dir: Path, tmp_path: Path, capsys):
    from salt.cli.main import main

    s3 = {"use_S3": False, "pubKey": "PUBKEY99", "secKey": "TOPSECRET123"}
    extra = f"--data.config_S3={yaml.safe_dump(s3, default_flow_style=True).strip()}"
    assert main(fit_args(demo_dir, tmp_path, "keys", "--trainer.logger=false", extra)) == 0
    out = capsys.readouterr()
    assert "TOPSECRET123" not in out.out + out.err
    for path in (tmp_path / "keys_run").rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".csv", ".json", ".txt"):
            assert "TOPSECRET123" not in path.read_text(errors="replace"), path
