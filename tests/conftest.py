"""Shared fixtures: tiny hand-made FTAG files (exact checks) and a small demo dataset."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

CLASS_NAMES = ["bjets", "cjets", "ujets"]


def write_tiny_file(path: Path, num_jets: int, offset: int = 0, num_tracks: int = 6) -> Path:
    """Jets whose fields encode their global row number, so reads can be checked exactly.

    Jet ``i`` (global row ``offset + i``) has ``eventNumber = offset + i``, ``pt = 10 * row``
    and ``(row % 5) + 1`` valid tracks (capped at ``num_tracks``) with ``d0 = row + j / 100``.
    """
    rows = np.arange(offset, offset + num_jets)
    jets = np.zeros(
        num_jets,
        dtype=[
            ("pt", "f4"),
            ("eta", "f4"),
            ("mass", "f2"),
            ("eventNumber", "i8"),
            ("flavour_label", "i4"),
            ("HadronConeExclTruthLabelID", "i4"),
        ],
    )
    jets["pt"] = 10.0 * rows
    jets["eta"] = np.sin(rows)
    jets["mass"] = 1.0
    jets["eventNumber"] = rows
    jets["flavour_label"] = rows % 3
    jets["HadronConeExclTruthLabelID"] = np.array([5, 4, 0])[rows % 3]
    tracks = np.zeros(
        (num_jets, num_tracks),
        dtype=[
            ("d0", "f4"),
            ("z0SinTheta", "f4"),
            ("numberOfPixelHits", "u1"),
            ("ftagTruthOriginLabel", "i1"),
            ("valid", "?"),
        ],
    )
    n_valid = np.minimum(rows % 5 + 1, num_tracks)
    cols = np.arange(num_tracks)
    valid = cols[None, :] < n_valid[:, None]
    tracks["valid"] = valid
    tracks["d0"] = np.where(valid, rows[:, None] + cols[None, :] / 100.0, 0.0)
    tracks["z0SinTheta"] = np.where(valid, 2.0, 0.0)
    tracks["numberOfPixelHits"] = np.where(valid, 3, 0)
    tracks["ftagTruthOriginLabel"] = np.where(valid, cols[None, :] % 8, -1)
    with h5py.File(path, "w") as h5:
        ds = h5.create_dataset("jets", data=jets)
        ds.attrs["flavour_label"] = np.array(CLASS_NAMES, dtype="S")
        h5.create_dataset("tracks", data=tracks)
    return path


def write_norm_dict(path: Path) -> Path:
    norm = {
        "jets": {"pt": {"mean": 100.0, "std": 50.0}, "eta": {"mean": 0.0, "std": 0.5}},
        "tracks": {
            "d0": {"mean": 1.0, "std": 2.0},
            "z0SinTheta": {"mean": 0.5, "std": 4.0},
            "numberOfPixelHits": {"mean": 3.0, "std": 1.0},
        },
    }
    path.write_text(yaml.safe_dump(norm))
    return path


@pytest.fixture
def tiny_files(tmp_path: Path) -> dict[str, Path]:
    """Two train files (rows 0..299 and 300..499), plus a norm dict."""
    return {
        "train_a": write_tiny_file(tmp_path / "train_a.h5", 300, 0),
        "train_b": write_tiny_file(tmp_path / "train_b.h5", 200, 300),
        "norm": write_norm_dict(tmp_path / "norm.yaml"),
    }


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo dataset shared by the end-to-end tests."""
    from salt.data.demo import generate_demo_data

    out = tmp_path_factory.mktemp("demo")
    generate_demo_data(out, n_train=3000, n_val=1000, n_test=1000, seed=1, block_size=2000)
    return out


@pytest.fixture(autouse=True)
def log_handlers_on_current_stderr():
    """Point the stream handlers of salt's, Lightning's and Comet's loggers at this test's stderr.

    They are created once, bound to the stderr of that moment (an earlier test's capture, closed
    since); rebinding them lets captured stderr hold what a user would see, and keeps later
    tests free of "I/O operation on closed file" logging errors.
    """
    names = ("salt", "lightning", "lightning.pytorch", "lightning.fabric", "comet_ml")
    handlers = [
        handler
        for name in names
        for handler in logging.getLogger(name).handlers
        if type(handler) is logging.StreamHandler
    ]
    saved = [handler.stream for handler in handlers]
    for handler in handlers:
        handler.stream = sys.stderr  # not setStream: it flushes the old, maybe closed, stream
    yield
    for handler, stream in zip(handlers, saved):
        handler.stream = stream


REPO = Path(__file__).resolve().parents[1]


def demo_fit_args(
    demo: Path,
    root: Path,
    name: str,
    *extra: str,
    configs: tuple[str, ...] = ("GN2.yaml", "GN2_demo.yaml"),
    suffix: str = "run",
) -> list[str]:
    """``salt fit`` arguments for a seconds-long fit on the demo files: 300 training jets,
    batches of 100, 2 epochs, 8 tracks; the run lands in ``root/<name>_<suffix>``. ``extra``
    comes after the configs, so later fixed options still win over it."""
    config_args = [a for c in configs for a in ("--config", str(REPO / "configs" / c))]
    return [
        "fit",
        *config_args,
        *extra,
        f"--data.train_file={demo / 'train.h5'}",
        f"--data.val_file={demo / 'val.h5'}",
        f"--data.test_file={demo / 'test.h5'}",
        f"--data.norm_dict={demo / 'norm_dict.yaml'}",
        f"--data.class_dict={demo / 'class_dict.yaml'}",
        "--data.num_inputs={tracks: 8}",
        "--data.num_train=300",
        "--data.num_val=100",
        "--data.batch_size=100",
        "--data.num_workers=0",
        "--trainer.max_epochs=2",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}",
        f"--log_suffix={suffix}",
        "-n",
        name,
    ]
