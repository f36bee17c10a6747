"""salt-ml's module-graph configs (salt.model.SaltModule with modules:) read as salt's."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import yaml

from salt.cli.main import main
from salt.compat.rewrite import translate_config

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "salt_ml"


def load(name: str) -> dict:
    return yaml.safe_load((FIXTURES / name).read_text())


def net_of(config: dict) -> dict:
    return config["model"]["model"]["init_args"]


def test_module_graph_becomes_a_salt_model():
    out = translate_config(load("GN2_modules.yaml"), "GN2_modules.yaml")
    config = out.config
    assert "outputs" not in config and "export" not in config
    assert config["model"]["lrs_config"]["max"] == 1.0e-3 and "optimizer" not in config["model"]
    assert config["data"]["variables"]["tracks"][0] == "d0" and "modules" not in config["data"]
    net = net_of(config)
    assert net["init_nets"] == [
        {
            "input_name": "tracks",
            "attach_global": True,
            "dense_config": {"hidden_layers": [32], "activation": "ReLU", "output_size": 32},
        }
    ]
    encoder = net["encoder"]["init_args"]
    assert net["encoder"]["class_path"] == "salt.models.Transformer"
    assert (encoder["embed_dim"], encoder["out_dim"], encoder["num_layers"]) == (32, 24, 2)
    assert encoder["attn_kwargs"] == {"num_heads": 4}
    tasks = {t["init_args"]["name"]: t for t in net["tasks"]}
    assert tasks["track_origin"]["init_args"]["class_names"][0] == "Pileup"
    vertexing = tasks["track_vertexing"]
    assert vertexing["class_path"] == "salt.models.VertexingTask"
    assert vertexing["init_args"]["normalise_by"] == "linked_pairs"
    assert config["evaluation"]["write_constituents"] is True  # origin_out in test mode
    assert any("SaltModule" in change for change in out.changes)


def test_second_global_vector_becomes_global():
    config = translate_config(load("GN2emu_modules.yaml")).config
    assert config["data"]["variables"]["GLOBAL"] == ["mass", "n_tracks"]
    assert config["data"]["non_finite_to_num"] is True
    assert [n["input_name"] for n in net_of(config)["init_nets"]] == ["tracks", "electrons"]


@pytest.mark.parametrize(
    "edit,option",
    [
        (
            lambda m: m.update(mask={"class_path": "salt.model.modules.MaskDecoder"}),
            r"modules\.mask MaskDecoder|modules\.mask salt\.model\.modules\.MaskDecoder",
        ),
        (
            lambda m: m["track_embed"]["init_args"].update(context=["normed.tracks"]),
            r"track_embed\.context",
        ),
        (
            lambda m: m["track_vertexing"]["init_args"].update(
                origin_weighting={"heavy": [3], "fake": [1]}
            ),
            r"track_vertexing\.origin_weighting",
        ),
        (
            lambda m: m["track_embed"]["init_args"].update(pos_enc=True),
            r"track_embed\.pos_enc",
        ),
    ],
)
def test_what_salt_cannot_express_stops_with_one_line(edit, option):
    config = load("GN2_modules.yaml")
    edit(config["model"]["init_args"]["modules"])
    with pytest.raises(ValueError, match=option) as err:
        translate_config(config, "GN2_modules.yaml")
    assert "\n" not in str(err.value) and str(err.value).startswith("GN2_modules.yaml: ")


def data_args(demo: Path) -> list[str]:
    return [
        f"--data.train_file={demo / 'train.h5'}",
        f"--data.val_file={demo / 'val.h5'}",
        f"--data.test_file={demo / 'test.h5'}",
        f"--data.norm_dict={demo / 'norm_dict.yaml'}",
        f"--data.class_dict={demo / 'class_dict.yaml'}",
    ]


@pytest.mark.parametrize("name", ["GN2_modules.yaml", "GN2emu_modules.yaml"])
def test_print_config_of_module_graphs(name: str, demo_dir: Path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(["fit", "--config", str(FIXTURES / name), *data_args(demo_dir), "--print_config"])
    printed = yaml.safe_load(out.getvalue())
    net = net_of(printed)
    tasks = net["tasks"]
    assert tasks[0]["init_args"]["dense_config"]["input_size"] == 24 + (
        2 if "emu" in name else 0
    )  # derived: the pooled jet (plus GLOBAL)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["GN2_modules.yaml", "GN2emu_modules.yaml"])
def test_module_graphs_fit_and_test(name: str, demo_dir: Path, tmp_path: Path):
    fit = [
        "fit",
        *("--config", str(FIXTURES / name)),
        *data_args(demo_dir),
        "--data.num_inputs={tracks: 8, electrons: 3}"
        if "emu" in name
        else "--data.num_inputs={tracks: 8}",
        "--data.num_train=200",
        "--data.num_val=100",
        "--data.num_test=100",
        "--trainer.enable_model_summary=false",
        "--trainer.logger=false",
        f"--trainer.default_root_dir={tmp_path}",
        "--log_suffix=graph",
        "-n",
        "graph",
    ]
    assert main(fit) == 0
    run = tmp_path / "graph_graph"
    assert main(["test", "--config", str(run / "config.yaml"), "--data.num_workers=0"]) == 0
    (predictions,) = run.glob("ckpts/*__test_test.h5")
    import h5py

    with h5py.File(predictions, "r") as h5:
        assert "graph_pb" in h5["jets"].dtype.names
        assert "graph_aux_TrackOrigin" in h5["tracks"].dtype.names  # write_constituents
