"""Plain helpers shared by the tests (fixtures live in ``conftest.py``): tiny HDF5 files whose
values encode their row numbers, a norm dict for them, ``salt fit`` arguments for seconds-long
runs on the demo files, and small readers of what a run wrote.

Test modules import from here, never from each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import yaml

from salt.data.datamodule import SaltDataModule

REPO = Path(__file__).resolve().parents[1]
TOOLBOX = REPO / "configs" / "toolbox"
TRACK_VARS = ["d0", "z0SinTheta", "numberOfPixelHits"]

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


def make_dm(files: dict[str, Path], **kwargs: Any) -> SaltDataModule:
    """A data module on the tiny files (``tiny_files`` fixture), batches of 50."""
    options: dict[str, Any] = {
        "train_file": str(files["train_a"]),
        "val_file": str(files["train_b"]),
        "norm_dict": str(files["norm"]),
        "variables": {"jets": ["pt", "eta"], "tracks": TRACK_VARS},
        "batch_size": 50,
        "chunk_size": 100,
        "block_size": 20,
    }
    options.update(kwargs)
    return SaltDataModule(**options)


def event_numbers(batches: list[Any]) -> np.ndarray:
    """The jets' event numbers of a list of batches, in order (the tiny files' row numbers)."""
    return np.concatenate([b[2]["jets"]["eventNumber"].numpy() for b in batches])


def last_epoch_ckpt(run: Path) -> dict:
    """The newest epoch checkpoint of a run directory, loaded."""
    path = sorted((run / "ckpts").glob("epoch=*.ckpt"))[-1]
    return torch.load(path, map_location="cpu", weights_only=False)
