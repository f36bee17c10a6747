"""Bad input through the real command line: one line on stderr, exit code 2, nothing written.

Every case of the table runs ``salt.cli.main.main([...])`` in-process on a tiny copy of the demo
data and checks the contract of DESIGN.md ("Errors for people"):

- the exit code is 2;
- stderr holds exactly one ``salt: error:`` line, it is the last line, and there is no traceback;
- the message names the key, file or variable at fault (substring checks);
- nothing was written or changed: the case's directory (the default root dir, the generated
  input files) and, for the output cases, a pre-existing run directory and predictions file keep
  the same names, sizes and modification times.

The runtime cases (a NaN loss, a NaN input) may leave a run directory behind, since they stop a
run that had started, but its metadata must not say "finished".
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from salt.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [
    "--config",
    str(ROOT / "configs" / "GN2.yaml"),
    "--config",
    str(ROOT / "configs" / "GN2_demo.yaml"),
    "--config",
    str(ROOT / "configs" / "GN2_noaux.yaml"),
]
FAST = [
    "--data.num_train=200",
    "--data.num_val=100",
    "--data.batch_size=100",
    "--data.num_workers=0",
    "--trainer.max_epochs=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]
TRAIN_ROWS = 300  # rows of the edited copies of the demo training file


# -- the environment a case runs in ---------------------------------------------------------------
@dataclass
class Env:
    """Paths of one case: the shared demo data, a fresh directory and its default root dir."""

    demo: Path
    tmp: Path
    run: Path | None = None  # the module's finished run (output cases)

    @property
    def logs(self) -> Path:
        return self.tmp / "logs"

    def files(self, **override: str | Path | None) -> list[str]:
        """``--data.*`` arguments for the demo files, with some replaced (None = null)."""
        paths: dict[str, str | Path | None] = {
            "train_file": self.demo / "train.h5",
            "val_file": self.demo / "val.h5",
            "test_file": self.demo / "test.h5",
            "norm_dict": self.demo / "norm_dict.yaml",
            "class_dict": self.demo / "class_dict.yaml",
        }
        paths.update(override)
        return [f"--data.{k}={'null' if v is None else v}" for k, v in paths.items()]

    def write(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    def write_bytes(self, name: str, data: bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(data)
        return path

    def write_yaml(self, name: str, content: object) -> Path:
        return self.write(name, yaml.safe_dump(content, sort_keys=False))

    def norm_dict(self, edit: Callable[[dict], None]) -> Path:
        norm = yaml.safe_load((self.demo / "norm_dict.yaml").read_text())
        edit(norm)
        return self.write_yaml("norm_dict.yaml", norm)

    def train_copy(
        self, edit: Callable[[dict[str, np.ndarray], dict[str, dict]], None] | None = None
    ) -> Path:
        """The first rows of the demo training file, passed through ``edit(data, attrs)``."""
        return small_copy(self.demo / "train.h5", self.tmp / "train.h5", TRAIN_ROWS, edit)


def small_copy(
    src: Path,
    dst: Path,
    rows: int,
    edit: Callable[[dict[str, np.ndarray], dict[str, dict]], None] | None = None,
) -> Path:
    """Copy the first ``rows`` rows of every dataset (and the attributes), optionally edited."""
    with h5py.File(src, "r") as h5:
        data = {name: h5[name][:rows] for name in h5}
        attrs = {name: dict(h5[name].attrs) for name in h5}
    if edit is not None:
        edit(data, attrs)
    with h5py.File(dst, "w") as h5:
        for name, array in data.items():
            ds = h5.create_dataset(name, data=array)
            for key, value in attrs.get(name, {}).items():
                ds.attrs[key] = value
    return dst


def replace_field(array: np.ndarray, name: str, dtype: str, values: object) -> np.ndarray:
    """A copy of a structured array with one field's dtype (and values) changed."""
    descr = [(n, dtype if n == name else array.dtype[n]) for n in array.dtype.names]
    out = np.zeros(array.shape, dtype=descr)
    for n in array.dtype.names:
        if n != name:
            out[n] = array[n]
    out[name] = values
    return out


def snapshot(*roots: Path) -> dict[str, tuple[int, int] | str]:
    """Names, sizes and modification times of everything under ``roots``."""
    state: dict[str, tuple[int, int] | str] = {}
    for root in roots:
        if not root.exists():
            state[str(root)] = "absent"
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for d in dirnames:
                state[os.path.join(dirpath, d)] = "dir"
            for f in filenames:
                stat = os.stat(os.path.join(dirpath, f))
                state[os.path.join(dirpath, f)] = (stat.st_size, stat.st_mtime_ns)
    return state


def error_line(err: str) -> str:
    """The one ``salt: error:`` line of stderr, after checking the output's shape."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("salt: error:")]
    assert len(errors) == 1, err
    assert lines[-1] == errors[0], f"the error must be the last line:\n{err}"
    return errors[0]


# -- the table --------------------------------------------------------------------------------
Args = Callable[[Env], list[str]]


@dataclass
class Case:
    """One bad input: the arguments it adds (built in ``env``) and what the message must name."""

    id: str
    args: Args
    expect: tuple[str, ...]
    command: str = "fit"
    configs: bool = True  # the three GN2 configs + FAST settings
    data: bool = True  # the demo files (args may override them by coming later)
    needs_run: bool = False  # env.run: the module's finished run
    marks: list = field(default_factory=list)

    def param(self):
        return pytest.param(self, id=self.id, marks=self.marks)


def with_class_dict_task(env: Env) -> Path:
    """A config fragment whose jet task weights its loss by the class dict."""
    return env.write_yaml(
        "class_dict_task.yaml",
        {
            "model": {
                "model": {
                    "init_args": {
                        "tasks": [
                            {
                                "class_path": "salt.models.ClassificationTask",
                                "init_args": {
                                    "name": "jets_classification",
                                    "input_name": "jets",
                                    "label": "flavour_label",
                                    "use_class_dict": True,
                                    "dense_config": {"hidden_layers": [16]},
                                },
                            }
                        ]
                    }
                }
            }
        },
    )


def gn2_without(env: Env, key: str) -> Path:
    """configs/GN2.yaml with one ``data`` key removed."""
    config = yaml.safe_load((ROOT / "configs" / "GN2.yaml").read_text())
    del config["data"][key]
    return env.write_yaml("GN2_incomplete.yaml", config)


def set_nan_track(data: dict[str, np.ndarray], attrs: dict) -> None:
    tracks = data["tracks"]
    row = 17
    assert tracks["valid"][row, 0]
    tracks["d0"][row, 0] = np.nan


def label_seven(data: dict[str, np.ndarray], attrs: dict) -> None:
    data["jets"]["flavour_label"][5] = 7


def float_labels(data: dict[str, np.ndarray], attrs: dict) -> None:
    jets = data["jets"]
    data["jets"] = replace_field(jets, "flavour_label", "f4", jets["flavour_label"] + 0.5)


def string_d0(data: dict[str, np.ndarray], attrs: dict) -> None:
    data["tracks"] = replace_field(data["tracks"], "d0", "S8", b"x")


def no_class_names(data: dict[str, np.ndarray], attrs: dict) -> None:
    attrs["jets"].pop("flavour_label")


def fewer_tracks_rows(data: dict[str, np.ndarray], attrs: dict) -> None:
    data["tracks"] = data["tracks"][:-10]


def no_valid(data: dict[str, np.ndarray], attrs: dict) -> None:
    tracks = data["tracks"]
    names = [n for n in tracks.dtype.names if n != "valid"]
    data["tracks"] = np.ascontiguousarray(tracks[names]).astype(
        [(n, tracks.dtype[n]) for n in names]
    )


def truncated(env: Env) -> Path:
    source = (env.demo / "val.h5").read_bytes()
    return env.write_bytes("val_truncated.h5", source[: len(source) // 2])


CASES = [
    # -- config -----------------------------------------------------------------------------
    Case(
        "unknown-key-cli",
        lambda env: ["--data.batch_sise=3"],
        ("data.batch_sise", "did you mean", "data.batch_size"),
    ),
    Case(
        "unknown-key-yaml",
        lambda env: ["--config", str(env.write("typo.yaml", "data:\n  batch_sise: 3\n"))],
        ("batch_sise", "typo.yaml", "did you mean", "batch_size"),
    ),
    Case(
        "unknown-nested-key-cli",
        lambda env: ["--model.model.init_args.encoder.init_args.num_layer=1"],
        ("num_layer", "did you mean", "num_layers"),
    ),
    Case(
        "abbreviated-key",
        lambda env: ["--trainer.max_epoch=1"],
        ("trainer.max_epoch", "did you mean", "trainer.max_epochs"),
    ),
    Case(
        "unknown-nested-key-yaml",
        lambda env: [
            "--config",
            str(
                env.write_yaml(
                    "nested_typo.yaml",
                    {
                        "model": {
                            "model": {"init_args": {"encoder": {"init_args": {"num_layer": 1}}}}
                        }
                    },
                )
            ),
        ],
        ("nested_typo.yaml", "num_layer", "did you mean", "num_layers"),
    ),
    Case("wrong-type", lambda env: ["--data.batch_size=abc"], ("data.batch_size", "abc")),
    Case(
        "wrong-type-nested",
        lambda env: ["--model.model.init_args.encoder.init_args.num_layers=abc"],
        ("encoder", "num_layers", "abc"),
    ),
    Case(
        "unknown-class-path",
        lambda env: ["--model.model.init_args.pool_net.class_path=salt.models.NoSuchPool"],
        ("pool_net", "NoSuchPool"),
    ),
    Case(
        "missing-required-train-file",
        lambda env: [
            "--config",
            str(gn2_without(env, "train_file")),
            *CONFIGS[2:],
            *FAST,
            *[a for a in env.files() if not a.startswith("--data.train_file")],
        ],
        ("data.train_file",),
        configs=False,
        data=False,
    ),
    Case(
        "config-file-missing",
        lambda env: ["--config", str(env.tmp / "no_such_config.yaml")],
        ("no_such_config.yaml", "does not exist"),
    ),
    Case(
        "config-file-not-yaml",
        lambda env: ["--config", str(env.write("broken.yaml", "data: [unclosed\n  x: {\n"))],
        ("broken.yaml", "not valid YAML", "line 2"),
    ),
    Case(
        "embed-dim-not-divisible-by-heads",
        lambda env: ["--model.model.init_args.encoder.init_args.mha_config.num_heads=5"],
        ("TransformerEncoder", "num_heads=5", "64"),
    ),
    Case(
        "init-net-output-vs-embed-dim",
        lambda env: [
            "--model.model.init_args.init_nets=[{input_name: tracks, "
            "dense_config: {output_size: 32, hidden_layers: [32]}}]"
        ],
        ("embed_dim=64", "32"),
    ),
    Case(
        "num-inputs-unknown-type",
        lambda env: ["--data.num_inputs={electrons: 3}"],
        ("data.num_inputs", "electrons"),
    ),
    Case(
        "init-net-input-not-in-variables",
        lambda env: [
            "--model.model.init_args.init_nets=[{input_name: electrons, "
            "dense_config: {output_size: 64}}]"
        ],
        ("init_nets[0]", "electrons", "data.variables"),
    ),
    Case(
        "label-map-without-class-names",
        lambda env: [
            "--config",
            str(
                env.write(
                    "label_map.yaml",
                    "model:\n  model:\n    init_args:\n      tasks:\n"
                    "        - class_path: salt.models.ClassificationTask\n"
                    "          init_args:\n            name: jets_classification\n"
                    "            input_name: jets\n            label: HadronConeExclTruthLabelID\n"
                    "            label_map: {5: 0, 4: 1, 0: 2}\n"
                    "            dense_config: {hidden_layers: [16]}\n",
                )
            ),
        ],
        ("label_map", "class_names", "jets_classification"),
    ),
    # -- data -------------------------------------------------------------------------------
    Case(
        "train-file-missing",
        lambda env: env.files(train_file=env.tmp / "missing_train.h5"),
        ("data.train_file", "missing_train.h5", "does not exist"),
    ),
    Case(
        "val-file-missing",
        lambda env: env.files(val_file=env.tmp / "missing_val.h5"),
        ("data.val_file", "missing_val.h5", "does not exist"),
    ),
    Case(
        "test-file-missing-found-at-fit",
        lambda env: env.files(test_file=env.tmp / "missing_test.h5"),
        ("data.test_file", "missing_test.h5", "does not exist"),
    ),
    Case(
        "glob-matches-nothing",
        lambda env: env.files(train_file=env.tmp / "train_*.h5"),
        ("data.train_file", "train_*.h5", "matches no file"),
    ),
    Case(
        "garbage-hdf5",
        lambda env: env.files(val_file=env.write("garbage.h5", "this is not HDF5\n" * 100)),
        ("data.val_file", "garbage.h5", "is not an HDF5 file"),
    ),
    Case(
        "truncated-hdf5",
        lambda env: env.files(val_file=truncated(env)),
        ("data.val_file", "val_truncated.h5"),
    ),
    Case(
        "dataset-missing",
        lambda env: [
            "--data.input_map={tracks: no_such_tracks}",
            *env.files(norm_dict=env.norm_dict(lambda n: n.update(no_such_tracks=n["tracks"]))),
        ],
        ("train.h5", "no_such_tracks", "not found"),
    ),
    Case(
        "variable-missing-from-file",
        lambda env: [
            *env.files(
                norm_dict=env.norm_dict(
                    lambda n: n["tracks"].update({"ghost": {"mean": 0.0, "std": 1.0}})
                )
            ),
            "--data.variables={jets: [pt_btagJes, eta_btagJes], tracks: [d0, ghost]}",
        ],
        ("train.h5", "ghost", "tracks"),
    ),
    Case(
        "string-input-field",
        lambda env: env.files(train_file=env.train_copy(string_d0)),
        ("train.h5", "tracks.d0", "numeric"),
    ),
    Case(
        "rows-differ-between-datasets",
        lambda env: env.files(train_file=env.train_copy(fewer_tracks_rows)),
        ("train.h5", "row count"),
    ),
    Case(
        "valid-field-missing",
        lambda env: env.files(train_file=env.train_copy(no_valid)),
        ("train.h5", "valid", "tracks"),
    ),
    Case(
        "class-names-attribute-missing",
        lambda env: env.files(train_file=env.train_copy(no_class_names)),
        ("flavour_label", "class_names"),
    ),
    Case(
        "num-train-larger-than-file",
        lambda env: ["--data.num_train=100000"],
        ("data.num_train=100000", "train.h5"),
    ),
    Case(
        "label-out-of-range",
        lambda env: env.files(train_file=env.train_copy(label_seven)),
        ("data.train_file", "flavour_label", "7", "4 classes"),
    ),
    Case(
        "class-dict-wrong-number-of-weights",
        lambda env: [
            "--config",
            str(with_class_dict_task(env)),
            *env.files(
                class_dict=env.write_yaml("class_dict.yaml", {"jets": {"flavour_label": [1, 2]}})
            ),
        ],
        ("class dict", "flavour_label", "2 weights", "expected 4"),
    ),
    Case(
        "class-dict-not-set",
        lambda env: ["--config", str(with_class_dict_task(env)), *env.files(class_dict=None)],
        ("use_class_dict", "data.class_dict"),
    ),
    Case(
        "class-dict-file-missing",
        lambda env: [
            "--config",
            str(with_class_dict_task(env)),
            *env.files(class_dict=env.tmp / "no_class_dict.yaml"),
        ],
        ("data.class_dict", "no_class_dict.yaml", "does not exist"),
    ),
    Case(
        "class-dict-label-missing",
        lambda env: [
            "--config",
            str(with_class_dict_task(env)),
            *env.files(class_dict=env.write_yaml("class_dict.yaml", {"tracks": {"x": [1]}})),
        ],
        ("class_dict", "jets.flavour_label"),
    ),
    Case(
        "norm-dict-missing-variable",
        lambda env: env.files(norm_dict=env.norm_dict(lambda n: n["tracks"].pop("d0"))),
        ("norm_dict.yaml", "tracks.d0", "missing"),
    ),
    Case(
        "norm-dict-zero-std",
        lambda env: env.files(
            norm_dict=env.norm_dict(lambda n: n["tracks"]["dphi"].update(std=0.0))
        ),
        ("norm_dict.yaml", "tracks.dphi", "std=0.0"),
    ),
    Case(
        "norm-dict-nan-std",
        lambda env: env.files(
            norm_dict=env.norm_dict(lambda n: n["jets"]["pt_btagJes"].update(std=math.nan))
        ),
        ("norm_dict.yaml", "jets.pt_btagJes", "std=nan"),
    ),
    Case(
        "norm-dict-file-missing",
        lambda env: env.files(norm_dict=env.tmp / "no_norm.yaml"),
        ("data.norm_dict", "no_norm.yaml", "does not exist"),
    ),
    Case(
        "norm-dict-not-yaml",
        lambda env: env.files(norm_dict=env.write("norm_dict.yaml", "jets: {pt: [\n  :\n")),
        ("data.norm_dict", "norm_dict.yaml", "not valid YAML", "line 2"),
    ),
    Case(
        "norm-dict-not-a-mapping",
        lambda env: env.files(norm_dict=env.write("norm_dict.yaml", "- just\n- a list\n")),
        ("data.norm_dict", "norm_dict.yaml"),
    ),
    # -- outputs (the module's finished run) ------------------------------------------------
    Case(
        "run-dir-exists-without-force",
        lambda env: [
            f"--trainer.default_root_dir={env.run.parent}",
            "-n",
            "err",
            "--log_suffix=run",
        ],
        ("run directory", "err_run", "--force"),
        needs_run=True,
    ),
    Case(
        "predictions-exist-without-overwrite",
        lambda env: ["--config", str(env.run / "config.yaml"), *TEST_FAST],
        ("predictions file", "__test_test.h5", "--overwrite"),
        command="test",
        configs=False,
        data=False,
        needs_run=True,
    ),
    Case(
        "test-ckpt-missing",
        lambda env: [
            "--config",
            str(env.run / "config.yaml"),
            *TEST_FAST,
            f"--ckpt_path={env.tmp / 'no.ckpt'}",
        ],
        ("ckpt_path", "no.ckpt", "does not exist"),
        command="test",
        configs=False,
        data=False,
        needs_run=True,
    ),
    # -- sizes and trainer settings that cannot work -----------------------------------------
    Case("batch-size-zero", lambda env: ["--data.batch_size=0"], ("data.batch_size", "got 0")),
    Case("batch-size-negative", lambda env: ["--data.batch_size=-3"], ("data.batch_size", "-3")),
    Case("num-train-zero", lambda env: ["--data.num_train=0"], ("data.num_train", "got 0")),
    Case("max-epochs-negative", lambda env: ["--trainer.max_epochs=-2"], ("max_epochs", "-2")),
    Case("gpu-without-gpu", lambda env: ["--trainer.accelerator=gpu"], ("gpu",)),
    Case(
        "pct-start-above-one",
        lambda env: ['--model.lrs_config={"pct_start": 1.5}'],
        ("model.lrs_config.pct_start", "(0, 1]", "1.5"),
    ),
    Case(
        "negative-learning-rate",
        lambda env: ['--model.lrs_config={"max": -1}'],
        ("model.lrs_config.max", "positive", "-1"),
    ),
    Case(
        "duplicate-yaml-key",
        lambda env: [
            "--config",
            str(env.write("twice.yaml", "data:\n  batch_size: 10\n  batch_size: 20\n")),
        ],
        ("twice.yaml", "'batch_size' is given twice", "lines 2 and 3"),
    ),
    Case(
        "float-labels",
        lambda env: env.files(train_file=env.train_copy(float_labels)),
        ("data.train_file", "flavour_label", "float32", "expected an integer field"),
    ),
    Case(
        "validation-label-out-of-range",
        lambda env: env.files(
            val_file=small_copy(env.demo / "val.h5", env.tmp / "val.h5", 200, label_seven)
        ),
        ("data.val_file", "flavour_label", "7"),
    ),
    # -- files that are not what their key says ---------------------------------------------
    Case(
        "empty-train-file",
        lambda env: [f"--data.train_file={env.write_bytes('empty.h5', b'')}"],
        ("data.train_file", "empty.h5", "is empty (0 bytes)"),
    ),
    Case(
        "text-as-train-file",
        lambda env: [f"--data.train_file={env.write('notes.h5', 'not hdf5')}"],
        ("data.train_file", "notes.h5", "is not an HDF5 file"),
    ),
    Case(
        "directory-as-test-file",
        lambda env: [f"--data.test_file={env.demo}"],
        ("data.test_file", "is a directory"),
    ),
]

TEST_FAST = [
    "--trainer.enable_progress_bar=false",
    "--data.num_test=200",
    "--data.batch_size=100",
    "--evaluation.run_evaluation=false",
]


@pytest.fixture(scope="module")
def finished_run(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished fit followed by one ``salt test``: a run dir and a predictions file."""
    root = tmp_path_factory.mktemp("errors_run")
    env = Env(demo_dir, root)
    args = ["fit", *CONFIGS, *FAST, *env.files(), f"--trainer.default_root_dir={root}"]
    assert main([*args, "-n", "err", "--log_suffix=run"]) == 0
    run = root / "err_run"
    assert main(["test", "--config", str(run / "config.yaml"), *TEST_FAST]) == 0
    assert len(list((run / "ckpts").glob("*__test_test.h5"))) == 1
    return run


def command_line(case: Case, env: Env) -> list[str]:
    args = [case.command]
    if case.configs:
        args += [*CONFIGS, *FAST]
    if case.data:
        args += env.files()
    args += [f"--trainer.default_root_dir={env.logs}"]
    return args + case.args(env)


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case: Case, demo_dir: Path, tmp_path: Path, request, capsys):
    env = Env(demo_dir, tmp_path)
    if case.needs_run:
        env.run = request.getfixturevalue("finished_run")
    argv = command_line(case, env)
    watched = [tmp_path, demo_dir] + ([env.run.parent] if env.run else [])
    before = snapshot(*watched)
    capsys.readouterr()

    code = main(argv)

    err = capsys.readouterr().err
    assert code == 2, err
    message = error_line(err)
    for expected in case.expect:
        assert expected in message, f"{expected!r} not in {message!r}"
    assert snapshot(*watched) == before, "a failed command wrote or changed files"


def test_table_is_large_enough():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


# -- the condensing itself (salt/errors.py), on messages as the libraries write them ----------
def test_one_line_condenses_nested_parser_messages():
    from argparse import ArgumentError

    from salt.cli.errors import one_line

    nested = (
        'Parser key "model.model":\n'
        "  Problem with given class_path 'salt.models.SaltModel':\n"
        '    Parser key "encoder":\n'
        "      Does not validate against any of the Union subtypes\n"
        "      Subtypes: [<class 'torch.nn.modules.module.Module'>, <class 'NoneType'>]\n"
        "      Errors:\n"
        "        - Problem with given class_path 'salt.models.TransformerEncoder':\n"
        '            Parser key "num_layers":\n'
        "              Expected a <class 'int'>. Got value: abc\n"
        "        - Expected a <class 'NoneType'>\n"
        "      Given value type: <class 'jsonargparse._util.NestedArg'>\n"
        "      Given value: NestedArg(key='num_layers', val='abc')"
    )
    assert one_line(ArgumentError(None, nested)) == (
        "model.model.encoder.num_layers: Expected a <class 'int'>. Got value: abc "
        "(class_path 'salt.models.TransformerEncoder')"
    )
    union = (
        'Parser key "data.num_inputs":\n  Does not validate against any of the Union subtypes\n'
        "  Subtypes: [dict[str, int], <class 'NoneType'>]\n  Errors:\n"
        "    - Expected a <class 'dict'>\n    - Expected a <class 'NoneType'>\n"
        "  Given value type: <class 'str'>\n  Given value: 5"
    )
    assert one_line(ArgumentError(None, union)) == (
        "data.num_inputs: Expected a <class 'dict'> (got 5)"
    )
    worker = ValueError(
        "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent "
        'call last):\n  File "x.py", line 1, in f\n    raise ValueError(msg)\n'
        "ValueError: f.h5: non-finite value in 'tracks.d0' at row 3\n"
    )
    assert one_line(worker) == "f.h5: non-finite value in 'tracks.d0' at row 3"
    spanning = ValueError("f.yaml is not valid YAML (while parsing\n  line 2, column 3)")
    assert one_line(spanning) == "f.yaml is not valid YAML (while parsing line 2, column 3)"
    assert one_line(KeyError("data.norm_dict: 'x' is missing")) == "data.norm_dict: 'x' is missing"


# -- outputs: --force and --overwrite replace ---------------------------------------------------
def test_force_reuses_the_run_directory(finished_run: Path, demo_dir: Path, tmp_path: Path):
    root = tmp_path / "logs"
    shutil.copytree(finished_run, root / "err_run")
    env = Env(demo_dir, tmp_path)
    args = ["fit", *CONFIGS, *FAST, *env.files(), f"--trainer.default_root_dir={root}"]
    args += ["-n", "err", "--log_suffix=run"]
    assert main(args) == 2  # refused without --force
    assert main([*args, "--force"]) == 0
    meta = yaml.safe_load((root / "err_run" / "metadata.yaml").read_text())
    assert meta["status"] == "finished"


def test_overwrite_replaces_the_predictions(finished_run: Path, tmp_path: Path):
    run = tmp_path / "err_run"
    shutil.copytree(finished_run, run)
    (old,) = (run / "ckpts").glob("*__test_test.h5")
    os.utime(old, ns=(0, 0))  # so a rewrite shows whatever the clock resolution
    args = ["test", "--config", str(run / "config.yaml"), *TEST_FAST]
    args += [f"--trainer.default_root_dir={run}"]
    assert main(args) == 2
    assert old.stat().st_mtime_ns == 0
    assert main([*args, "--overwrite"]) == 0
    (new,) = (run / "ckpts").glob("*__test_test.h5")
    assert new.stat().st_mtime_ns > 0


# -- runtime ----------------------------------------------------------------------------------
def _runtime_error(
    demo_dir: Path, tmp_path: Path, capsys, extra: Args, configs: list[str] = CONFIGS
) -> str:
    """The one error line of a fit that starts and then fails; its run must not say finished."""
    env = Env(demo_dir, tmp_path)
    argv = ["fit", *configs, *FAST, *env.files(), f"--trainer.default_root_dir={env.logs}"]
    argv += ["-n", "rt", "--log_suffix=x", *extra(env)]
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    meta = env.logs / "rt_x" / "metadata.yaml"
    if meta.exists():
        assert yaml.safe_load(meta.read_text())["status"] != "finished"
    return error_line(err)


def test_nan_loss_stops_training(demo_dir: Path, tmp_path: Path, capsys):
    message = _runtime_error(
        demo_dir,
        tmp_path,
        capsys,
        lambda env: ["--model.lrs_config.max=1e30", "--data.batch_size=50"],
    )
    assert "non-finite loss" in message
    assert "jets_classification" in message
    assert "between steps 0 and" in message


@pytest.mark.parametrize("workers", [0, 1])
def test_nan_input_names_file_variable_and_row(
    demo_dir: Path, tmp_path: Path, capsys, workers: int
):
    def extra(env: Env) -> list[str]:
        return [
            *env.files(train_file=env.train_copy(set_nan_track)),
            f"--data.num_workers={workers}",
        ]

    message = _runtime_error(demo_dir, tmp_path, capsys, extra)
    assert str(tmp_path / "train.h5") in message
    assert "tracks.d0" in message
    assert "row 17" in message


# -- --debug shows the traceback ------------------------------------------------------------------
def _missing_train_argv(demo_dir: Path, tmp_path: Path) -> list[str]:
    env = Env(demo_dir, tmp_path)
    return [
        "fit",
        *CONFIGS,
        *FAST,
        *env.files(train_file=tmp_path / "missing.h5"),
        f"--trainer.default_root_dir={env.logs}",
    ]


def test_debug_flag_raises_with_traceback(demo_dir: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"missing\.h5"):
        main([*_missing_train_argv(demo_dir, tmp_path), "--debug"])


def test_debug_env_raises_with_traceback(demo_dir: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SALT_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match=r"missing\.h5"):
        main(_missing_train_argv(demo_dir, tmp_path))


def _run_process(argv: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SALT_DEBUG", "PYTHONWARNINGS")}
    command = [sys.executable, "-m", "salt", *argv]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_real_process_stderr_and_debug(demo_dir: Path, tmp_path: Path):
    """A separate process shows what the user sees: exactly one line, exit code 2; with --debug
    the traceback."""
    argv = _missing_train_argv(demo_dir, tmp_path)
    plain = _run_process(argv)
    assert plain.returncode == 2, plain.stderr
    assert plain.stderr.strip().splitlines() == [error_line(plain.stderr)]
    debug = _run_process([*argv, "--debug"])
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr and "missing.h5" in debug.stderr
    assert not (tmp_path / "logs").exists()


def test_real_process_data_error_has_no_warnings(demo_dir: Path, tmp_path: Path):
    """An error found after the model is built: log records may precede it (Lightning's and
    salt's INFO lines), but no warning text and no traceback."""
    env = Env(demo_dir, tmp_path)
    argv = ["fit", *CONFIGS, *FAST, *env.files(test_file=tmp_path / "missing_test.h5")]
    result = _run_process([*argv, f"--trainer.default_root_dir={env.logs}"])
    assert result.returncode == 2, result.stderr
    assert "missing_test.h5" in error_line(result.stderr)
    assert "Warning" not in result.stderr, result.stderr
    assert not any(line.startswith(" ") for line in result.stderr.splitlines()), result.stderr
    assert not env.logs.exists()


# -- padding ---------------------------------------------------------------------------------
def test_jets_without_tracks_train_and_test(demo_dir: Path, tmp_path: Path):
    """Jets whose tracks are all padding train and evaluate with finite outputs."""

    def empty_tracks(data: dict[str, np.ndarray], attrs: dict) -> None:
        tracks = data["tracks"]
        for name in tracks.dtype.names:
            tracks[name][::4] = -1 if tracks.dtype[name].kind == "i" else 0
        tracks["valid"][::4] = False
        data["jets"]["n_tracks"][::4] = 0

    env = Env(demo_dir, tmp_path)
    train = env.train_copy(empty_tracks)
    test = small_copy(demo_dir / "test.h5", tmp_path / "test.h5", 200, empty_tracks)
    argv = [
        "fit",
        *CONFIGS,
        *FAST,
        *env.files(train_file=train, val_file=train, test_file=test),
        f"--trainer.default_root_dir={env.logs}",
        "-n",
        "pad",
        "--log_suffix=x",
    ]
    assert main(argv) == 0
    run = env.logs / "pad_x"
    assert main(["test", "--config", str(run / "config.yaml"), *TEST_FAST]) == 0
    (preds,) = (run / "ckpts").glob("*__test_test.h5")
    with h5py.File(preds) as h5:
        jets = h5["jets"][:]
    probs = np.stack([jets[f"pad_p{x}"] for x in ("b", "c", "u", "tau")], axis=1)
    assert len(jets) == 200
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


# -- a non-finite loss names its cause ------------------------------------------------------------
def no_valid_tracks(data: dict[str, np.ndarray], attrs: dict) -> None:
    """Every track of every jet is padding (as a dumper with a broken track selection writes)."""
    tracks = data["tracks"]
    for name in tracks.dtype.names:
        tracks[name][:] = -1 if tracks.dtype[name].kind == "i" else 0
    tracks["valid"][:] = False
    data["jets"]["n_tracks"][:] = 0


def huge_track_d0(data: dict[str, np.ndarray], attrs: dict) -> None:
    tracks = data["tracks"]
    assert tracks["valid"][17, 0]
    tracks["d0"][17, 0] = 1e30  # finite, but 3e30 standard deviations


def _runtime_error_with_aux_tasks(demo_dir: Path, tmp_path: Path, capsys, edit) -> str:
    """The GN2 demo run with its track tasks (origin, vertexing) on an edited training file."""

    def on_the_edited_file(env: Env) -> list[str]:
        train = env.train_copy(edit)  # later options win over the demo files
        return [*env.files(train_file=train, val_file=train), "--nan_guard.check_every_n_steps=1"]

    return _runtime_error(demo_dir, tmp_path, capsys, on_the_edited_file, configs=CONFIGS[:4])


def test_a_file_without_valid_tracks_is_named_when_tasks_learn_from_tracks(
    demo_dir: Path, tmp_path: Path, capsys
):
    """Jets without tracks are legal (the jet task trains on them, test_jets_without_tracks_...),
    but a file none of whose tracks is valid would train the track tasks on nothing."""
    message = _runtime_error_with_aux_tasks(demo_dir, tmp_path, capsys, no_valid_tracks)
    assert "'tracks.valid' is False for every constituent" in message
    assert "ftagTruthOriginLabel" in message
    assert str(tmp_path / "train.h5") in message
    assert "learning rate" not in message
    assert not (tmp_path / "logs").exists()  # stopped before the run directory was made


def test_huge_inputs_are_named_not_the_learning_rate(demo_dir: Path, tmp_path: Path, capsys):
    message = _runtime_error_with_aux_tasks(demo_dir, tmp_path, capsys, huge_track_d0)
    assert "input 'tracks.d0'" in message
    assert "after normalisation" in message and "norm dict mean" in message
    assert str(tmp_path / "train.h5") in message
    assert "learning rate" not in message
