"""The LightningDataModule configured under ``data:``."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import h5py
import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from salt.data.batch import SPECIAL_GROUPS, BatchBuilder, InputSpec
from salt.data.dataset import ChunkedH5Dataset, make_loader
from salt.data.h5_source import DatasetRead, H5Source
from salt.data.mixing import Mixture, check_sample_weights
from salt.data.parameters import ParameterSampler, ParameterSpec
from salt.data.paths import is_grouped, resolve_files, resolve_groups
from salt.errors import InputFileError, UserError
from salt.s3.config import S3Config
from salt.utils.h5 import read_class_names
from salt.utils.label_fields import LabelFields, LabelSource, merge_label_fields

log = logging.getLogger(__name__)

# rows whose ``valid`` flags show that a constituent type a task learns from is present at all
VALID_SCAN_ROWS = 10_000

FileSpec = str | list[str] | dict[str, str | list[str]]


def canonical_variables(variables: dict[str, list[str]]) -> dict[str, list[str]]:
    """Accept ``global``/``parameters`` as spellings of the special GLOBAL/PARAMETERS groups."""
    out: dict[str, list[str]] = {}
    for name, names in variables.items():
        key = name.upper() if name.upper() in SPECIAL_GROUPS else name
        if key in out:
            raise ValueError(f"data.variables: '{name}' given twice (as '{key}')")
        if not isinstance(names, list | tuple) or not all(isinstance(v, str) for v in names):
            raise ValueError(f"data.variables.{name}: expected a list of field names")
        out[key] = list(names)
    return out


class SaltDataModule(L.LightningDataModule):
    """FTAG HDF5 training files, read in large contiguous chunks with only the needed fields.

    Args:
        train_file: a path, a glob or a list of paths/globs read as one dataset; or named
            groups of those, ``{group: files}`` (e.g. one group per physics process), which
            are mixed into every chunk (see *Sample mixing* below).
        val_file: as ``train_file``, for validation.
        norm_dict: YAML ``{dataset: {variable: {mean, std}}}``.
        variables: ``{input_type: [fields]}``; the global object is one input type; special
            groups ``GLOBAL`` (jet features added after pooling) and ``PARAMETERS``.
        test_file: as ``train_file``, for ``salt test``/``predict``.
        class_dict: YAML ``{dataset: {label: [weights]}}`` for tasks with ``use_class_dict``.
        global_object: the per-jet input type.
        input_map: ``{internal_name: h5_dataset_name}`` when they differ.
        num_inputs: keep only the first N constituents, e.g. ``{tracks: 10}``.
        num_train: rows to use for training (-1 = all); same for ``num_val``/``num_test``.
        batch_size: jets per batch.
        num_workers: DataLoader worker processes.
        pin_memory: page-locked host memory for faster GPU transfer (ignored without CUDA).
        persistent_workers: keep workers alive between epochs.
        chunk_size: rows loaded and shuffled together (up to three chunks are in memory per
            loader or worker: one handed out, one being converted, one being read).
        block_size: rows per contiguous read; blocks are permuted every epoch.
        seed: base of the per-epoch shuffles.
        sample_weights: ``{group: weight}``, the share of each group of ``train_file`` (and of
            a grouped ``val_file``) in every chunk and epoch; relative numbers, normalised by
            their sum. Default: proportional to each group's rows.
        weight_field: a field of the global object's dataset (e.g. ``weight``) holding a
            per-jet training weight: every task loss becomes the weighted mean of its
            per-jet losses (constituent-level tasks give each constituent its jet's weight).
            Read for training and validation, not for ``salt test``.
        non_finite_to_num: replace NaN and +-inf in the inputs by 0 instead of stopping with
            an error naming the first one (for files with known gaps, e.g. soft-muon variables
            of jets without a muon).
        PARAMETERS: for parameterised networks, ``{variable: {train: [values], test: value,
            prob: [probabilities]}}`` per variable of ``variables.PARAMETERS``: background jets
            get a value drawn from ``train`` (with ``prob``) in training and validation, all
            jets get ``test`` in ``salt test``.
        config_S3: data and run directory on S3 (``use_S3``, ``download_S3``, ``pubKey``,
            ``secKey``, ``url``, ``bucket``, ``download_path``, ``download_files``; see
            :class:`salt.s3.config.S3Config`). The CLI acts on it before this module is built
            (downloads, local paths, keys hidden); the module itself only reads local files.

    Sample mixing:
        Files are often written one process at a time (``ttbar``, ``zprime``, ...). Give them
        as named groups, optionally with sampling weights::

            data:
              train_file:
                ttbar: [/data/ttbar_part1.h5, /data/ttbar_part2.h5]
                zprime: /data/zprime_*.h5
              val_file:
                ttbar: /data/val_ttbar.h5
                zprime: /data/val_zprime.h5
              sample_weights: {ttbar: 0.7, zprime: 0.3}   # optional
              weight_field: weight                         # optional, per-jet weights

        Every chunk of ``chunk_size`` rows then takes a stretch of rows from every file of every
        group (still as contiguous reads), the groups in proportion to ``sample_weights`` and
        the files of a group in proportion to their rows, and is shuffled, so every batch mixes
        the processes. The order is a function of (``seed``, epoch), sharded by rank then
        worker with the same number of steps on every rank.

        An epoch never draws a row twice. It holds ``num_train`` rows, or by default as many as
        the weights allow: all rows of all groups with the default (proportional) weights;
        with other weights the epoch ends where the first group runs out, the other groups
        contributing a subset of their rows that changes from epoch to epoch (their blocks are
        permuted anew). ``num_train`` larger than that is an error naming the group. A grouped
        ``val_file`` is mixed the same way, unshuffled (the same rows every epoch, the first
        ones of each file when ``num_val`` or the weights take a subset). A grouped
        ``test_file`` is read group after group, every row once, in file order.
    """

    def __init__(
        self,
        train_file: FileSpec,
        val_file: FileSpec,
        norm_dict: str,
        variables: dict[str, list[str]],
        test_file: FileSpec | None = None,
        class_dict: str | None = None,
        global_object: str = "jets",
        input_map: dict[str, str] | None = None,
        num_inputs: dict[str, int] | None = None,
        num_train: int = -1,
        num_val: int = -1,
        num_test: int = -1,
        batch_size: int = 1000,
        num_workers: int = 0,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        chunk_size: int = 50_000,
        block_size: int = 5_000,
        seed: int = 42,
        sample_weights: dict[str, float] | None = None,
        weight_field: str | None = None,
        non_finite_to_num: bool = False,
        PARAMETERS: dict[str, ParameterSpec] | None = None,
        config_S3: S3Config | None = None,
    ):
        super().__init__()
        del config_S3  # used by salt.s3.cli.prepare_s3 on the parsed config, not here
        self.files = {"train": train_file, "val": val_file, "test": test_file}
        self.norm_dict = norm_dict
        self.class_dict = class_dict
        self.variables = canonical_variables(variables)
        self.global_object = global_object
        self.input_map = dict(input_map or {})
        self.num_inputs = dict(num_inputs or {})
        self.num_rows = {"train": int(num_train), "val": int(num_val), "test": int(num_test)}
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.chunk_size = chunk_size
        self.block_size = block_size
        self.seed = seed
        self.sample_weights = dict(sample_weights) if sample_weights is not None else None
        self.weight_field = weight_field
        self.non_finite_to_num = non_finite_to_num
        self._check_groups()
        self._check_sizes()
        self.parameters = (
            ParameterSampler(PARAMETERS, self.variables.get("PARAMETERS", []))
            if PARAMETERS
            else None
        )
        self.label_fields: LabelFields = {}
        self.datasets: dict[str, ChunkedH5Dataset] = {}
        self._row_notes: dict[str, str] = {}
        if self.global_object not in self.variables:
            raise ValueError(
                f"data.variables: the global object '{global_object}' needs an entry "
                "(an empty list if no jet variables are used)"
            )
        for name, count in self.num_inputs.items():
            if name not in self.variables or name == self.global_object:
                raise ValueError(
                    f"data.num_inputs: '{name}' is not a constituent input type "
                    f"(expected one of {self.constituent_names})"
                )
            if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
                raise UserError(
                    f"data.num_inputs.{name}: expected a positive number of constituents per "
                    f"row, got {count!r}"
                )

    def _check_sizes(self) -> None:
        """Batch and row counts that cannot work, named before anything is read."""
        for key in ("batch_size", "chunk_size", "block_size"):
            value = getattr(self, key)
            if isinstance(value, int) and value <= 0:
                raise UserError(f"data.{key}: expected a positive number, got {value}")
        for split, rows in self.num_rows.items():
            if rows == 0 or rows < -1:
                raise UserError(
                    f"data.num_{split}: expected a positive number of rows or -1 (all), got {rows}"
                )
        if self.num_workers < 0:
            raise UserError(f"data.num_workers: expected 0 or more, got {self.num_workers}")

    def _check_groups(self) -> None:
        """Sample weights name the groups of every grouped training/validation file spec."""
        if self.weight_field is not None and not self.weight_field:
            raise ValueError("data.weight_field: expected a field name (or null for no weights)")
        if self.sample_weights is None:
            return
        if not is_grouped(self.files["train"]):
            raise ValueError(
                "data.sample_weights: data.train_file must be named groups ({group: files}) "
                "for sample weights"
            )
        for split in ("train", "val"):
            spec = self.files[split]
            if isinstance(spec, dict):
                check_sample_weights(self.sample_weights, list(spec), f"{split}_file")

    # -- what the rest of salt asks the data layer -----------------------------------------
    @property
    def constituent_names(self) -> list[str]:
        return [n for n in self.variables if n != self.global_object and n not in SPECIAL_GROUPS]

    def dataset_name(self, input_name: str) -> str:
        """The HDF5 dataset an internal input type (or special group) is read from."""
        if input_name in SPECIAL_GROUPS:
            input_name = self.global_object
        return self.input_map.get(input_name, input_name)

    def read_labels_of(self, model: LabelSource) -> None:
        """Read the label fields ``model`` learns from (its tasks and regularisers name
        them), asked once when the run is built."""
        self.request_labels(model.label_fields())

    def request_labels(self, fields: Mapping[str, Iterable[str]]) -> None:
        """Read these label fields as well, e.g. the jet fields a predictions file carries."""
        self.label_fields = merge_label_fields(self.label_fields, fields)

    def first_file(self, split: str = "train") -> Path:
        spec = self.files[split]
        if spec is None:
            raise ValueError(f"data.{split}_file is not set")
        return resolve_files(spec, f"{split}_file")[0]

    def class_names(self, input_name: str, label: str) -> list[str] | None:
        """Class names stored as an attribute named after the label on the input's dataset."""
        path = self.first_file("train" if self.files["train"] else "test")
        return read_class_names(path, self.dataset_name(input_name), label)

    def label_values(
        self, input_name: str, label: str, max_rows: int = 200_000, split: str = "train"
    ) -> np.ndarray:
        """The distinct values of a label in the first ``max_rows`` rows of a split.

        With groups the rows are shared out over all files, so that every process is looked at.

        Raises:
            UserError: the label is stored as floating point (labels are integers; a float
                label would be truncated silently).
        """
        spec = self.files[split]
        files = resolve_files(spec, f"{split}_file")  # type: ignore[arg-type]
        dataset = self.dataset_name(input_name)
        seen: list[np.ndarray] = []
        remaining = max_rows if self.num_rows[split] < 0 else self.num_rows[split]
        per_file = -(-remaining // len(files)) if is_grouped(spec) else remaining
        for path in files:
            if remaining <= 0:
                break
            with h5py.File(path, "r") as h5:
                stored = (
                    h5[dataset].dtype[label] if label in (h5[dataset].dtype.names or ()) else None
                )
                if stored is not None and stored.kind == "f":
                    raise UserError(
                        f"data.{split}_file: '{path}' stores the label '{dataset}.{label}' as "
                        f"{stored}; expected an integer field"
                    )
                column = h5[dataset].fields([label])[: min(per_file, remaining)][label]
            remaining -= len(column)
            seen.append(np.unique(column))
        return np.unique(np.concatenate(seen)) if seen else np.array([], dtype=np.int64)

    # -- building datasets ------------------------------------------------------------------
    def _specs(self) -> list[InputSpec]:
        specs = []
        for name, names in self.variables.items():
            constituent = name in self.constituent_names
            specs.append(InputSpec(name, self.dataset_name(name), names, constituent))
        return specs

    def _reads(self, specs: list[InputSpec], weighted: bool = False) -> dict[str, DatasetRead]:
        reads: dict[str, DatasetRead] = {}
        for spec in specs:
            read = reads.setdefault(spec.dataset, DatasetRead())
            read.add(spec.variables)
            if spec.constituent:
                read.add(["valid"])
                read.max_len = self.num_inputs.get(spec.name)
        for name, fields in self.label_fields.items():
            reads.setdefault(self.dataset_name(name), DatasetRead()).add(fields)
        if weighted and self.weight_field is not None:
            reads.setdefault(self.dataset_name(self.global_object), DatasetRead()).add(
                [self.weight_field]
            )
        return reads

    def _mixture(self, source: H5Source, groups: dict[str, list[Path]], split: str) -> Mixture:
        """How many rows of each file of each group one epoch draws."""
        file_rows: dict[str, list[int]] = {}
        index = 0
        for name, files in groups.items():
            file_rows[name] = source.rows_per_file[index : index + len(files)]
            index += len(files)
        return Mixture.build(file_rows, self.sample_weights, self.num_rows[split], f"{split}_file")

    def _file_groups(self, split: str) -> tuple[dict[str, list[Path]], bool]:
        """The split's files by group, and whether they are mixed (named groups, not test).

        An ungrouped spec is one group named ``""``; so is a grouped test file, which is read
        group after group in file order so that predictions line up with the files.
        """
        spec = self.files[split]
        if spec is None:
            raise ValueError(f"data.{split}_file is not set (needed for this command)")
        key = f"{split}_file"
        if is_grouped(spec) and split != "test":
            return resolve_groups(spec, key), True  # type: ignore[arg-type]
        return {"": resolve_files(spec, key)}, False

    def build_dataset(self, split: str) -> ChunkedH5Dataset:
        key = f"{split}_file"
        groups, mixed = self._file_groups(split)
        files = [f for group in groups.values() for f in group]
        weight = None
        if self.weight_field is not None and split != "test":
            weight = (self.dataset_name(self.global_object), self.weight_field)
        specs = self._specs()
        source = H5Source(files, self._reads(specs, weight is not None), key)
        if weight is not None:  # often added to some samples only: look at every file
            for index in range(len(files)):
                self._check_weight_field(source, index)
        for index in range(len(files)):  # one file of many may lack a variable
            self._check_fields(source, specs, index)
            self._check_same_shape(source, index)
        self._check_num_inputs(source, specs)
        if split in ("train", "val"):
            self._check_constituents_present(source, specs)
        mixture = self._mixture(source, groups, split) if mixed else None
        num_rows = mixture.num_rows if mixture is not None else self._num_rows(split, source)
        labels = {n: (self.dataset_name(n), f) for n, f in self.label_fields.items()}
        builder = BatchBuilder(
            specs,
            labels,
            description=", ".join(map(str, files)),
            parameters=self.parameters,
            parameter_mode="test" if split == "test" else "train",
            weight=weight,
            non_finite_to_num=self.non_finite_to_num,
        )
        dataset = ChunkedH5Dataset(
            source,
            builder,
            num_rows,
            self.batch_size,
            shuffle=split == "train",
            chunk_size=self.chunk_size,
            block_size=self.block_size,
            seed=self.seed,
            mixture=mixture,
        )
        # said when the split's loader is made: a dataset built to check the inputs before
        # training (and failing on the next one) prints nothing but the error
        if mixture is not None:
            self._row_notes[split] = f"{split}: {num_rows} rows per epoch ({mixture.describe()})"
        else:
            self._row_notes[split] = f"{split}: {num_rows} rows from {len(files)} file(s)"
        return dataset

    def _say_rows(self, split: str) -> None:
        note = self._row_notes.pop(split, None)
        if note is not None:
            log.info("%s", note)

    def _num_rows(self, split: str, source: H5Source) -> int:
        """Rows of an unmixed split: ``num_<split>`` first rows, or all of them."""
        available = source.num_rows
        names = ", ".join(map(str, source.files))
        if available == 0:
            raise ValueError(f"data.{split}_file: {names} has no rows")
        wanted = self.num_rows[split]
        if wanted > available:
            raise ValueError(
                f"data.num_{split}={wanted} is larger than the {available} rows in {names}"
            )
        return available if wanted < 0 else wanted

    def _check_weight_field(self, source: H5Source, index: int) -> None:
        """The weight field exists in file ``index`` and is numeric."""
        where = source.files[index]
        dataset = self.dataset_name(self.global_object)
        dtype = source.dtype(dataset, index)
        names = dtype.names or ()
        if self.weight_field not in names:
            raise KeyError(
                f"{where}: weight field '{self.weight_field}' (data.weight_field) not found in "
                f"dataset '{dataset}' (available: {', '.join(names)})"
            )
        if dtype[self.weight_field].kind not in "fiu":
            raise TypeError(
                f"{where}: weight field '{dataset}.{self.weight_field}' has dtype "
                f"{dtype[self.weight_field]} (expected a number)"
            )

    def _check_num_inputs(self, source: H5Source, specs: list[InputSpec]) -> None:
        """``num_inputs`` keeps the first N constituents: more than a row holds is a mistake
        (the network would be sized and documented for constituents that never come)."""
        for spec in specs:
            wanted = self.num_inputs.get(spec.name)
            if wanted is None or not spec.constituent:
                continue
            stored = source.shape(spec.dataset, 0)[1]
            if wanted > stored:
                raise UserError(
                    f"data.num_inputs.{spec.name}={wanted}, but the rows of '{spec.dataset}' in "
                    f"{source.files[0]} hold {stored} constituents"
                )

    def _check_constituents_present(self, source: H5Source, specs: list[InputSpec]) -> None:
        """A constituent type that a task learns from has a valid constituent in the first rows
        of every file: an all-padded file (wrong ``valid`` flags, a broken dump) would train
        that task on nothing, with a loss of 0, and nobody would notice."""
        for spec in specs:
            fields = self.label_fields.get(spec.name)
            if not spec.constituent or not fields:
                continue
            for index, path in enumerate(source.files):
                rows = min(VALID_SCAN_ROWS, source.shape(spec.dataset, index)[0])
                if rows and not source.any_true(spec.dataset, "valid", index, rows):
                    raise InputFileError(
                        f"{path}: '{spec.dataset}.valid' is False for every constituent of the "
                        f"first {rows} rows, but tasks learn from its labels "
                        f"({', '.join(sorted(fields))}); check the file's valid flags or leave "
                        "those tasks out"
                    )

    @staticmethod
    def _check_same_shape(source: H5Source, index: int) -> None:
        """Rows of file ``index`` hold as many constituents as those of the first file (the
        batches of several files are read into one array)."""
        for dataset in source.reads:
            first, shape = source.shape(dataset, 0)[1:], source.shape(dataset, index)[1:]
            if shape != first:
                raise InputFileError(
                    f"{source.files[index]}: dataset '{dataset}' has rows of shape {shape}, "
                    f"but {source.files[0]} has {first}; the files of data.{source.key} must "
                    "agree"
                )

    def _check_fields(self, source: H5Source, specs: list[InputSpec], index: int = 0) -> None:
        """Fields, dtypes and shapes of file ``index`` (every file is checked)."""
        where = source.files[index]
        for dataset, read in source.reads.items():
            dtype = source.dtype(dataset, index)
            if dtype.names is None:
                raise ValueError(f"{where}: dataset '{dataset}' is not a structured array")
            for name in read.fields:
                if name not in dtype.names:
                    raise KeyError(
                        f"{where}: variable '{name}' not found in dataset '{dataset}' "
                        f"(available: {', '.join(dtype.names)})"
                    )
                kind = dtype[name].kind
                if name == "valid" and kind != "b":
                    raise TypeError(
                        f"{where}: '{dataset}.valid' has dtype {dtype[name]} (expected bool)"
                    )
                if kind not in "fiub":
                    raise TypeError(
                        f"{where}: '{dataset}.{name}' has dtype {dtype[name]} "
                        "(inputs and labels must be numeric)"
                    )
        for spec in specs:
            dtype = source.dtype(spec.dataset, index)
            for var in spec.variables:
                if dtype[var].kind not in "fiub":
                    raise TypeError(
                        f"{where}: '{spec.dataset}.{var}' has dtype {dtype[var]} "
                        "(inputs must be numeric)"
                    )
            ndim = len(source.shape(spec.dataset, index))
            if spec.constituent and ndim != 2:
                raise ValueError(
                    f"{where}: '{spec.dataset}' has {ndim} dimension(s), expected 2 (rows, "
                    "constituents) for a constituent input"
                )
            if not spec.constituent and ndim != 1:
                raise ValueError(f"{where}: '{spec.dataset}' has {ndim} dimensions, expected 1")

    def setup(self, stage: str) -> None:
        splits = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"]}
        for split in splits.get(stage, ["test"]):
            self.datasets[split] = self.build_dataset(split)
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            for dataset in self.datasets.values():
                dataset.set_distributed(trainer.global_rank, trainer.world_size)

    def _loader(self, split: str) -> DataLoader:
        self._say_rows(split)
        return make_loader(
            self.datasets[split], self.num_workers, self.pin_memory, self.persistent_workers
        )

    def _batches_done(self) -> int | None:
        """Training batches of this epoch the trainer has processed (saved in checkpoints)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return None
        return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def _training_epoch(self) -> int | None:
        """The epoch the trainer is about to train (also right after a resume)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return None
        return int(trainer.fit_loop.epoch_progress.current.processed)

    def train_dataloader(self) -> DataLoader:
        self._say_rows("train")
        return make_loader(
            self.datasets["train"],
            self.num_workers,
            self.pin_memory,
            self.persistent_workers,
            batches_done=self._batches_done,
            epoch=self._training_epoch,
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
