"""Careless and hostile input to salt's tools beyond the config and data table of test_errors.

Each case checks the contract of DESIGN.md ("Errors for people"): exit code 2, one
``<prog>: error:`` line on stderr naming the culprit, no traceback, no third-party banner, and
nothing left behind (no partial file, no empty directory).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from salt.cli.main import main
from tests.test_errors import CONFIGS, FAST, Env, small_copy, snapshot

ROOT = Path(__file__).resolve().parents[1]
BANNERS = ("Seed set to", "GPU available", "TPU available", "💡 Tip")


def one_error_line(err: str, prog: str = "salt") -> str:
    """The only non-empty line of stderr, which must be ``<prog>: error: ...``."""
    assert "Traceback" not in err, err
    assert not any(banner in err for banner in BANNERS), err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), err
    return lines[0]


# -- the small tools: salt inspect, salt demo-data (in-process, cheap) ------------------------
@dataclass
class ToolCase:
    id: str
    argv: Callable[[Path], list[str]]  # after "salt", built in the case's directory
    expect: tuple[str, ...]
    prog: str = "salt"

    def param(self):
        return pytest.param(self, id=self.id)


def _file(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


TOOL_CASES = [
    ToolCase("subcommand-transposed", lambda t: ["fti"], ("'fti'", "did you mean 'fit'")),
    ToolCase(
        "no-subcommand", lambda t: ["--data.batch_size=3"], ("no subcommand", "--data"), "salt"
    ),
    ToolCase(
        "config-section-a-list",
        lambda t: ["fit", "--config", str(_file(t, "dl.yaml", b"data: [1, 2]\n"))],
        ("dl.yaml", "'data' is a list", "mapping"),
        "salt",
    ),
    ToolCase(
        "evaluate-fc-out-of-range",
        lambda t: ["evaluate", str(t / "p.h5"), "--fc", "1.5"],
        ("--fc 1.5",),
        "salt evaluate",
    ),
    ToolCase(
        "evaluate-text-file",
        lambda t: ["evaluate", str(_file(t, "p.h5", b"not hdf5"))],
        ("p.h5", "not an HDF5 file"),
        "salt evaluate",
    ),
    ToolCase(
        "compare-fc-out-of-range",
        lambda t: ["compare", str(t), "--fc", "-0.5"],
        ("--fc -0.5",),
        "salt compare",
    ),
    ToolCase("inspect-no-file", lambda t: ["inspect"], ("files", "--help"), "salt inspect"),
    ToolCase(
        "inspect-directory", lambda t: ["inspect", str(t)], ("is a directory",), "salt inspect"
    ),
    ToolCase(
        "inspect-missing",
        lambda t: ["inspect", str(t / "none.h5")],
        ("none.h5", "no such file"),
        "salt inspect",
    ),
    ToolCase(
        "inspect-text",
        lambda t: ["inspect", str(_file(t, "t.h5", b"hello"))],
        ("t.h5", "HDF5"),
        "salt inspect",
    ),
    ToolCase(
        "demo-data-not-a-number",
        lambda t: ["demo-data", "--out", str(t / "o"), "--train", "abc"],
        ("--train", "abc"),
        "salt demo-data",
    ),
    ToolCase(
        "demo-data-not-a-number-message",
        lambda t: ["demo-data", "--out", str(t / "o"), "--val", "many"],
        ("expected a non-negative integer, got many",),
        "salt demo-data",
    ),
    ToolCase(
        "demo-data-negative",
        lambda t: ["demo-data", "--out", str(t / "o"), "--train", "-5"],
        ("--train", "-5"),
        "salt demo-data",
    ),
    ToolCase(
        "demo-data-out-is-a-file",
        lambda t: ["demo-data", "--out", str(_file(t, "f", b"x")), "--train", "10"],
        ("--out", "is a file"),
        "salt demo-data",
    ),
    ToolCase("evaluate-no-file", lambda t: ["evaluate"], ("pred_file", "--help"), "salt evaluate"),
    ToolCase(
        "compare-bad-option",
        lambda t: ["compare", str(t), "--fc", "abc"],
        ("--fc", "abc"),
        "salt compare",
    ),
]


def exit_code(argv: list[str]) -> int | str | None:
    """``salt ARGV`` in-process: its return value, or the code its parser exited with."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize("case", [c.param() for c in TOOL_CASES])
def test_tool_usage_errors_are_one_line(case: ToolCase, tmp_path: Path, capsys):
    argv = case.argv(tmp_path)
    before = snapshot(tmp_path)
    capsys.readouterr()
    code = exit_code(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    line = one_error_line(err, case.prog)
    for expected in case.expect:
        assert expected in line, line
    assert snapshot(tmp_path) == before


def _salt(argv: list[str], cwd: Path, preexec=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALT_")}
    return subprocess.run(
        [sys.executable, "-m", "salt", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        preexec_fn=preexec,
        timeout=120,
    )


def test_demo_data_beyond_the_file_size_limit_writes_nothing(tmp_path: Path):
    """``ulimit -f``: refused before HDF5 starts a write it cannot finish (which crashes the
    interpreter on exit), and no directory or partial file is left."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    result = _salt(["demo-data", "--out", "out", "--train", "3000"], tmp_path, limit)
    assert result.returncode == 2, result.stderr
    line = one_error_line(result.stderr, "salt demo-data")
    assert "train.h5" in line and "file-size limit" in line
    assert not (tmp_path / "out").exists()


def test_demo_data_that_fails_midway_leaves_no_partial_set(tmp_path: Path, monkeypatch):
    """A failure after the first split (a full disk on the second) removes what this call
    wrote: no train.h5 without its val.h5 and dicts."""
    from salt.data import demo

    real = demo._write_split
    calls = []

    def failing(path: Path, *args, **kwargs) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(path))
        real(path, *args, **kwargs)

    monkeypatch.setattr(demo, "_write_split", failing)
    with pytest.raises(OSError, match="No space"):
        demo.generate_demo_data(tmp_path / "new" / "demo", 50, 20, 20)
    assert not (tmp_path / "new").exists()


# -- Lightning's trainer messages name the option ----------------------------------------------
def test_lightning_trainer_messages_name_the_option():
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from salt.cli.errors import user_message

    gpu = user_message(MisconfigurationException("No supported gpu backend found!"))
    assert gpu.startswith("trainer.accelerator=gpu: ") and "--trainer.accelerator=cpu" in gpu
    epochs = MisconfigurationException(
        "`max_epochs` must be a non-negative integer or -1. You passed in -2."
    )
    assert user_message(epochs) == (
        "trainer.max_epochs: expected non-negative integer or -1, got -2"
    )
    devices = MisconfigurationException(
        "`Trainer(devices='0')` value is not a valid input using cpu accelerator."
    )
    assert user_message(devices) == "trainer.devices='0' is not valid with the cpu accelerator"
    other = MisconfigurationException("something else entirely")
    assert user_message(other) == "something else entirely"


# -- fit: errors found once the data is opened are the only line -------------------------------
def _float_labels(data, attrs) -> None:
    from tests.test_errors import replace_field

    jets = data["jets"]
    data["jets"] = replace_field(jets, "flavour_label", "f4", jets["flavour_label"] + 0.5)


@pytest.mark.slow
def test_an_input_error_after_the_files_are_opened_is_the_only_line(
    demo_dir: Path, tmp_path: Path, capsys
):
    """The data module's row counts are said when training starts, not while the inputs are
    checked: a file rejected then gives one line, not the counts of the files before it."""
    env = Env(demo_dir, tmp_path)
    train = small_copy(demo_dir / "train.h5", tmp_path / "train.h5", 300, _float_labels)
    argv = ["fit", *CONFIGS, *FAST, *env.files(train_file=train)]
    argv.append(f"--trainer.default_root_dir={env.logs}")
    capsys.readouterr()
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "train.h5" in line and "flavour_label" in line
    assert not env.logs.exists()


# -- fit: files that disagree with each other or lack what the config reads -------------------
def _drop_field(array, name: str):
    import numpy as np

    names = [n for n in array.dtype.names if n != name]
    out = np.zeros(array.shape, dtype=[(n, array.dtype[n]) for n in names])
    for n in names:
        out[n] = array[n]
    return out


def _no_jets(data, attrs) -> None:
    data.pop("jets")
    attrs.pop("jets", None)


def _train_pair(env: Env, edit) -> list[str]:
    """Two training files matched by one glob, the second passed through ``edit``."""
    small_copy(env.demo / "train.h5", env.tmp / "train_a.h5", 200)
    small_copy(env.demo / "train.h5", env.tmp / "train_b.h5", 200, edit)
    return env.files(train_file=env.tmp / "train_*.h5")


def _without_d0(data, attrs) -> None:
    data["tracks"] = _drop_field(data["tracks"], "d0")


def _fewer_tracks(data, attrs) -> None:
    import numpy as np

    data["tracks"] = np.ascontiguousarray(data["tracks"][:, :10])


def _other_class_names(data, attrs) -> None:
    import numpy as np

    attrs["jets"]["flavour_label"] = np.array(["x", "y", "z", "w"], dtype="S")


def _class_dict_weights(env: Env, weights: list[float]) -> list[str]:
    from tests.test_errors import with_class_dict_task

    class_dict = env.write_yaml("class_dict.yaml", {"jets": {"flavour_label": weights}})
    return ["--config", str(with_class_dict_task(env)), *env.files(class_dict=class_dict)]


@dataclass
class FitCase:
    id: str
    args: Callable[[Env], list[str]]
    expect: tuple[str, ...]

    def param(self):
        return pytest.param(self, id=self.id, marks=[pytest.mark.slow])


FIT_CASES = [
    FitCase(
        "jets-dataset-missing",
        lambda env: env.files(
            train_file=small_copy(env.demo / "train.h5", env.tmp / "nojets.h5", 200, _no_jets)
        ),
        ("data.train_file", "nojets.h5", "no dataset 'jets'"),
    ),
    FitCase(
        "variable-missing-from-the-second-file",
        lambda env: _train_pair(env, _without_d0),
        ("train_b.h5", "'d0' not found"),
    ),
    FitCase(
        "constituents-differ-between-files",
        lambda env: _train_pair(env, _fewer_tracks),
        ("train_b.h5", "tracks", "(10,)", "(40,)"),
    ),
    FitCase(
        "class-names-differ-between-files",
        lambda env: _train_pair(env, _other_class_names),
        ("train_b.h5", "flavour_label", "different classes"),
    ),
    FitCase(
        "num-inputs-zero",
        lambda env: ["--data.num_inputs={tracks: 0}"],
        ("data.num_inputs.tracks", "got 0"),
    ),
    FitCase(
        "num-inputs-negative",
        lambda env: ["--data.num_inputs={tracks: -4}"],
        ("data.num_inputs.tracks", "got -4"),
    ),
    FitCase(
        "num-inputs-more-than-stored",
        lambda env: ["--data.num_inputs={tracks: 1000}"],
        ("data.num_inputs.tracks=1000", "hold 40 constituents"),
    ),
    FitCase(
        "max-epochs-zero",
        lambda env: ["--trainer.max_epochs=0"],
        ("trainer.max_epochs=0", "trains nothing"),
    ),
    FitCase(
        "accumulate-grad-batches-zero",
        lambda env: ["--trainer.accumulate_grad_batches=0"],
        ("trainer.accumulate_grad_batches", "got 0"),
    ),
    FitCase(
        "val-check-interval-zero",
        lambda env: ["--trainer.val_check_interval=0"],
        ("trainer.val_check_interval", "got 0"),
    ),
    FitCase(
        "gradient-clip-negative",
        lambda env: ["--trainer.gradient_clip_val=-1"],
        ("trainer.gradient_clip_val", "got -1"),
    ),
    FitCase(
        "variable-typo-suggested",
        lambda env: ["--data.variables={jets: [pt_btagJes, eta_btagJes], tracks: [d0, dphii]}"],
        ("tracks.dphii", "did you mean 'dphi'", "data.variables.tracks"),
    ),
    FitCase(
        "top-level-key-typo-names-its-file",
        lambda env: ["--config", str(env.write("tk.yaml", "dta:\n  batch_size: 3\n"))],
        ("tk.yaml", "dta.batch_size"),
    ),
    FitCase(
        "ckpt-path-a-directory",
        lambda env: [f"--ckpt_path={env.tmp}"],
        ("is a directory",),
    ),
    FitCase(
        "name-with-a-slash",
        lambda env: ["-n", "../../escape", "--log_suffix=x"],
        ("--name '../../escape'", "one directory name"),
    ),
    FitCase(
        "log-suffix-with-a-slash",
        lambda env: ["-n", "ok", "--log_suffix=a/b"],
        ("--log_suffix 'a/b'",),
    ),
    FitCase("empty-name", lambda env: ["-n", "", "--log_suffix=x"], ("--name", "empty")),
    FitCase(
        "class-dict-negative-weight",
        lambda env: _class_dict_weights(env, [1.0, -2.0, 1.0, 1.0]),
        ("class_dict.yaml", "jets.flavour_label", "non-negative"),
    ),
    FitCase(
        "class-dict-nan-weight",
        lambda env: _class_dict_weights(env, [1.0, float("nan"), 1.0, 1.0]),
        ("class_dict.yaml", "jets.flavour_label", "finite"),
    ),
    FitCase(
        "class-dict-wrong-length-names-the-file",
        lambda env: _class_dict_weights(env, [1.0, 2.0]),
        ("class_dict.yaml", "jets.flavour_label", "expected 4"),
    ),
    FitCase(
        "accelerator-gpu-without-one",
        lambda env: ["--trainer.accelerator=gpu"],
        ("trainer.accelerator=gpu", "--trainer.accelerator=cpu"),
    ),
]


@pytest.mark.parametrize("case", [c.param() for c in FIT_CASES])
def test_fit_input_errors(case: FitCase, demo_dir: Path, tmp_path: Path, capsys):
    import torch

    if case.id.startswith("accelerator") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    env = Env(demo_dir, tmp_path)
    argv = ["fit", *CONFIGS, *FAST, *env.files(), f"--trainer.default_root_dir={env.logs}"]
    argv += case.args(env)
    before = snapshot(tmp_path, demo_dir)
    capsys.readouterr()
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    for expected in case.expect:
        assert expected in line, line
    assert snapshot(tmp_path, demo_dir) == before


# -- paths that are not regular files -----------------------------------------------------------
def _loop(tmp: Path) -> Path:
    (tmp / "a.h5").symlink_to(tmp / "b.h5")
    (tmp / "b.h5").symlink_to(tmp / "a.h5")
    return tmp / "a.h5"


def _dangling(tmp: Path) -> Path:
    (tmp / "gone.h5").symlink_to(tmp / "moved.h5")
    return tmp / "gone.h5"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_loop, "is a symbolic link loop"),
        (_dangling, "is a broken symbolic link (to '"),
        (lambda tmp: Path(os.devnull), "is not a regular file"),
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: tmp / "none.h5", "does not exist"),
    ],
    ids=["loop", "dangling", "device", "directory", "missing"],
)
def test_a_path_that_is_not_a_file_says_what_it_is(tmp_path: Path, make, expected: str):
    from salt.data.normalisation import load_norm_dict
    from salt.data.paths import resolve_files

    path = make(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"data\.train_file") as data_error:
        resolve_files(str(path), "train_file")
    assert expected in str(data_error.value)
    with pytest.raises(FileNotFoundError, match=r"data\.norm_dict") as norm_error:
        load_norm_dict(path)
    assert expected in str(norm_error.value)


def test_a_config_that_is_a_device_is_named(capsys):
    capsys.readouterr()
    assert main(["fit", "--config", os.devnull]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert os.devnull in line and "is not a regular file" in line


# -- a run's config finds its run from any working directory ----------------------------------
@pytest.mark.slow
def test_a_run_started_with_a_relative_root_is_found_from_elsewhere(
    demo_dir: Path, tmp_path: Path, monkeypatch, capsys
):
    """``salt fit --trainer.default_root_dir=logs`` then, from another directory (and after
    moving the run), ``salt test --config RUN/config.yaml`` evaluates that run: nothing is
    trained from scratch or looked for under the new working directory."""
    import shutil

    import yaml

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    env = Env(demo_dir, tmp_path)
    monkeypatch.chdir(project)
    argv = ["fit", *CONFIGS, *FAST, *env.files(), "--trainer.default_root_dir=logs"]
    assert main([*argv, "-n", "rel", "--log_suffix=x"]) == 0
    run = project / "logs" / "rel_x"
    saved = yaml.safe_load((run / "config.yaml").read_text())["trainer"]["default_root_dir"]
    assert Path(saved).is_absolute()
    moved = tmp_path / "archive" / "rel_x"
    shutil.move(run, moved)
    monkeypatch.chdir(elsewhere)
    args = ["test", "--config", str(moved / "config.yaml"), "--evaluation.run_evaluation=false"]
    assert main([*args, "--data.num_test=100"]) == 0
    assert len(list((moved / "ckpts").glob("*__test_test.h5"))) == 1
    assert list(elsewhere.iterdir()) == []


# -- norm dict entries that are not numbers ----------------------------------------------------
@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"mean": "abc", "std": 1.0}, "mean='abc'"),
        ({"mean": 0.0, "std": None}, "std=None"),
        ({"mean": True, "std": 1.0}, "mean=True"),
        ([0.0, 1.0], "is [0.0, 1.0], expected a mapping with mean and std"),
    ],
    ids=["string-mean", "null-std", "bool-mean", "list-entry"],
)
def test_a_norm_dict_entry_that_is_not_numbers_is_named(entry: object, expected: str):
    from salt.data.normalisation import Normaliser

    norm = {"tracks": {"d0": entry}}
    with pytest.raises((KeyError, ValueError)) as error:
        Normaliser(norm, {"tracks": ["d0"]}, {"tracks": "tracks"}, source="nd.yaml")
    message = str(error.value.args[0])
    assert "nd.yaml" in message and "tracks.d0" in message and expected in message


def test_a_norm_dict_that_is_not_text_is_named(tmp_path: Path):
    from salt.data.normalisation import load_norm_dict

    path = tmp_path / "nd.yaml"
    path.write_bytes(bytes(range(128, 256)))
    with pytest.raises(ValueError, match=r"data\.norm_dict: '.*nd\.yaml' cannot be read"):
        load_norm_dict(path)


# -- a cut-off last.ckpt is named before anything of the resume starts --------------------------
def test_a_cut_off_last_ckpt_is_refused_before_the_run_starts(tmp_path: Path):
    """``--ckpt_path last`` on a run whose last.ckpt was cut off: the error names it and the
    intact checkpoint beside it, before loggers (Comet's offline line) or training start."""
    from salt.cli.run_dir import check_resumable
    from salt.safe_load import CheckpointError

    run = tmp_path / "run"
    (run / "ckpts").mkdir(parents=True)
    (run / "metadata.yaml").write_text("status: finished\n")
    import torch

    torch.save({"state_dict": {"w": torch.zeros(2)}}, run / "ckpts" / "epoch=000.ckpt")
    whole = (run / "ckpts" / "epoch=000.ckpt").read_bytes()
    (run / "ckpts" / "last.ckpt").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError, match=r"last\.ckpt' is truncated.*epoch=000\.ckpt"):
        check_resumable(run, "last")


# -- config files that hold nothing, or are not text ---------------------------------------------
def test_a_binary_config_file_is_named(tmp_path: Path, capsys):
    path = tmp_path / "model.yaml"
    path.write_bytes(b"data:\n  x: " + bytes(range(128, 200)))
    capsys.readouterr()
    assert main(["fit", "--config", str(path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "model.yaml" in line and "is not text" in line


@pytest.mark.parametrize("text", ["", "# only a comment\n"], ids=["empty", "comment"])
def test_empty_config_files_are_dropped(tmp_path: Path, text: str):
    from salt.cli.main import without_empty_configs

    empty = tmp_path / "empty.yaml"
    empty.write_text(text)
    real = tmp_path / "real.yaml"
    real.write_text("data:\n  batch_size: 3\n")
    argv = ["fit", "--config", str(empty), f"--config={empty}", "-c", str(real), "--x=1"]
    assert without_empty_configs(argv) == ["fit", "-c", str(real), "--x=1"]


# -- a run's config given to a new fit: the new run goes beside it, never inside -------------
def test_a_new_fit_from_a_runs_config_goes_beside_the_run(tmp_path: Path):
    from salt.cli.run_dir import choose_run_dir, release_claims

    run = tmp_path / "logs" / "base_run"
    run.mkdir(parents=True)
    (run / "metadata.yaml").write_text("status: finished\n")
    try:
        with pytest.raises(FileExistsError, match=r"base_run.*--force"):
            choose_run_dir(run, "base", "run", resuming=False, force=False)
        new, checked = choose_run_dir(run, "tuned", "x", resuming=False, force=False)
        assert new == tmp_path / "logs" / "tuned_x" and checked
    finally:
        release_claims()
    assert choose_run_dir(run, "base", "run", resuming=True, force=False) == (run, False)


def test_an_empty_data_path_is_named():
    from salt.data.paths import resolve_files

    with pytest.raises(FileNotFoundError, match=r"data\.train_file: an empty path"):
        resolve_files("", "train_file")


# -- Ctrl-C during a fit stops it as a pre-emption does ----------------------------------------
class CtrlCAt:
    """A Lightning callback that presses Ctrl-C (a real SIGINT to this process) before training
    step ``step``."""

    def __init__(self, step: int = 3):
        self.step = step

    def on_train_batch_start(self, trainer, *args: object) -> None:
        import signal

        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def _ctrl_c_callback():
    import lightning as L

    return type("CtrlCCallback", (CtrlCAt, L.Callback), {})


CtrlCCallback = _ctrl_c_callback()


@pytest.mark.slow
def test_ctrl_c_mid_fit_leaves_a_resumable_interrupted_run(
    demo_dir: Path, tmp_path: Path, monkeypatch, capsys
):
    import json
    import signal

    import yaml

    from salt.callbacks.preemption import PREEMPTED_EXIT
    from salt.class_paths import ALLOW_ENV
    from tests.helpers import demo_fit_args

    monkeypatch.setenv(ALLOW_ENV, __name__.split(".")[0])
    spec = {"class_path": f"{__name__}.CtrlCCallback", "init_args": {"step": 3}}
    args = demo_fit_args(demo_dir, tmp_path, "sig", "--trainer.logger=false")
    args += ["--data.num_train=600", "--data.batch_size=60", "--trainer.max_epochs=2"]
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit) as stop:
        main([*args, f"--trainer.callbacks+={json.dumps(spec)}"])
    assert stop.value.code == PREEMPTED_EXIT + signal.SIGTERM
    assert signal.getsignal(signal.SIGINT) is before  # given back after the fit
    run = tmp_path / "sig_run"
    assert sorted(p.name for p in (run / "ckpts").glob("*.ckpt")) == ["last.ckpt"]
    meta = yaml.safe_load((run / "metadata.yaml").read_text())
    assert meta["status"] == "interrupted" and meta["interrupted_at_step"] == 4
