"""to_onnx --athena: one jet per call, Athena's names and gnn_config, parity for 0..max tracks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

from salt.cli.main import main
from salt.export.athena import GNN_CONFIG_KEY, athena_model_name
from salt.export.cli import to_onnx_main

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "salt_ml"
MAX_TRACKS = 6


@pytest.fixture(scope="module")
def run_dir(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GN2 with both auxiliary track tasks, trained from a salt-ml config."""
    root = tmp_path_factory.mktemp("athena")
    args = [
        "fit",
        "--config",
        str(FIXTURES / "GN2_registers.yaml"),
        f"--data.train_file={demo_dir / 'train.h5'}",
        f"--data.val_file={demo_dir / 'val.h5'}",
        f"--data.test_file={demo_dir / 'test.h5'}",
        f"--data.norm_dict={demo_dir / 'norm_dict.yaml'}",
        f"--data.class_dict={demo_dir / 'class_dict.yaml'}",
        f"--data.num_inputs={{tracks: {MAX_TRACKS}}}",
        "--data.num_train=200",
        "--data.num_val=100",
        "--data.batch_size=100",
        "--data.num_workers=0",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}",
        "--log_suffix=athena",
        "-n",
        "GN2_reg",
    ]
    assert main(args) == 0
    return root / "GN2_reg_athena"


def test_model_names_for_athena():
    assert athena_model_name("GN2_v01-x") == "GN2v01x"
    with pytest.raises(ValueError, match="letters and digits"):
        athena_model_name("2GN.a")


@pytest.mark.slow
def test_athena_export(run_dir: Path, capsys):
    ckpt = sorted((run_dir / "ckpts").glob("epoch=*.ckpt"))[-1]
    assert to_onnx_main(["--ckpt_path", str(ckpt), "--athena"]) == 0
    assert "parity max discrepancy" in capsys.readouterr().out
    path = run_dir / "network_athena.onnx"
    model = onnx.load(str(path))
    assert model.opset_import[0].version >= 20
    props = {p.key: p.value for p in model.metadata_props}
    gnn = json.loads(props[GNN_CONFIG_KEY])
    assert gnn["model_name"] == "GN2reg" and gnn["onnx_model_version"] == "v1"
    assert gnn["output_names"] == [
        "GN2reg_pb",
        "GN2reg_pc",
        "GN2reg_pu",
        "GN2reg_ptau",
        "GN2reg_TrackOrigin",
        "GN2reg_VertexIndex",
    ]
    assert gnn["inputs"] == [
        {
            "name": "jet_var",
            "variables": [
                {"name": "pt", "offset": 0.0, "scale": 1.0},
                {"name": "eta", "offset": 0.0, "scale": 1.0},
            ],
        }
    ]
    (tracks,) = gnn["input_sequences"]
    assert tracks["name"] == "tracks_r22default_sd0sort"
    assert [v["name"] for v in tracks["variables"]][:2] == ["d0", "z0SinTheta"]
    assert gnn["config.yaml"]["name"] == "GN2_reg"
    # one jet per call: jet [1, 2], tracks [n, 6] without a batch axis, any n (also 0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["jet_features", "track_features"]
    rng = np.random.default_rng(0)
    for n in (0, 3, MAX_TRACKS + 4):  # beyond the checked maximum too
        feed = {
            "jet_features": (rng.normal(size=(1, 2)) * [5e4, 1]).astype(np.float32),
            "track_features": rng.normal(size=(n, 6)).astype(np.float32),
        }
        outputs = dict(zip(gnn["output_names"], session.run(None, feed)))
        probs = [outputs[f"GN2reg_p{f}"] for f in ("b", "c", "u", "tau")]
        assert all(p.shape == () for p in probs)
        assert float(sum(probs)) == pytest.approx(1.0, abs=1e-5)
        for aux in ("GN2reg_TrackOrigin", "GN2reg_VertexIndex"):
            assert outputs[aux].dtype == np.int8 and outputs[aux].shape == (n,)
        assert ((outputs["GN2reg_TrackOrigin"] >= 0) & (outputs["GN2reg_TrackOrigin"] < 8)).all()
    # the batched export is still the default, and --athena never overwrites silently
    assert to_onnx_main(["--ckpt_path", str(ckpt), "--athena"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert not (run_dir / "network.onnx").exists()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["name"] == "GN2_reg"


@pytest.mark.slow
def test_athena_parity_failure_writes_nothing(run_dir: Path, tmp_path: Path, monkeypatch, capsys):
    import salt.export.athena as athena

    real = athena._batched_reference

    def shifted(*args, **kwargs):
        out = real(*args, **kwargs)
        out[3]["GN2reg_pb"] = out[3]["GN2reg_pb"] + 1e-3  # the jet with 3 tracks
        return out

    monkeypatch.setattr(athena, "_batched_reference", shifted)
    ckpt = sorted((run_dir / "ckpts").glob("epoch=*.ckpt"))[-1]
    out = tmp_path / "bad.onnx"
    assert to_onnx_main(["--ckpt_path", str(ckpt), "--athena", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "GN2reg_pb differs" in err and "3 constituents" in err
    assert not out.exists()
