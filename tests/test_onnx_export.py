"""to_onnx / get_onnx_metadata on a tiny trained run: names, dynamic axes, metadata, parity."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml

import salt.export.onnx_export as onnx_export
from salt.cli.main import main
from salt.export.cli import metadata_main, to_onnx_main
from salt.export.spec import InputDesc, singular, task_outputs
from salt.tasks.base import TaskBase

ROOT = Path(__file__).resolve().parents[1]
ORIGINS = ["Pileup", "Fake", "Primary", "FromB", "FromBC", "FromC", "FromTau", "OtherSecondary"]
JET_CLASSES = ["bjets", "cjets", "ujets", "taujets"]
ELECTRON_VARS = ["pt_frac", "dr", "d0Sig", "eop"]
MAX_TRACKS, MAX_ELECTRONS = 12, 5

# a tiny two-input network with both auxiliary track tasks, on top of GN2.yaml
TINY = {
    "model": {
        "model": {
            "init_args": {
                "init_nets": [
                    {"input_name": "tracks", "dense_config": {"output_size": 16}},
                    {"input_name": "electrons", "dense_config": {"output_size": 16}},
                ],
                "encoder": {
                    "class_path": "salt.models.TransformerEncoder",
                    "init_args": {
                        "embed_dim": 16,
                        "num_layers": 1,
                        "out_dim": 16,
                        "mha_config": {"num_heads": 2},
                        "dense_config": {"hidden_layers": [16]},
                    },
                },
                "tasks": [
                    {
                        "class_path": "salt.models.ClassificationTask",
                        "init_args": {
                            "name": "jets_classification",
                            "input_name": "jets",
                            "label": "flavour_label",
                            "dense_config": {"hidden_layers": [8]},
                        },
                    },
                    {
                        "class_path": "salt.models.ClassificationTask",
                        "init_args": {
                            "name": "track_origin",
                            "input_name": "tracks",
                            "label": "ftagTruthOriginLabel",
                            "class_names": ORIGINS,
                            "dense_config": {"hidden_layers": [8]},
                        },
                    },
                    {
                        "class_path": "salt.models.VertexingTask",
                        "init_args": {
                            "name": "track_vertexing",
                            "input_name": "tracks",
                            "label": "ftagTruthVertexIndex",
                            "dense_config": {"hidden_layers": [8]},
                        },
                    },
                ],
            }
        }
    },
    "data": {"num_inputs": {"tracks": MAX_TRACKS, "electrons": MAX_ELECTRONS}},
}


@pytest.fixture(scope="module")
def run_dir(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("onnx_logs")
    variables = yaml.safe_load((ROOT / "configs" / "GN2.yaml").read_text())["data"]["variables"]
    config = {**TINY, "data": {**TINY["data"], "variables": {**variables}}}
    config["data"]["variables"]["electrons"] = ELECTRON_VARS
    tiny = root / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(config, sort_keys=False))
    main(
        [
            "fit",
            "--config",
            str(ROOT / "configs" / "GN2.yaml"),
            "--config",
            str(tiny),
            f"--data.train_file={demo_dir / 'train.h5'}",
            f"--data.val_file={demo_dir / 'val.h5'}",
            f"--data.test_file={demo_dir / 'test.h5'}",
            f"--data.norm_dict={demo_dir / 'norm_dict.yaml'}",
            f"--data.class_dict={demo_dir / 'class_dict.yaml'}",
            "--data.batch_size=200",
            "--data.num_workers=0",
            "--data.num_train=400",
            "--data.num_val=200",
            "--trainer.max_epochs=1",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={root}",
            "--log_suffix=onnx",
            "-n",
            "tiny",
        ]
    )
    return root / "tiny_onnx"


def checkpoint(run: Path) -> Path:
    return sorted((run / "ckpts").glob("epoch=*.ckpt"))[-1]


@pytest.fixture(scope="module")
def exported(run_dir: Path) -> Path:
    assert to_onnx_main(["--ckpt_path", str(checkpoint(run_dir)), "--parity_jets", "300"]) == 0
    return run_dir / "network.onnx"


@pytest.fixture(scope="module")
def reference(run_dir: Path):
    """The trained SaltModule in eval mode, built independently of the exported file."""
    module, _ = onnx_export.load_run(run_dir / "config.yaml", checkpoint(run_dir))
    return module


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def raw_inputs(batch: int, n_tracks: int, n_electrons: int, seed: int = 0):
    """Realistically scaled raw inputs; jet i has i % (n + 1) valid constituents of each type."""
    gen = torch.Generator().manual_seed(seed)
    jets = torch.stack(
        [5e4 + 1e5 * torch.rand(batch, generator=gen), torch.randn(batch, generator=gen)], 1
    )
    tracks = torch.randn(batch, n_tracks, 19, generator=gen)
    electrons = torch.randn(batch, n_electrons, len(ELECTRON_VARS), generator=gen)
    rows = torch.arange(batch)[:, None]
    track_mask = torch.arange(n_tracks)[None, :] >= rows % (n_tracks + 1)
    electron_mask = torch.arange(n_electrons)[None, :] >= rows % (n_electrons + 1)
    tracks[track_mask] = 0.0
    electrons[electron_mask] = 0.0
    inputs = {"jets": jets, "tracks": tracks, "electrons": electrons}
    return inputs, {"tracks": track_mask, "electrons": electron_mask}


def feed(inputs, masks) -> dict[str, np.ndarray]:
    return {
        "jet_features": inputs["jets"].numpy(),
        "track_features": inputs["tracks"].numpy(),
        "track_mask": masks["tracks"].numpy(),
        "electron_features": inputs["electrons"].numpy(),
        "electron_mask": masks["electrons"].numpy(),
    }


def test_export_names_inputs_and_outputs(exported: Path):
    assert exported.is_file()
    assert not list(exported.parent.glob(".network.onnx.*"))  # no temporary file left
    model = onnx.load(str(exported))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inputs = {i.name: dims(i) for i in model.graph.input}
    assert list(inputs) == [
        "jet_features",
        "track_features",
        "track_mask",
        "electron_features",
        "electron_mask",
    ]
    assert inputs == {
        "jet_features": ["batch", 2],
        "track_features": ["batch", "n_tracks", 19],
        "track_mask": ["batch", "n_tracks"],
        "electron_features": ["batch", "n_electrons", len(ELECTRON_VARS)],
        "electron_mask": ["batch", "n_electrons"],
    }
    bool_type = onnx.TensorProto.BOOL
    assert {i.name for i in model.graph.input if i.type.tensor_type.elem_type == bool_type} == {
        "track_mask",
        "electron_mask",
    }
    outputs = {o.name: dims(o) for o in model.graph.output}
    jet_outputs = ["tiny_pb", "tiny_pc", "tiny_pu", "tiny_ptau"]
    track_outputs = [f"tiny_track_origin_p{o}" for o in ORIGINS] + ["tiny_track_origin"]
    track_outputs += ["tiny_track_vertexing_vertex_index"]
    assert list(outputs) == jet_outputs + track_outputs
    assert all(outputs[n] == ["batch"] for n in jet_outputs)
    assert all(outputs[n] == ["batch", "n_tracks"] for n in track_outputs)


@pytest.mark.parametrize(
    ("batch", "n_tracks", "n_electrons"),
    [
        (1, 0, 0),
        (1, 1, 1),
        (1, MAX_TRACKS, MAX_ELECTRONS),
        (37, 0, 0),
        (37, 1, 0),
        (64, 12, 5),
        (64, MAX_TRACKS, 0),
    ],
)
def test_dynamic_axes_match_pytorch(exported, reference, batch, n_tracks, n_electrons):
    inputs, masks = raw_inputs(batch, n_tracks, n_electrons, seed=batch + n_tracks)
    onnx_session = session(exported)
    names = [o.name for o in onnx_session.get_outputs()]
    got = dict(zip(names, onnx_session.run(None, feed(inputs, masks))))
    with torch.no_grad():
        outputs, _ = reference(inputs, masks)
    probs = torch.softmax(outputs["jets_classification"], -1).numpy()
    jet = np.stack([got[f"tiny_p{f}"] for f in ("b", "c", "u", "tau")], axis=1)
    assert jet.shape == (batch, 4)
    np.testing.assert_allclose(jet, probs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(jet.sum(1), 1.0, atol=1e-5)
    origin = torch.softmax(outputs["track_origin"], -1).numpy()
    assert got["tiny_track_origin"].shape == (batch, n_tracks)
    padded = masks["tracks"].numpy()
    np.testing.assert_array_equal(got["tiny_track_origin"][padded], -1)
    np.testing.assert_array_equal(got["tiny_track_origin"][~padded], origin.argmax(-1)[~padded])
    primary = got["tiny_track_origin_pPrimary"]
    assert np.isnan(primary[padded]).all()
    np.testing.assert_allclose(primary[~padded], origin[..., 2][~padded], atol=1e-5, rtol=0)
    vertexing = next(t for t in reference.model.tasks if t.name == "track_vertexing")
    vertices = vertexing.predict(outputs["track_vertexing"], masks["tracks"])["vertex_index"]
    np.testing.assert_array_equal(got["tiny_track_vertexing_vertex_index"], vertices.numpy())


def test_metadata_round_trips(exported: Path, run_dir: Path, capsys):
    assert metadata_main([str(exported)]) == 0
    meta = json.loads(capsys.readouterr().out)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    norm = yaml.safe_load((run_dir / "norm_dict.yaml").read_text())
    assert meta["format_version"] == 1
    assert meta["model_name"] == "tiny"
    assert meta["config"] == config
    assert meta["class_names"] == JET_CLASSES
    assert meta["tasks"]["track_origin"]["class_names"] == ORIGINS
    assert {"salt", "torch", "onnx", "onnxruntime"} <= set(meta["versions"])
    by_name = {i["name"]: i for i in meta["inputs"]}
    assert list(by_name) == ["jet_features", "track_features", "electron_features"]
    variables = config["data"]["variables"]
    for name, dataset in (("jet", "jets"), ("track", "tracks"), ("electron", "electrons")):
        entry = by_name[f"{name}_features"]
        assert entry["variables"] == variables[dataset]
        assert list(entry["norm"]) == variables[dataset]
        for var, stats in entry["norm"].items():
            assert stats["mean"] == pytest.approx(norm[dataset][var]["mean"], rel=1e-6)
            assert stats["std"] == pytest.approx(norm[dataset][var]["std"], rel=1e-6)
    assert by_name["track_features"]["mask"]["name"] == "track_mask"
    assert "True = padded" in by_name["track_features"]["mask"]["convention"]
    assert meta["output_names"] == [o.name for o in session(exported).get_outputs()]
    assert meta["parity"]["passed"] and meta["parity"]["max_diff"] <= 1e-5
    assert meta["parity"]["num_real_jets"] == 300

    assert metadata_main([str(exported), "--key", "inputs.1.variables"]) == 0
    assert json.loads(capsys.readouterr().out) == variables["tracks"]
    assert metadata_main([str(exported), "--key", "model_name"]) == 0
    assert capsys.readouterr().out.strip() == "tiny"
    assert metadata_main([str(exported), "--key", "nope"]) == 2
    assert "available: format_version" in capsys.readouterr().err


def test_refuses_to_overwrite_and_selects_tasks(exported: Path, run_dir: Path, tmp_path, capsys):
    before = exported.read_bytes()
    assert to_onnx_main(["--ckpt_path", str(checkpoint(run_dir))]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert exported.read_bytes() == before

    out = tmp_path / "jets_only.onnx"
    args = ["--ckpt_path", str(checkpoint(run_dir)), "--output", str(out), "--name", "GN3"]
    args += ["--tasks", "jets_classification", "--parity_jets", "0"]
    assert to_onnx_main(args) == 0
    assert [o.name for o in session(out).get_outputs()] == [
        "GN3_pb",
        "GN3_pc",
        "GN3_pu",
        "GN3_ptau",
    ]
    assert to_onnx_main([*args, "--overwrite"]) == 0
    other = ["--ckpt_path", str(checkpoint(run_dir)), "--output", str(tmp_path / "other.onnx")]
    assert to_onnx_main([*other, "--tasks", "nope"]) == 2
    assert "unknown task" in capsys.readouterr().err


def test_failed_parity_leaves_no_file(run_dir: Path, tmp_path, monkeypatch, capsys):
    real_export = onnx_export.export_graph

    def export_then_perturb(wrapper, *args):
        graph = real_export(wrapper, *args)
        with torch.no_grad():  # the PyTorch model changes after the graph was taken
            wrapper.model.tasks[0].net.net[-1].bias[0] += 0.5
        return graph

    monkeypatch.setattr(onnx_export, "export_graph", export_then_perturb)
    out = tmp_path / "broken.onnx"
    args = ["--ckpt_path", str(checkpoint(run_dir)), "--output", str(out), "--parity_jets", "0"]
    assert to_onnx_main(args) == 1
    err = capsys.readouterr().err
    assert "parity check failed: output 'tiny_pb'" in err
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setattr(onnx_export, "export_graph", real_export)
    monkeypatch.setattr(onnx_export, "DEFAULT_TOLERANCE", -1.0)
    assert to_onnx_main(args) == 1
    assert "> tolerance -1" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_unexportable_module_is_named(run_dir: Path, tmp_path, monkeypatch, capsys):
    real_load = onnx_export.load_run

    def load_with_unsupported_op(config, ckpt):
        module, datamodule = real_load(config, ckpt)
        score = module.model.pool_net.score

        def forward(self, x):  # erfcx has no ONNX counterpart
            return torch.special.erfcx(torch.nn.functional.linear(x, self.weight, self.bias))

        score.forward = types.MethodType(forward, score)
        return module, datamodule

    monkeypatch.setattr(onnx_export, "load_run", load_with_unsupported_op)
    out = tmp_path / "x.onnx"
    args = ["--ckpt_path", str(checkpoint(run_dir)), "--output", str(out), "--parity_jets", "0"]
    assert to_onnx_main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "to_onnx: error: cannot export 'pool_net.score' (Linear) to ONNX: Exporting the "
        "operator 'aten::special_erfcx' to ONNX opset version 17 is not supported (nothing written)"
    ]
    assert not out.exists()


def test_usage_errors(tmp_path, capsys):
    assert to_onnx_main(["--ckpt_path", str(tmp_path / "missing.ckpt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert metadata_main([str(tmp_path / "missing.onnx")]) == 2


class _Headless(TaskBase):
    """A task with only a name and an input: enough to name its exported outputs."""

    def __init__(self, name: str, input_name: str) -> None:
        torch.nn.Module.__init__(self)
        self.name, self.input_name = name, input_name


class _FakeVertexing(_Headless):
    def __init__(self) -> None:
        super().__init__("vertexing", "tracks")

    def predict(self, output, pad_mask=None):
        return {"vertex_index": output.argmax(-1).masked_fill(pad_mask, -1)}


def test_other_tasks_export_through_predict():
    logits = torch.randn(2, 3, 3)
    mask = torch.tensor([[False, False, True], [False, True, True]])
    (out,) = task_outputs(
        [_FakeVertexing()], None, "jets", "GN2", {"vertexing": logits}, {"tracks": mask}
    )
    assert out.name == "GN2_vertexing_vertex_index"
    assert out.per_constituent == "tracks"
    assert (out.value[mask] == -1).all()

    with pytest.raises(TypeError, match=r"task 'mystery'.*--tasks"):
        task_outputs([_Headless("mystery", "jets")], None, "jets", "GN2", {"mystery": logits}, {})


def test_input_names():
    assert [singular(n) for n in ("jets", "tracks", "hits", "GLOBAL", "PARAMETERS", "flow")] == [
        "jet",
        "track",
        "hit",
        "global",
        "parameter",
        "flow",
    ]
    desc = InputDesc("electrons", "electrons", ("pt",), True)
    assert (desc.name, desc.mask_name, desc.length_axis) == (
        "electron_features",
        "electron_mask",
        "n_electrons",
    )


def test_to_onnx_reports_errors_through_salts_handler(monkeypatch, capsys):
    """A user error is one line (2), an unexportable model one line (1), a bug its traceback."""
    from salt.errors import UserError

    def fail(error: Exception):
        def export(*_a, **_k):
            raise error

        monkeypatch.setattr(onnx_export, "export_onnx", export)
        code = to_onnx_main(["--ckpt_path", "run/ckpts/x.ckpt"])
        return code, capsys.readouterr().err

    code, err = fail(UserError("ckpt_path: no such run"))
    assert code == 2 and err.strip() == "to_onnx: error: ckpt_path: no such run"
    code, err = fail(onnx_export.ExportError("parity 0.5 > 1e-05"))
    assert code == 1 and "parity 0.5 > 1e-05 (nothing written)" in err
    code, err = fail(KeyError("internal"))  # raised outside a validation site: a bug
    assert code == 1 and "Traceback" in err and "report it" in err
