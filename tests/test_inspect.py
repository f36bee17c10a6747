"""``salt inspect`` reports datasets, fields, rows, constituent occupancy and class fractions."""

from __future__ import annotations

from pathlib import Path

import ftag
import h5py
import numpy as np
import pytest

from salt.data.demo import generate_demo_data
from salt.data.inspect_file import inspect_file, inspect_main


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("inspect")
    return generate_demo_data(out, n_train=1200, n_val=0, n_test=0, seed=3)["train"]


def test_report_on_demo_file(demo_file: Path) -> None:
    report = inspect_file(demo_file)
    assert str(demo_file) in report
    for name, shape in (("jets", "(1200,)"), ("tracks", "(1200, 40)"), ("electrons", "(1200, 5)")):
        assert f"dataset '{name}': shape {shape}, 1,200 rows" in report
    for field in ("IP3D_signed_d0_significance", "numberOfPixelHits", "pt_frac", "eventNumber"):
        assert field in report
    with h5py.File(demo_file, "r") as f:
        jets = f["jets"][:]
        n_valid = f["tracks"].fields("valid")[:].sum(axis=1)
    # Class fractions use the class names stored on the jets dataset.
    fractions = np.bincount(jets["flavour_label"], minlength=4) / len(jets)
    for name, fraction in zip(("bjets", "cjets", "ujets", "taujets"), fractions):
        line = next(line for line in report.splitlines() if f" {name} " in line)
        assert line.strip().endswith(f"{fraction:.2%}")
    assert "HadronConeExclTruthLabelID fractions" in report
    assert "FromB" in report  # track origin fractions
    # Valid-constituent statistics of the tracks.
    stats = report.split("valid entries per row (of 40):")[1].splitlines()[3].split()
    assert stats[:3] == [f"{n_valid.mean():.2f}", str(n_valid.min()), str(n_valid.max())]
    assert stats[3] == "0.00%"


def test_report_on_ftag_mock_file() -> None:
    path, handle = ftag.get_mock_file()
    handle.close()
    report = inspect_file(path)
    assert "group 'cutBookkeeper/'" in report
    assert "dataset 'cutBookkeeper/nominal/counts'" in report
    assert "dataset 'tracks': shape (1000, 40), 1,000 rows" in report
    assert "HadronConeExclTruthLabelID fractions" in report
    assert "light" in report and "MockTagger_pb" in report
    assert "valid entries per row (of 40)" in report


def test_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.h5"
    with pytest.raises(FileNotFoundError, match=r"missing\.h5"):
        inspect_file(missing)
    not_hdf5 = tmp_path / "notes.h5"
    not_hdf5.write_text("not an HDF5 file")
    with pytest.raises(ValueError, match=r"notes\.h5.*not a readable HDF5 file"):
        inspect_file(not_hdf5)


def test_cli(demo_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert inspect_main([str(demo_file)]) == 0
    assert "dataset 'jets'" in capsys.readouterr().out
    assert inspect_main([str(demo_file), str(tmp_path / "missing.h5")]) == 2  # a user error
    captured = capsys.readouterr()
    assert "dataset 'jets'" in captured.out
    assert "missing.h5" in captured.err


def test_a_closed_pipe_ends_quietly(demo_file: Path) -> None:
    """``salt inspect FILE | head -1``: no BrokenPipeError traceback, exit code 0."""
    import subprocess
    import sys

    reader = subprocess.Popen(["head", "-c", "10"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    inspect = subprocess.run(
        [sys.executable, "-m", "salt", "inspect", *[str(demo_file)] * 40],  # > a pipe buffer
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    reader.stdin.close()
    assert reader.stdout.read() == b"file " + str(demo_file).encode()[:5]
    reader.wait(timeout=10)
    assert inspect.returncode == 0, inspect.stderr
    assert "Traceback" not in inspect.stderr and "BrokenPipe" not in inspect.stderr


def test_an_empty_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    assert inspect_main([str(empty)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"salt inspect: error: {empty}: empty file (0 bytes), expected an HDF5 file"
    )
