"""Checkpoints are read without running code: crafted, empty, truncated and foreign files are
refused in one line naming them (and the newest intact checkpoint beside a broken one)."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import h5py
import pytest
import torch

from salt.safe_load import CheckpointError, load_checkpoint
from tests.helpers import demo_fit_args as fit_args

MARKER_ENV = "SALT_TEST_PWNED_MARKER"


class RunsCode:
    """Unpickling this calls ``os.system``: the attack a checkpoint must not be able to make."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {}, "callbacks": {"x": RunsCode(marker)}}, path)
    return path


def lightning_like(path: Path) -> Path:
    torch.save(
        {
            "epoch": 1,
            "global_step": 4,
            "state_dict": {"w": torch.ones(3)},
            "callbacks": {"ModelCheckpoint": {"dirpath": Path("/runs/x/ckpts")}},
        },
        path,
    )
    return path


def test_a_checkpoint_of_tensors_numbers_and_paths_loads(tmp_path: Path):
    content = load_checkpoint(lightning_like(tmp_path / "good.ckpt"))
    assert torch.equal(content["state_dict"]["w"], torch.ones(3))
    assert content["callbacks"]["ModelCheckpoint"]["dirpath"] == Path("/runs/x/ckpts")


def test_a_checkpoint_that_would_run_code_is_refused_unopened(tmp_path: Path):
    marker = tmp_path / "pwned"
    with pytest.raises(CheckpointError, match=r"evil\.ckpt' refers to posix\.system"):
        load_checkpoint(crafted(tmp_path / "evil.ckpt", marker))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
        (lambda p: p.write_text("model: 1\n"), "is not a checkpoint written by torch.save"),
        (lambda p: h5py.File(p, "w").close(), "is an HDF5 file"),
        (lambda p: p.write_bytes(pickle.dumps({"a": 1})), "not a checkpoint written by"),
        (lambda p: torch.save({"w": torch.ones(1)}, p), "has no 'state_dict'"),
        (lambda p: torch.save([1, 2], p), "holds a list"),
    ],
)
def test_broken_and_foreign_files_are_named(tmp_path: Path, make, expected: str):
    path = tmp_path / "x.ckpt"
    make(path)
    with pytest.raises(CheckpointError, match=expected) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_truncated_checkpoint_names_the_newest_intact_one(tmp_path: Path):
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    older = lightning_like(ckpts / "epoch=000-val_loss=1.0.ckpt")
    newer = lightning_like(ckpts / "epoch=001-val_loss=0.9.ckpt")
    os.utime(older, (1, 1))
    data = newer.read_bytes()
    last = ckpts / "last.ckpt"
    last.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(last)
    message = str(info.value)
    assert f"'{last}' is truncated" in message and f"'{newer}'" in message
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt' does not exist"):
        load_checkpoint(ckpts / "nope.ckpt")


# -- through the commands -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from salt.cli.main import main

    root = tmp_path_factory.mktemp("safe")
    assert main(fit_args(demo_dir, root, "safe", "--trainer.logger=false")) == 0
    return root / "safe_run"


def last_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines, "nothing on stderr"
    return lines[-1]


@pytest.mark.slow
def test_salt_test_and_to_onnx_refuse_a_crafted_checkpoint(trained: Path, tmp_path, capsys):
    from salt.cli.main import main
    from salt.export.cli import to_onnx_main

    marker = tmp_path / "pwned"
    evil = crafted(trained / "ckpts" / "evil.ckpt", marker)
    try:
        code = main(["test", "--config", str(trained / "config.yaml"), f"--ckpt_path={evil}"])
        assert code == 2
        line = last_error(capsys)
        assert line.startswith("salt: error:") and "evil.ckpt' refers to posix.system" in line
        assert to_onnx_main(["--ckpt_path", str(evil), "--output", str(tmp_path / "x.onnx")]) == 2
        assert "evil.ckpt' refers to posix.system" in last_error(capsys)
    finally:
        evil.unlink()
    assert not marker.exists()
    assert not list((trained / "ckpts").glob("*evil*"))


@pytest.mark.slow
def test_resume_from_a_truncated_last_ckpt_names_the_intact_one(trained: Path, capsys):
    from salt.cli.main import main

    ckpts = trained / "ckpts"
    last = ckpts / "last.ckpt"
    saved = ckpts.parent / "last.ckpt.saved"
    shutil.copy(last, saved)
    try:
        data = last.read_bytes()
        last.write_bytes(data[: len(data) // 3])
        code = main(["fit", "--config", str(trained / "config.yaml"), "--ckpt_path=last"])
        assert code == 2
        line = last_error(capsys)
        assert f"'{last}' is truncated" in line and "epoch=001" in line
    finally:
        shutil.move(saved, last)


@pytest.mark.slow
def test_to_onnx_replaces_a_cut_off_file_without_overwrite(trained: Path, tmp_path, capsys):
    from salt.export.cli import to_onnx_main

    ckpt = sorted((trained / "ckpts").glob("epoch=*.ckpt"))[-1]
    out = tmp_path / "network.onnx"
    out.write_bytes(b"\x08\x07\x12")  # the first bytes of an interrupted write
    args = ["--ckpt_path", str(ckpt), "--output", str(out), "--parity_jets", "0"]
    assert to_onnx_main(args) == 0
    assert out.stat().st_size > 1000
    assert to_onnx_main(args) == 2  # a complete file still needs --overwrite
    assert "exists; pass --overwrite" in last_error(capsys)
