"""Loader throughput: salt's training loader vs a raw h5py contiguous read of the same fields.

Prints jets/s for both, measured in the same run on the same file, and their ratio.

    python benchmarks/loader.py [--file data/demo/train.h5] [--jets 200000] [--workers 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import yaml

from salt.data.datamodule import SaltDataModule

JET_VARS = ["pt_btagJes", "eta_btagJes"]
TRACK_VARS = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "configs" / "GN2.yaml").read_text()
)["data"]["variables"]["tracks"]


def raw_read(path: Path, num_jets: int, rows_per_read: int) -> float:
    """Contiguous h5py reads of exactly the fields the loader needs; returns jets/s."""
    start = time.perf_counter()
    with h5py.File(path, "r") as h5:
        jets, tracks = h5["jets"], h5["tracks"]
        for first in range(0, num_jets, rows_per_read):
            last = min(first + rows_per_read, num_jets)
            jets.fields(JET_VARS)[first:last]
            tracks.fields([*TRACK_VARS, "valid"])[first:last]
    return num_jets / (time.perf_counter() - start)


def salt_loader(
    path: Path, norm: Path, num_jets: int, workers: int, batch_size: int
) -> tuple[float, float]:
    """Iterate two epochs of the training loader (shuffled, batches as tensors); returns the
    jets/s of the first (buffers allocated, pipeline filling) and of the second (as every later
    epoch of a training run)."""
    dm = SaltDataModule(
        train_file=str(path),
        val_file=str(path),
        norm_dict=str(norm),
        variables={"jets": JET_VARS, "tracks": TRACK_VARS},
        num_train=num_jets,
        batch_size=batch_size,
        num_workers=workers,
    )
    dm.request_labels({"jets": ["flavour_label"]})
    dm.setup("fit")
    loader = dm.train_dataloader()
    rates = []
    for _ in range(2):
        start = time.perf_counter()
        seen = 0
        for inputs, _, _ in loader:
            seen += inputs["jets"].shape[0]
        assert seen == num_jets
        rates.append(num_jets / (time.perf_counter() - start))
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=Path("data/demo/train.h5"))
    parser.add_argument("--jets", type=int, default=200_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--batch_size", type=int, default=1000)
    args = parser.parse_args()
    tmp = None
    if not args.file.exists():
        from salt.data.demo import generate_demo_data

        tmp = tempfile.TemporaryDirectory()
        paths = generate_demo_data(tmp.name, n_train=args.jets, n_val=1000, n_test=1000)
        args.file = paths["train"]
    norm = args.file.parent / "norm_dict.yaml"
    with h5py.File(args.file) as h5:
        num_jets = min(args.jets, len(h5["jets"]))
    # warm the page cache so both sides read from memory, not disk
    raw_read(args.file, num_jets, 50_000)
    raw_batch = raw_read(args.file, num_jets, args.batch_size)
    raw_block = raw_read(args.file, num_jets, 50_000)
    print(f"file: {args.file}  jets: {num_jets}  batch: {args.batch_size}  tracks: 40")
    print(f"{'reader':<44}{'jets/s':>12}{'ratio':>10}")
    print(f"{f'raw h5py, {args.batch_size}-row reads':<44}{raw_batch:>12,.0f}{1.0:>10.2f}")
    print(f"{'raw h5py, 50k-row reads':<44}{raw_block:>12,.0f}{raw_block / raw_batch:>10.2f}")
    for workers in args.workers:
        first, later = salt_loader(args.file, norm, num_jets, workers, args.batch_size)
        for epoch, rate in (("first epoch", first), ("next epoch", later)):
            label = f"salt loader, {workers} worker(s), {epoch}"
            print(f"{label:<44}{rate:>12,.0f}{rate / raw_batch:>10.2f}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
