"""``salt predict``: the predictions file of ``salt test`` for a file without truth labels."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from numpy.lib.recfunctions import repack_fields

from tests.helpers import demo_fit_args as fit_args

LABELS = {
    "jets": ["flavour_label", "HadronConeExclTruthLabelID"],
    "tracks": ["ftagTruthOriginLabel", "ftagTruthVertexIndex"],
}


def strip_labels(source: Path, target: Path, rows: int) -> None:
    """A copy of the first ``rows`` of ``source`` with the truth-label fields removed."""
    with h5py.File(source, "r") as src, h5py.File(target, "w") as out:
        for name, ds in src.items():
            data = ds[:rows]
            keep = [f for f in data.dtype.names if f not in LABELS.get(name, [])]
            out.create_dataset(name, data=repack_fields(data[keep]))


def test_predict_writes_the_test_predictions_without_labels(demo_dir: Path, tmp_path: Path):
    from salt.cli.main import main

    assert main([*fit_args(demo_dir, tmp_path, "pred", "--trainer.logger=false")]) == 0
    run = tmp_path / "pred_run"
    config = str(run / "config.yaml")
    test_file = tmp_path / "sample.h5"
    with h5py.File(demo_dir / "test.h5", "r") as src, h5py.File(test_file, "w") as out:
        for name, ds in src.items():
            out.create_dataset(name, data=ds[:300])
    unlabelled = tmp_path / "unlabelled.h5"
    strip_labels(demo_dir / "test.h5", unlabelled, 300)

    common = ["--config", config, "--data.num_workers=0", "--trainer.enable_progress_bar=false"]
    assert main(["test", *common, f"--data.test_file={test_file}"]) == 0
    assert main(["predict", *common, f"--data.test_file={unlabelled}"]) == 0
    (tested,) = (run / "ckpts").glob("*__test_sample.h5")
    (predicted,) = (run / "ckpts").glob("*__predict_unlabelled.h5")
    with h5py.File(tested, "r") as t, h5py.File(predicted, "r") as p:
        jets_t, jets_p = t["jets"][:], p["jets"][:]
        assert len(jets_p) == 300
        for field in ("pred_pb", "pred_pc", "pred_pu", "pred_ptau", "pt", "eta"):
            np.testing.assert_allclose(jets_p[field], jets_t[field], rtol=1e-6, atol=1e-7)
        assert "flavour_label" in jets_t.dtype.names
        assert not set(LABELS["jets"]) & set(jets_p.dtype.names)
        assert list(p["jets"].attrs["flavour_label"]) == list(t["jets"].attrs["flavour_label"])
    # never overwritten silently
    assert main(["predict", *common, f"--data.test_file={unlabelled}"]) == 2
    assert main(["predict", *common, f"--data.test_file={unlabelled}", "--overwrite"]) == 0


def test_predict_with_constituent_outputs(demo_dir: Path, tmp_path: Path):
    from salt.cli.main import main

    assert main([*fit_args(demo_dir, tmp_path, "cons", "--trainer.logger=false")]) == 0
    run = tmp_path / "cons_run"
    unlabelled = tmp_path / "bare.h5"
    strip_labels(demo_dir / "test.h5", unlabelled, 200)
    args = [
        "predict",
        "--config",
        str(run / "config.yaml"),
        f"--data.test_file={unlabelled}",
        "--data.num_workers=0",
        "--evaluation.write_constituents=true",
    ]
    assert main(args) == 0
    (predicted,) = (run / "ckpts").glob("*__predict_bare.h5")
    with h5py.File(predicted, "r") as p:
        tracks = p["tracks"][:]
    assert tracks.shape == (200, 8)
    probs = np.stack([tracks[f] for f in tracks.dtype.names if "track_origin_p" in f], -1)
    assert probs.shape[-1] == 8
    valid = tracks["valid"]
    assert np.allclose(probs[valid].sum(-1), 1.0, atol=1e-5)
    assert "ftagTruthOriginLabel" not in tracks.dtype.names


def test_predict_errors_are_one_line(tmp_path: Path, capsys):
    from salt.cli.main import main

    code = main(
        [
            "predict",
            "--config",
            str(Path(__file__).resolve().parents[1] / "configs" / "GN2.yaml"),
            f"--ckpt_path={tmp_path / 'nope.ckpt'}",
            f"--data.test_file={tmp_path / 'nope.h5'}",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("salt: error:") and "nope" in err


@pytest.mark.slow
def test_predict_reads_the_whole_file_whatever_the_runs_num_test(demo_dir: Path, tmp_path: Path):
    """The run caps its test file at 200 jets; a file given to salt predict is predicted whole
    unless --data.num_test is given on the command line."""
    from salt.cli.main import main

    args = fit_args(demo_dir, tmp_path, "cap", "--trainer.logger=false", "--data.num_test=200")
    assert main(args) == 0
    run = tmp_path / "cap_run"
    unlabelled = tmp_path / "whole.h5"
    strip_labels(demo_dir / "test.h5", unlabelled, 700)
    common = ["predict", "--config", str(run / "config.yaml"), f"--data.test_file={unlabelled}"]
    assert main(common) == 0
    (predicted,) = (run / "ckpts").glob("*__predict_whole.h5")
    with h5py.File(predicted, "r") as h5:
        assert len(h5["jets"]) == 700
    assert main([*common, "--data.num_test=300", "--overwrite"]) == 0
    with h5py.File(predicted, "r") as h5:
        assert len(h5["jets"]) == 300
