"""Outputs are complete or absent: predictions files and run directories are claimed by one
process, a failed write names the file and its cause and leaves earlier outputs intact, and
``--ckpt_path last`` without a run to resume fails in one line."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from salt.callbacks.prediction_writer import PredictionWriter, check_room
from salt.utils.claim import OutputClaim
from tests.helpers import REPO
from tests.helpers import demo_fit_args as fit_args


def last_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines, "nothing on stderr"
    return lines[-1]


# -- claims and checks (no training) --------------------------------------------------------------
def test_an_output_is_claimed_by_one_holder_at_a_time(tmp_path: Path):
    out = tmp_path / "preds.h5"
    first, second = OutputClaim(out), OutputClaim(out)
    first.acquire()
    with pytest.raises(FileExistsError, match=r"preds\.h5' is being written by another"):
        second.acquire()
    first.release()
    assert not first.lock_path.exists()
    second.acquire()  # free again
    second.release()
    first.lock_path.write_text("")  # a lock file left by a killed process blocks nothing
    first.acquire()
    first.release()


def test_a_write_beyond_the_file_size_limit_is_refused_before_it_starts(tmp_path: Path):
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (10_000_000, hard))
    try:
        check_room(tmp_path / "x.h5", 1000)
        with pytest.raises(OSError, match="file-size limit"):
            check_room(tmp_path / "x.h5", 20_000_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_file_short_of_jets_is_never_renamed_into_place(tmp_path: Path):
    out = tmp_path / "preds.h5"
    writer = PredictionWriter(out, "GN2", {}, {}, {"jets": "jets"})
    with h5py.File(writer._tmp, "w") as h5:
        h5.create_dataset("jets", data=np.zeros(3, dtype=[("GN2_pb", "f4")]))
    with pytest.raises(OSError, match=r"3 of 5 jets were predicted; nothing written"):
        writer._check_complete(5)
    assert not out.exists() and not writer._tmp.exists()


# -- through the commands -------------------------------------------------------------------------
def salt_with_file_size_limit(args: list[str], limit: int) -> subprocess.CompletedProcess:
    """``salt <args>`` in a new process whose files may not grow beyond ``limit`` bytes
    (``ulimit -f``; the soft limit only, so the test process keeps its own)."""

    def small_files() -> None:
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))

    return subprocess.run(
        [sys.executable, "-m", "salt", *args],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=small_files,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def trained(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from salt.cli.main import main

    root = tmp_path_factory.mktemp("outputs")
    assert main(fit_args(demo_dir, root, "outs", "--trainer.logger=false")) == 0
    return root / "outs_run"


def evaluate_args(run: Path, *extra: str) -> list[str]:
    return [
        "test",
        "--config",
        str(run / "config.yaml"),
        "--data.num_workers=0",
        "--evaluation.run_evaluation=false",
        "--evaluation.write_constituents=true",
        *extra,
    ]


@pytest.mark.slow
def test_predictions_carry_puma_aux_names(trained: Path):
    from salt.cli.main import main

    assert main(evaluate_args(trained)) == 0
    (out,) = trained.glob("ckpts/*__test_test.h5")
    with h5py.File(out, "r") as h5:
        tracks = h5["tracks"][:200]
    names = tracks.dtype.names
    probs = np.stack([tracks[n] for n in names if n.startswith("outs_track_origin_p")], -1)
    valid = tracks["valid"]
    np.testing.assert_array_equal(tracks["outs_aux_TrackOrigin"][valid], probs[valid].argmax(-1))
    assert (tracks["outs_aux_TrackOrigin"][~valid] == -1).all()
    np.testing.assert_array_equal(
        tracks["outs_aux_VertexIndex"], tracks["outs_track_vertexing_vertex_index"]
    )
    assert not list(out.parent.glob(".*"))  # no temporary or lock file left


@pytest.mark.slow
def test_a_second_evaluation_of_the_same_output_fails_and_leaves_the_first_alone(
    trained: Path, capsys
):
    from salt.cli.main import main

    if not list(trained.glob("ckpts/*__test_test.h5")):  # the first evaluation, if none ran yet
        assert main(evaluate_args(trained)) == 0
    (out,) = trained.glob("ckpts/*__test_test.h5")
    before = out.read_bytes()
    holder = OutputClaim(out)  # another salt test of this run, writing its temporary file
    holder.acquire()
    theirs = out.with_name(f".{out.name}.tmp")
    theirs.write_bytes(b"partial")
    try:
        assert main(evaluate_args(trained, "--overwrite")) == 2
        assert "is being written by another process" in last_error(capsys)
        assert theirs.read_bytes() == b"partial"  # the loser removed nothing of the other's
    finally:
        holder.release()
        theirs.unlink()
    assert out.read_bytes() == before


@pytest.mark.slow
def test_a_write_that_hits_the_file_size_limit_names_the_file(trained: Path, tmp_path: Path):
    from salt.cli.main import main

    assert main(evaluate_args(trained, "--overwrite")) == 0
    (out,) = trained.glob("ckpts/*__test_test.h5")
    before = out.read_bytes()
    limit = 1_000_000  # far below the file with constituent outputs

    done = salt_with_file_size_limit(evaluate_args(trained, "--overwrite"), limit)
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("salt: error: predictions file") and str(out) in line
    assert "file-size limit" in line and "nothing written" in line
    assert out.read_bytes() == before  # the earlier predictions are intact
    assert not list(out.parent.glob(".*"))


# -- run directories ------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_twin_fit_fails_while_the_name_is_claimed(demo_dir: Path, tmp_path: Path, capsys):
    from salt.cli.main import main

    holder = OutputClaim(tmp_path / "twin_run")  # a fit of the same name starting right now
    holder.acquire()
    try:
        assert main(fit_args(demo_dir, tmp_path, "twin")) == 2
        line = last_error(capsys)
        assert "twin_run' is being written by another process" in line
        assert "choose another --name/--log_suffix" in line
    finally:
        holder.release()
    assert not (tmp_path / "twin_run").exists()


def test_ckpt_path_last_without_a_run_is_one_line(demo_dir: Path, tmp_path: Path, capsys):
    from salt.cli.main import main

    code = main([*fit_args(demo_dir, tmp_path, "fresh"), "--ckpt_path=last"])
    assert code == 2
    line = last_error(capsys)
    assert line.startswith("salt: error: --ckpt_path last:") and "not a run directory" in line
    assert not (tmp_path / "fresh_run").exists()


@pytest.mark.slow
def test_a_checkpoint_beyond_the_file_size_limit_fails_in_one_line(demo_dir: Path, tmp_path: Path):
    """``ulimit -f`` (or a full disk) during fit: the checkpoint named with the cause, no
    half-written file, and the run marked failed rather than left ``running``."""
    import yaml

    # below one GN2 checkpoint
    done = salt_with_file_size_limit(fit_args(demo_dir, tmp_path, "full"), 300_000)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    ckpts = tmp_path / "full_run" / "ckpts"
    assert line.startswith("salt: error: ") and f"checkpoint {ckpts}" in line, line
    assert "File too large" in line and "[Errno" not in line
    assert not list(ckpts.iterdir())  # nothing half-written, no temporary file left
    meta = yaml.safe_load((tmp_path / "full_run" / "metadata.yaml").read_text())
    assert meta["status"] == "failed"
