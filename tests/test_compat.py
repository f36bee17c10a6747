"""salt-ml configs run unchanged except data paths: translation, Transformer adapter, migrate."""

from __future__ import annotations

import contextlib
import inspect
import io
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from salt.cli.main import main
from salt.compat.losses import BCEWithLogitsLoss, CrossEntropyLoss
from salt.compat.migrate import migrate_config
from salt.compat.rewrite import translate_config
from salt.models.dense import Dense, GatedLinear
from salt.models.registers import Transformer
from salt.models.transformer import TransformerEncoder

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "salt_ml"


def load(name: str) -> dict:
    return yaml.safe_load((FIXTURES / name).read_text())


def data_args(demo: Path) -> list[str]:
    return [
        f"--data.train_file={demo / 'train.h5'}",
        f"--data.val_file={demo / 'val.h5'}",
        f"--data.test_file={demo / 'test.h5'}",
        f"--data.norm_dict={demo / 'norm_dict.yaml'}",
        f"--data.class_dict={demo / 'class_dict.yaml'}",
    ]


def print_config(args: list[str]) -> dict:
    out = io.StringIO()
    code: object = None
    with contextlib.redirect_stdout(out):
        try:
            code = main([*args, "--print_config"])
        except SystemExit as exit_:
            code = exit_.code
    assert code in (0, None), f"salt {' '.join(args)} --print_config exited with {code}"
    return yaml.safe_load(out.getvalue())


# -- building blocks ---------------------------------------------------------------------------
def test_gated_linear_is_activation_of_gate_times_value():
    torch.manual_seed(0)
    unit = GatedLinear(3, 2, "ReLU")
    x = torch.randn(5, 3)
    full = unit.proj(x)
    expected = torch.relu(full[:, :2]) * full[:, 2:]
    torch.testing.assert_close(unit(x), expected)
    dense = Dense(3, 4, hidden_layers=[2], gated=True)
    assert isinstance(dense.net[0], GatedLinear)
    # gated: the first layer is twice as wide (3*4+4 weights+biases), then 2->4
    assert sum(p.numel() for p in dense.parameters()) == (3 * 4 + 4) + (2 * 4 + 4)


def register_tokens(enc: Transformer) -> torch.Tensor:
    """The adapter's registers, wherever they live (its own or the encoder's)."""
    registers = enc.registers if enc.registers is not None else enc.encoder.registers
    assert registers is not None
    return registers


@pytest.mark.parametrize("drop", [True, False])
def test_transformer_registers_padding_and_empty_jets(drop: bool):
    torch.manual_seed(0)
    enc = Transformer(
        num_layers=2,
        embed_dim=16,
        out_dim=8,
        attn_kwargs={"num_heads": 4},
        dense_kwargs={"gated": True},
        num_registers=3,
        drop_registers=drop,
    ).eval()
    assert register_tokens(enc).shape == (3, 16)
    x = torch.randn(4, 6, 16)
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[:, 4:] = True
    mask[0] = True  # a jet without constituents
    out = enc(x, mask)
    # registers come out after the constituents (for pooling) unless dropped
    length = 6 if drop or not enc.native_registers else 9
    assert out.shape == (4, length, 8)
    assert torch.isfinite(out).all()
    assert out[0, :6].abs().sum() == 0 and out[:, 4:6].abs().sum() == 0
    # what the padding holds never matters
    noisy = x.clone()
    noisy[:, 4:] = 1e3
    torch.testing.assert_close(enc(noisy, mask), out)
    # the registers are attended to: changing them changes the constituents' outputs
    with torch.no_grad():
        register_tokens(enc).add_(torch.randn(3, 16))
    assert not torch.allclose(enc(x, mask)[1:, :4], out[1:, :4])


def test_transformer_defaults_follow_salt_ml():
    enc = Transformer(num_layers=1, embed_dim=8)
    assert enc.num_registers == 1 and register_tokens(enc).shape == (1, 8)  # salt-ml's default
    ffn = enc.encoder.layers[0].ffn
    assert any(isinstance(m, nn.SiLU) for m in ffn.modules())  # salt-ml's GLU default


@pytest.mark.parametrize(
    "kwargs,option",
    [
        ({"do_final_norm": False}, "do_final_norm"),
        ({"update_edges": True}, "update_edges"),
        ({"attn_type": "flash"}, "attn_type"),
        ({"ls_init": 1e-3}, "ls_init"),
        ({"attn_kwargs": {"do_qk_norm": True}}, "do_qk_norm"),
        ({"dense_kwargs": {"hidden": 3}}, "dense_kwargs"),
    ],
)
def test_transformer_refuses_what_it_cannot_do(kwargs, option):
    with pytest.raises(ValueError, match=option) as err:
        Transformer(num_layers=1, embed_dim=8, **kwargs)
    assert "\n" not in str(err.value)


def test_list_weight_losses_equal_torch_with_tensors():
    logits, target = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    ours = CrossEntropyLoss(weight=[1.0, 2.0, 0.5])
    ref = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5]))
    torch.testing.assert_close(ours(logits, target), ref(logits, target))
    pair = BCEWithLogitsLoss(pos_weight=[3.0], reduction="none")
    y = torch.tensor([[1.0], [0.0]])
    torch.testing.assert_close(
        pair(torch.zeros(2, 1), y),
        nn.BCEWithLogitsLoss(pos_weight=torch.tensor([3.0]), reduction="none")(
            torch.zeros(2, 1), y
        ),
    )
    with pytest.raises(ValueError, match="weight"):
        CrossEntropyLoss(weight=[])


# -- translation -------------------------------------------------------------------------------
def test_salt_configs_pass_unchanged():
    for name in ("GN2.yaml", "GN2_muP.yaml", "GN2_param.yaml"):
        config = yaml.safe_load((ROOT / "configs" / name).read_text())
        translation = translate_config(config)
        assert not translation.changed, translation.changes
        assert translation.config == config


def test_translation_of_salt_ml_forms():
    out = translate_config(load("GN2.yaml")).config
    tasks = out["model"]["model"]["init_args"]["tasks"]
    assert isinstance(tasks, list) and len(tasks) == 3
    assert tasks[2]["init_args"]["dense_config"]["input_size"] == 128  # pair width 256 / 2
    assert tasks[1]["init_args"]["class_names"][0] == "Pileup"
    base = translate_config(load("base.yaml")).config
    classes = [c["class_path"] for c in base["trainer"]["callbacks"]]
    assert "salt.callbacks.Checkpoint" not in classes
    assert "salt.callbacks.PredictionWriter" not in classes
    assert base["trainer"]["logger"]["class_path"].startswith("salt.")
    assert "last_epoch" not in base["model"]["lrs_config"]
    assert "prefetch_factor" not in base["data"]
    mup = translate_config(load("GN2_muP.yaml")).config
    assert "muP_config" in mup["model"] and "mup_config" not in mup["model"]
    net = mup["model"]["model"]["init_args"]
    assert net["init_nets"][0]["dense_config"]["muP"] is True
    assert net["encoder"]["init_args"]["muP"] is True
    gn1 = translate_config(load("GN1.yaml")).config
    assert gn1["model"]["model"]["init_args"]["encoder"]["init_args"]["mha_config"]["out_proj"]
    assert translate_config(load("param.yaml")).config["data"]["PARAMETERS"]["massHypothesis"]


@pytest.mark.parametrize(
    "edit,option",
    [
        (lambda c: c["data"].update(train_vds_path="x.h5"), "data.train_vds_path"),
        (lambda c: c["model"].setdefault("lrs_config", {}).update(last_epoch=7), "last_epoch"),
        (
            lambda c: c["model"]["model"]["init_args"].update(featurewise_nets=["input"]),
            r"featurewise_nets\[0\] expected \{layer",
        ),
        (lambda c: c["model"]["model"].update(class_path="salt.models.JetTagger"), "JetTagger"),
        (lambda c: c["data"].update(input_names={"jet": "jets"}), "data.input_names"),
        (
            lambda c: c["trainer"]["callbacks"].append({"class_path": "salt.callbacks.Unknown"}),
            r"salt\.callbacks\.Unknown",
        ),
    ],
)
def test_unsupported_options_stop_with_one_line(edit, option):
    config = load("GN2.yaml")
    config["trainer"]["callbacks"] = []
    edit(config)
    with pytest.raises(ValueError, match=option) as err:
        translate_config(config, "GN2.yaml")
    message = str(err.value)
    assert "\n" not in message and message.startswith("GN2.yaml: ")


def test_an_empty_module_graph_stops_with_one_line():
    config = {"model": {"class_path": "salt.model.SaltModule", "init_args": {"modules": {}}}}
    with pytest.raises(ValueError, match=r"modules needs a StreamEmbed and a task module"):
        translate_config(config)


# -- the CLI ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "configs",
    [
        ["base.yaml", "GN2.yaml"],
        ["GN1.yaml"],
        ["GN2_registers.yaml"],
        ["GN2_registers.yaml", "param.yaml"],
        ["GN2_muP.yaml"],
    ],
)
def test_print_config_reads_salt_ml_configs(configs, demo_dir: Path):
    args = [a for c in configs for a in ("--config", str(FIXTURES / c))]
    printed = print_config(["fit", *args, *data_args(demo_dir)])
    net = printed["model"]["model"]["init_args"]
    assert isinstance(net["tasks"], list)
    if "GN2.yaml" in configs:
        assert net["encoder"]["class_path"] in (
            "salt.models.Transformer",
            "salt.models.registers.Transformer",
        )
        logger = printed["trainer"]["logger"]
        logger = logger[0] if isinstance(logger, list) else logger
        assert logger["class_path"].endswith("CometLogger")
        assert logger["class_path"].startswith("salt.")
    if "param.yaml" in configs:
        assert printed["data"]["PARAMETERS"]["massHypothesis"]["test"] == 16.0


def short_fit_args(demo: Path, root: Path, name: str) -> list[str]:
    return [
        *data_args(demo),
        "--data.num_inputs={tracks: 8}",
        "--data.num_train=200",
        "--data.num_val=100",
        "--data.batch_size=100",
        "--data.num_workers=0",
        "--trainer.max_epochs=1",
        "--trainer.accelerator=cpu",
        "--trainer.precision=32",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}",
        "--log_suffix=ml",
        "-n",
        name,
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "configs",
    [["base.yaml", "GN2.yaml"], ["GN1.yaml"], ["GN2_registers.yaml", "param.yaml"]],
)
def test_salt_ml_configs_fit(configs, demo_dir: Path, tmp_path: Path):
    args = [a for c in configs for a in ("--config", str(FIXTURES / c))]
    assert main(["fit", *args, *short_fit_args(demo_dir, tmp_path, "ml")]) == 0
    run = tmp_path / "ml_ml"
    assert list((run / "ckpts").glob("*.ckpt"))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    # the run directory's config is in salt's own syntax: it runs without translation
    assert not translate_config(saved).changed


def test_migrate_writes_salt_syntax(tmp_path: Path, capsys):
    out = tmp_path / "GN2_reg.yaml"
    assert main(["migrate", str(FIXTURES / "GN2_registers.yaml"), "-o", str(out)]) == 0
    migrated = yaml.safe_load(out.read_text())
    assert not translate_config(migrated).changed
    net = migrated["model"]["model"]["init_args"]
    encoder = net["encoder"]
    if "num_registers" in inspect.signature(TransformerEncoder).parameters:
        assert encoder["class_path"] == "salt.models.TransformerEncoder"
        assert encoder["init_args"]["num_registers"] == 8
        assert encoder["init_args"]["dense_config"]["gated"] is True
    else:
        assert encoder["class_path"] == "salt.models.TransformerV2"
    assert "input_size" not in net["tasks"][0]["init_args"]["dense_config"]
    err = capsys.readouterr().err
    assert "ModuleList unwrapped" in err and "removed (derived)" in err
    # no overwrite without --overwrite
    assert main(["migrate", str(FIXTURES / "GN1.yaml"), "-o", str(out)]) == 2
    assert main(["migrate", str(FIXTURES / "GN1.yaml"), "-o", str(out), "--overwrite"]) == 0


def test_migrate_turns_a_register_free_transformer_into_our_encoder():
    config = load("GN2.yaml")
    config["model"]["model"]["init_args"]["encoder"]["init_args"]["num_registers"] = 0
    migrated = migrate_config(config).config
    encoder = migrated["model"]["model"]["init_args"]["encoder"]
    assert encoder["class_path"] == "salt.models.TransformerEncoder"
    args = encoder["init_args"]
    assert args["mha_config"]["num_heads"] == 8
    assert args.get("num_registers", 0) == 0
    assert args["dense_config"] == {
        "hidden_layers": [512],
        "activation": "ReLU",
        "dropout": 0.0,
        "gated": False,
    }
    # and the encoder it describes builds, with the same parameter count as the adapter
    ours = TransformerEncoder(**{k: v for k, v in args.items() if k != "mha_config"})
    adapter = Transformer(
        num_layers=4,
        embed_dim=256,
        out_dim=128,
        num_registers=0,
        dense_kwargs={"activation": "ReLU"},
        attn_kwargs={"num_heads": 8},
    )
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in adapter.parameters())


def test_migrate_reports_unsupported_options(tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    config = load("GN2.yaml")
    config["data"]["edge_constructors"] = [{"name": "dR"}]
    bad.write_text(yaml.safe_dump(config))
    assert main(["migrate", str(bad)]) == 2
    assert "data.edge_constructors" in capsys.readouterr().err


# -- the docs page's commands, run for real on the demo files -----------------------------------
DOC = ROOT / "docs" / "tutorials" / "coming-from-salt-ml.md"


def doc_page() -> tuple[dict, list[list[str]]]:
    """The page's salt-ml config (its ``# file:`` block) and its salt command lines."""
    import re
    import shlex

    text = DOC.read_text()
    blocks = re.findall(r"```(\w+)\n(.*?)```", text, re.S)
    config = next(yaml.safe_load(b) for lang, b in blocks if lang == "yaml" and "# file:" in b)
    commands = [
        shlex.split(line)
        for lang, b in blocks
        if lang == "bash"
        for line in b.splitlines()
        if line.startswith("salt ")
    ]
    return config, commands


@pytest.mark.slow
def test_docs_page_commands_run(demo_dir: Path, tmp_path: Path, monkeypatch):
    config, commands = doc_page()
    assert {c[1] for c in commands} == {"fit", "migrate", "norm-dict"}
    for key in ("train", "val", "test"):
        config["data"][f"{key}_file"] = str(demo_dir / f"{key}.h5")
    for key in ("norm_dict", "class_dict"):
        config["data"][key] = str(demo_dir / f"{key}.yaml")
    (tmp_path / "GN2_salt_ml.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dicts").mkdir()  # the page's `mkdir -p dicts`
    for argv in commands:
        args = argv[1:]
        if args[0] == "fit":
            tiny = [a for a in short_fit_args(demo_dir, tmp_path, "doc") if "_dict=" not in a]
            args += [a for a in tiny if not a.startswith("--data.") or "num" in a or "batch" in a]
        assert main(args) == 0, argv
    assert list((tmp_path / "doc_ml" / "ckpts").glob("*.ckpt"))
    migrated = yaml.safe_load((tmp_path / "GN2_salt.yaml").read_text())
    assert not translate_config(migrated).changed
    norm = yaml.safe_load((tmp_path / "dicts" / "norm_dict.yaml").read_text())
    assert set(norm) == {"jets", "tracks"} and "d0" in norm["tracks"]
    classes = yaml.safe_load((tmp_path / "dicts" / "class_dict.yaml").read_text())
    assert len(classes["jets"]["flavour_label"]) == 4


def test_prediction_writer_options_become_evaluation_options():
    config = load("base.yaml")
    config["trainer"]["callbacks"][1]["init_args"] = {
        "write_tracks": True,
        "extra_vars": {"jets": ["eventNumber"]},
        "half_precision": True,
    }
    out = translate_config(config).config
    assert out["evaluation"]["write_constituents"] is True
    assert out["evaluation"]["jet_fields"][-1] == "eventNumber"
    assert "flavour_label" in out["evaluation"]["jet_fields"]
    config["trainer"]["callbacks"][1]["init_args"] = {"write_objects": True}
    with pytest.raises(ValueError, match="write_objects"):
        translate_config(config)


def test_optimizer_by_name():
    config = load("GN2.yaml")
    config["model"]["optimizer"] = "AdamW"
    assert "optimizer" not in translate_config(config).config["model"]
    config["model"]["optimizer"] = "lion"
    with pytest.raises(ValueError, match=r"pytorch_optimizer\.Lion"):
        translate_config(config)


def test_non_finite_to_num_replaces_instead_of_stopping():
    import numpy as np

    from salt.data.batch import BatchBuilder, InputSpec

    rows = np.zeros((2, 3), dtype=[("d0", "f4"), ("valid", "?")])
    rows["valid"] = True
    rows["d0"] = [[1.0, np.nan, 2.0], [np.inf, -np.inf, 3.0]]
    spec = InputSpec("tracks", "tracks", ["d0"], True)
    with pytest.raises(ValueError, match=r"non-finite value in 'tracks\.d0'"):
        BatchBuilder([spec]).build({"tracks": rows.copy()}, np.arange(2))
    batch = BatchBuilder([spec], non_finite_to_num=True).build({"tracks": rows}, np.arange(2))
    inputs = batch[0]
    np.testing.assert_array_equal(inputs["tracks"][..., 0], [[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    # salt-ml's older spelling is renamed
    config = load("GN2.yaml")
    config["data"]["nan_to_num"] = True
    assert translate_config(config).config["data"]["non_finite_to_num"] is True
