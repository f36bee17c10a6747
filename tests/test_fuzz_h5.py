"""Corrupted HDF5 inputs never crash salt's data layer.

Each example damages a small valid FTAG file (truncation, flipped bits, a wrong dtype, NaN/inf
values, a missing ``valid`` field, a dataset of the wrong rank) and runs what ``salt fit`` runs
on it first: ``SaltDataModule.setup("fit")`` and one pass over the training and validation
loaders. Either that succeeds, and every batch is finite float32 with padded entries zero, or it
raises one of salt's user errors (``USER_ERRORS``, or an ``OSError`` from h5py) whose message, as
``salt: error:`` would print it, is one line naming the file. Anything else is a crash.

Examples are derandomised (the same on every run) and not shrunk, to keep the module fast.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import traceback
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from salt.cli.errors import USER_ERRORS, user_message
from salt.data.datamodule import SaltDataModule
from tests.helpers import write_norm_dict, write_tiny_file

NUM_JETS = 120
NUM_TRACKS = 6
VARIABLES = {"jets": ["pt", "eta"], "tracks": ["d0", "z0SinTheta", "numberOfPixelHits"]}
LABELS = {"jets": ["flavour_label"], "tracks": ["ftagTruthOriginLabel"]}
FLOAT_FIELDS = [
    ("jets", "pt"),
    ("jets", "eta"),
    ("jets", "mass"),  # stored but not an input: damage there must go unnoticed
    ("tracks", "d0"),
    ("tracks", "z0SinTheta"),
]
BAD_DTYPES = {
    "string": "S8",
    "compound": [("a", "f4"), ("b", "i4")],
    "subarray": ("f4", (2,)),
    "complex": "c8",
}


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@dataclass
class Workspace:
    """A directory with the norm dict, two valid files and a counter for fresh file names."""

    dir: Path
    norm: Path
    bases: dict[str, Path]
    counter: itertools.count

    def new_path(self, label: str) -> Path:
        # never reuse a name: HDF5 shares metadata of a file that is still open somewhere
        return self.dir / f"{label}_{next(self.counter)}.h5"

    def arrays(self) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        with h5py.File(self.bases["contiguous"], "r") as h5:
            return {k: h5[k][:] for k in h5}, {k: dict(h5[k].attrs) for k in h5}

    def write(self, label: str, data: dict[str, np.ndarray], attrs: dict[str, dict]) -> Path:
        path = self.new_path(label)
        with h5py.File(path, "w") as h5:
            for name, array in data.items():
                ds = h5.create_dataset(name, data=array)
                ds.attrs.update(attrs.get(name, {}))
        return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    directory = tmp_path_factory.mktemp("fuzz_h5")
    contiguous = write_tiny_file(directory / "contiguous.h5", NUM_JETS, num_tracks=NUM_TRACKS)
    chunked = directory / "chunked.h5"  # chunked + gzip: damage hits B-trees and filters too
    with h5py.File(contiguous, "r") as src, h5py.File(chunked, "w") as dst:
        for name, ds in src.items():
            array = ds[:]
            out = dst.create_dataset(
                name, data=array, chunks=(20, *array.shape[1:]), compression="gzip"
            )
            out.attrs.update(dict(ds.attrs))
    norm = write_norm_dict(directory / "norm.yaml")
    bases = {"contiguous": contiguous, "chunked": chunked}
    return Workspace(directory, norm, bases, itertools.count())


def load_everything(path: Path, norm: Path, labels: dict[str, list[str]] = LABELS) -> int:
    """Set up the datamodule on ``path`` and read every batch once; returns the batch count."""
    dm = SaltDataModule(
        train_file=str(path),
        val_file=str(path),
        norm_dict=str(norm),
        variables={k: list(v) for k, v in VARIABLES.items()},
        batch_size=50,
        num_workers=0,
        pin_memory=False,
        persistent_workers=False,
        chunk_size=100,
        block_size=20,
    )
    dm.request_labels(labels)
    batches = 0
    try:
        dm.setup("fit")
        for loader in (dm.train_dataloader(), dm.val_dataloader()):
            for inputs, masks, labels in loader:
                batches += 1
                for name, x in inputs.items():
                    assert x.dtype == torch.float32, (name, x.dtype)
                    assert torch.isfinite(x).all(), f"non-finite {name} input passed"
                for name, mask in masks.items():
                    assert mask.dtype == torch.bool
                    assert (inputs[name][mask] == 0).all(), f"padded {name} entries not zero"
                for fields in labels.values():
                    for values in fields.values():
                        assert values.dtype in (torch.int64, torch.float32)
    finally:
        for dataset in dm.datasets.values():
            dataset.source.close()
    return batches


def outcome(path: Path, norm: Path, labels: dict[str, list[str]] = LABELS) -> str | None:
    """None when everything loads, else the one-line message (checked to name the file)."""
    try:
        batches = load_everything(path, norm, labels)
    except (*USER_ERRORS, OSError) as err:
        message = user_message(err)
        assert "\n" not in message
        assert path.name in message, f"{type(err).__name__}: {message!r} does not name the file"
        return message
    assert batches > 0
    return None


def isolated_outcome(path: Path, norm: Path) -> tuple[str, str | None]:
    """``outcome`` in a worker process: ("ok"|"error", message) or ("crash", traceback)."""
    try:
        return "ok", outcome(path, norm)
    except BaseException:
        return "crash", traceback.format_exc()


class Isolated:
    """Runs examples in a spawned worker, so that libhdf5 dying natively (it can segfault or
    abort on damaged object headers, about once in 1500 random bit flips) fails one example, not
    the test session."""

    def __init__(self) -> None:
        self.pool: ProcessPoolExecutor | None = None
        self.native_crashes = 0

    def __call__(self, path: Path, norm: Path) -> str | None:
        if self.pool is None:
            context = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
        try:
            kind, text = self.pool.submit(isolated_outcome, path, norm).result(timeout=120)
        except BrokenProcessPool:
            # not salt's to fix: the HDF5 library itself crashed on this file
            self.pool = None
            self.native_crashes += 1
            note(f"libhdf5 crashed natively on {path}")
            return None
        assert kind != "crash", text
        return text

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


@pytest.fixture(scope="module")
def isolated():
    runner = Isolated()
    yield runner
    runner.close()


# -- damage to the bytes ------------------------------------------------------------------------
@fuzz_settings(12)
@given(base=st.sampled_from(["contiguous", "chunked"]), fraction=st.floats(0.0, 0.999))
def test_truncated_file(ws: Workspace, base: str, fraction: float):
    raw = ws.bases[base].read_bytes()
    path = ws.new_path(f"truncated_{base}")
    path.write_bytes(raw[: int(len(raw) * fraction)])
    outcome(path, ws.norm)


@fuzz_settings(40)
@given(
    base=st.sampled_from(["contiguous", "chunked"]),
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(1, 8),
)
def test_flipped_bits(ws: Workspace, isolated: Isolated, base: str, seed: int, count: int):
    # positions from a seeded generator: uniform over the file, where hypothesis' own integers
    # would favour the first bytes (the superblock, whose damage is easy to report)
    raw = bytearray(ws.bases[base].read_bytes())
    rng = np.random.default_rng(seed)
    for position, bit in zip(rng.integers(0, len(raw), count), rng.integers(0, 8, count)):
        raw[position] ^= 1 << int(bit)
    path = ws.new_path(f"flipped_{base}")
    path.write_bytes(bytes(raw))
    isolated(path, ws.norm)
    assert isolated.native_crashes <= 3


# -- damage to the content ----------------------------------------------------------------------
def with_field_dtype(array: np.ndarray, field: str, dtype: object) -> np.ndarray:
    """A copy of a structured array whose ``field`` has another dtype (values left zero)."""
    descr = [(n, dtype if n == field else array.dtype[n]) for n in array.dtype.names]
    out = np.zeros(array.shape, dtype=descr)
    for name in array.dtype.names:
        if name != field:
            out[name] = array[name]
    return out


@fuzz_settings(12)
@given(
    target=st.sampled_from([(ds, f) for ds, fields in VARIABLES.items() for f in fields]),
    kind=st.sampled_from(sorted(BAD_DTYPES)),
)
def test_input_field_with_wrong_dtype(ws: Workspace, target: tuple[str, str], kind: str):
    dataset, field = target
    data, attrs = ws.arrays()
    data[dataset] = with_field_dtype(data[dataset], field, BAD_DTYPES[kind])
    path = ws.write(f"dtype_{kind}", data, attrs)
    message = outcome(path, ws.norm)
    assert message is not None and f"{dataset}.{field}" in message


@fuzz_settings(8)
@given(
    target=st.sampled_from(
        [("tracks", "valid"), ("jets", "flavour_label"), ("tracks", "ftagTruthOriginLabel")]
    ),
    kind=st.sampled_from(["string", "compound"]),
)
def test_valid_or_label_field_with_wrong_dtype(ws: Workspace, target: tuple[str, str], kind: str):
    dataset, field = target
    data, attrs = ws.arrays()
    data[dataset] = with_field_dtype(data[dataset], field, BAD_DTYPES[kind])
    path = ws.write(f"dtype_{field}_{kind}", data, attrs)
    message = outcome(path, ws.norm)
    assert message is not None and f"{dataset}.{field}" in message


@fuzz_settings(25)
@given(
    target=st.sampled_from(FLOAT_FIELDS),
    row=st.integers(0, NUM_JETS - 1),
    column=st.integers(0, NUM_TRACKS - 1),
    value=st.sampled_from([math.nan, math.inf, -math.inf]),
)
def test_non_finite_values(
    ws: Workspace, target: tuple[str, str], row: int, column: int, value: float
):
    dataset, field = target
    data, attrs = ws.arrays()
    array = data[dataset]
    index = (row, column) if array.ndim == 2 else (row,)
    array[field][index] = value
    path = ws.write("nonfinite", data, attrs)
    message = outcome(path, ws.norm)
    used = field in VARIABLES[dataset] and (array.ndim == 1 or bool(array["valid"][index]))
    if not used:  # an unused field, or a padded track: zeroed, training goes on
        assert message is None, message
        return
    assert message is not None, "a non-finite input value was not reported"
    assert f"'{dataset}.{field}'" in message and f"row {row}" in message, message


# -- damage to the structure ----------------------------------------------------------------------
def drop_field(array: np.ndarray, field: str) -> np.ndarray:
    names = [n for n in array.dtype.names if n != field]
    return np.ascontiguousarray(array[names]).astype([(n, array.dtype[n]) for n in names])


STRUCTURAL = {
    "missing-valid": lambda d: d.update(tracks=drop_field(d["tracks"], "valid")),
    "missing-input": lambda d: d.update(jets=drop_field(d["jets"], "eta")),
    "missing-label": lambda d: d.update(jets=drop_field(d["jets"], "flavour_label")),
    "tracks-1d": lambda d: d.update(tracks=d["tracks"][:, 0]),
    "tracks-3d": lambda d: d.update(tracks=d["tracks"][:, :, None]),
    "tracks-not-structured": lambda d: d.update(tracks=d["tracks"]["d0"]),
    "jets-2d": lambda d: d.update(jets=np.repeat(d["jets"][:, None], 2, axis=1)),
    "tracks-missing": lambda d: d.pop("tracks"),
    "row-counts-differ": lambda d: d.update(tracks=d["tracks"][:-7]),
}


@fuzz_settings(12)
@given(kind=st.sampled_from(sorted(STRUCTURAL)), rows=st.integers(1, NUM_JETS))
def test_wrong_structure(ws: Workspace, kind: str, rows: int):
    data, attrs = ws.arrays()
    data = {k: v[:rows] for k, v in data.items()}
    STRUCTURAL[kind](data)
    path = ws.write(kind, data, attrs)
    assert outcome(path, ws.norm) is not None


@pytest.mark.parametrize(
    "kind",
    [
        "no-tracks-columns",
        "all-padded",
        pytest.param(
            "no-rows",
        ),
    ],
)
def test_empty_edges(ws: Workspace, kind: str):
    """Edge shapes a real file can have: zero-length constituents, only padding, no rows."""
    data, attrs = ws.arrays()
    if kind == "no-tracks-columns":
        data["tracks"] = data["tracks"][:, :0]
    elif kind == "all-padded":
        data["tracks"]["valid"] = False
        data["tracks"]["d0"] = np.nan  # padding may hold anything
    else:
        data = {k: v[:0] for k, v in data.items()}
    path = ws.write(kind, data, attrs)
    message = outcome(path, ws.norm)
    if kind == "no-rows":
        assert message is not None and "no rows" in message
        return
    # a track task would learn from nothing: named; jet tasks alone train on such jets
    assert message is not None and "'tracks.valid' is False for every constituent" in message
    assert outcome(path, ws.norm, {"jets": LABELS["jets"]}) is None
