"""muP: config, base shapes, muP layers, optimizer scaling, coordinate check, setup_muP, fit."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from torch import Tensor, nn

mup = pytest.importorskip("mup")

from salt.models import (  # noqa: E402
    ClassificationTask,
    GlobalAttentionPooling,
    InitNet,
    MultiheadAttention,
    SaltModel,
    ScaledDotProductAttention,
    TransformerEncoder,
)
from salt.models.configs import DenseConfig  # noqa: E402
from salt.mup import (  # noqa: E402
    mup_factories,
    mup_one_cycle,
    mup_optimizer,
    reset_mup_parameters,
    set_base_shapes,
)
from salt.mup.config import (  # noqa: E402
    MuPConfig,
    check_divisible,
    storeshapes_path,
    width_parameters,
)
from salt.mup.coord_check import READOUT, coord_check, spread, write_outputs  # noqa: E402
from salt.training.optim import parameter_groups  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GN2 = ROOT / "configs" / "GN2.yaml"
GN2_MUP = ROOT / "configs" / "GN2_muP.yaml"

MUP_YAML = """
muP_config:
  shape_path: shapes
  embed_dim:
    apply_to: [init_nets, encoder]
    parameter_name: [output_size, embed_dim]
    parameter_base: 64
    parameter_delta: 32
"""


def tiny_model(
    width: int,
    muP: bool = True,
    num_layers: int = 2,
    heads: int = 2,
    ffn: DenseConfig | None = None,
) -> SaltModel:
    """init net (5 features) -> transformer (width) -> readout (8) -> pooling -> 3 classes."""
    dense: DenseConfig = {"input_size": 5, "output_size": width, "hidden_layers": [16]}
    dense["muP"] = muP  # type: ignore[typeddict-unknown-key]
    return SaltModel(
        init_nets=[InitNet("tracks", dense)],
        encoder=TransformerEncoder(
            width,
            num_layers,
            mha_config={"num_heads": heads},
            dense_config=ffn,
            out_dim=8,
            muP=muP,
        ),
        pool_net=GlobalAttentionPooling(8),
        tasks=[
            ClassificationTask(
                name="jets_classification",
                input_name="jets",
                label="flavour_label",
                dense_config={"input_size": 8, "hidden_layers": [8]},
                class_names=["b", "c", "u"],
            )
        ],
    )


def tiny_batches(steps: int, batch: int = 64, length: int = 10) -> list:
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(steps):
        x = torch.randn(batch, length, 5, generator=generator)
        mask = torch.rand(batch, length, generator=generator) < 0.3
        mask[:, 0] = False
        label = torch.randint(0, 3, (batch,), generator=generator)
        x[..., 0] += label[:, None]  # something to learn
        batches.append(({"tracks": x}, {"tracks": mask}, {"jets": {"flavour_label": label}}))
    return batches


def tiny_loss(model: nn.Module, batch: tuple) -> Tensor:
    inputs, masks, labels = batch
    _, losses = model(inputs, masks, labels)
    return sum(losses.values())  # type: ignore[return-value]


@pytest.fixture
def shapes(tmp_path: Path) -> dict:
    """A muP_config whose storeshapes come from tiny models of width 16 (base) and 8 (delta)."""
    config = yaml.safe_load(MUP_YAML)["muP_config"]
    config["shape_path"] = str(tmp_path / "shapes")
    config["embed_dim"].update(parameter_base=16, parameter_delta=8)
    path = storeshapes_path(config)
    path.parent.mkdir()
    mup.make_base_shapes(tiny_model(16), tiny_model(8), savefile=str(path))
    return config


# --------------------------------------------------------------------------------- config


def test_mup_config_parses_and_is_checked() -> None:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--muP_config", type=MuPConfig | None, default=None)
    parsed = parser.parse_string(MUP_YAML).muP_config
    assert parsed["shape_path"] == "shapes"
    (param,) = width_parameters(parsed)
    assert param.name == "embed_dim"
    assert param.targets == (("init_nets", "output_size"), ("encoder", "embed_dim"))
    assert (param.value("base"), param.value("delta")) == (64, 32)
    assert storeshapes_path(parsed) == Path("shapes/storeshapes")
    assert storeshapes_path({"embed_dim": parsed["embed_dim"]}) == Path("temp_muP/storeshapes")
    with pytest.raises(Exception, match="parameter_bas"):  # jsonargparse: unknown key
        parser.parse_string(MUP_YAML.replace("parameter_base", "parameter_bas"))

    def broken(**changes: object) -> dict:
        config = yaml.safe_load(MUP_YAML)["muP_config"]
        config["embed_dim"].update(changes)
        return config

    cases = [
        (broken(parameter_delta=None), r"embed_dim\.parameter_delta: missing"),
        (broken(parameter_name=["output_size"]), "one parameter name per module"),
        (broken(apply_to=["init_nets", "pool"]), "unknown module 'pool'"),
        (broken(parameter_delta=64), "must differ"),
        (broken(parameter_base=0), "parameter_base: expected a positive int"),
        ({"shape_path": "x"}, "no width parameter"),
    ]
    for config, match in cases:
        with pytest.raises(ValueError, match=match):
            width_parameters(config)


def test_shipped_config_is_valid() -> None:
    config = yaml.safe_load(GN2_MUP.read_text())
    muP_config = config["model"]["muP_config"]
    encoder = config["model"]["model"]["init_args"]["encoder"]["init_args"]
    assert encoder["muP"] and encoder["out_dim"]
    assert "hidden_layers" not in encoder["dense_config"]  # must grow with the width
    assert config["model"]["model"]["init_args"]["init_nets"][0]["dense_config"]["muP"]
    check_divisible(
        width_parameters(muP_config), encoder["embed_dim"], encoder["mha_config"]["num_heads"]
    )


def test_widths_must_divide_by_num_heads() -> None:
    params = width_parameters(yaml.safe_load(MUP_YAML)["muP_config"])
    check_divisible(params, embed_dim=64, num_heads=8)
    with pytest.raises(ValueError, match=r"parameter_base=64.*not divisible by num_heads=6"):
        check_divisible(params, embed_dim=64, num_heads=6)
    with pytest.raises(ValueError, match=r"parameter_delta=32.*not divisible by num_heads=64"):
        check_divisible(params, embed_dim=64, num_heads=64)
    # num_heads scanned too (a fixed head width): each variant is checked with its own heads
    config = yaml.safe_load(MUP_YAML)["muP_config"]
    config["num_heads"] = {
        "apply_to": ["encoder"],
        "parameter_name": ["num_heads"],
        "parameter_base": 8,
        "parameter_delta": 4,
    }
    check_divisible(width_parameters(config), embed_dim=64, num_heads=8)
    config["num_heads"]["parameter_delta"] = 5
    with pytest.raises(ValueError, match="embed_dim=32 is not divisible by num_heads=5"):
        check_divisible(width_parameters(config), embed_dim=64, num_heads=8)
    # an explicit head_dim does not split embed_dim: no constraint
    check_divisible(width_parameters(config), embed_dim=64, num_heads=8, head_dim=16)


# ------------------------------------------------------------------------------ layers


def test_mup_layers_and_readout() -> None:
    encoder = TransformerEncoder(16, 2, mha_config={"num_heads": 2}, out_dim=4, muP=True)
    assert isinstance(encoder.out_proj, mup.MuReadout)
    for layer in encoder.layers:
        assert layer.attn.muP and layer.attn.attention.muP and layer.ffn.muP
        assert layer.ffn.net[0].out_features == 32  # hidden width follows embed_dim
    standard = TransformerEncoder(16, 2, mha_config={"num_heads": 2}, out_dim=4)
    assert type(standard.out_proj) is nn.Linear and not standard.layers[0].attn.attention.muP
    with pytest.raises(ValueError, match="out_dim: required with muP=True"):
        TransformerEncoder(16, 2, muP=True)
    with pytest.raises(ValueError, match="does not support muP"):
        from salt.models import GATv2Attention

        MultiheadAttention(16, num_heads=2, attention=GATv2Attention(), muP=True)
    # a muP encoder used without base shapes says what is missing
    with pytest.raises(ValueError, match="muP_config"):
        encoder(torch.randn(2, 3, 16))


def test_mup_attention_scales_scores_by_one_over_head_dim() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, 3, 4) for _ in range(3))  # head_dim D = 4
    attention = ScaledDotProductAttention()
    standard = attention(q, k, v)
    attention.enable_muP()
    out = attention(q, k, v)
    scores = q[0, 0] @ k[0, 0].T
    torch.testing.assert_close(out[0, 0], torch.softmax(scores / 4, -1) @ v[0, 0])
    torch.testing.assert_close(standard[0, 0], torch.softmax(scores / 2, -1) @ v[0, 0])
    # through MultiheadAttention with one head: projections, then softmax(q k^T / D) v
    mha = MultiheadAttention(4, num_heads=1, muP=True)
    x = torch.randn(1, 3, 4)
    qq, kk, vv = mha.q_proj(x)[0], mha.k_proj(x)[0], mha.v_proj(x)[0]
    expected = mha.out_proj(torch.softmax(qq @ kk.T / 4, -1) @ vv)
    torch.testing.assert_close(mha(x)[0], expected)


# ------------------------------------------------------------------ base shapes, optimizer


def test_set_base_shapes_on_a_wider_model(shapes: dict, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tiny_model(48)  # 3x the base width
    assert set_base_shapes(model, shapes) == storeshapes_path(shapes)
    attn = model.encoder.layers[0].attn
    assert attn.q_proj.weight.infshape.width_mult() == 3
    readout = model.encoder.out_proj
    assert readout.width_mult() == 3
    # muP initialisation: hidden weights N(0, 1/fan_in), readout N(0, 1/base fan_in), 0 biases
    hidden = torch.cat([layer.attn.q_proj.weight.flatten() for layer in model.encoder.layers])
    assert hidden.std().item() == pytest.approx(48**-0.5, rel=0.1)
    assert readout.weight.std().item() == pytest.approx(16**-0.5, rel=0.25)
    assert not readout.bias.any() and not attn.q_proj.bias.any()
    inputs = {"tracks": torch.randn(4, 6, 5)}
    masks = {"tracks": torch.zeros(4, 6, dtype=torch.bool)}
    outputs, _ = model(inputs, masks)
    assert outputs["jets_classification"].shape == (4, 3)

    # muP AdamW: hidden matrices learn at lr / width_mult, keeping the decay / no-decay groups
    optimizer = mup_optimizer(torch.optim.AdamW(parameter_groups(model, 0.01), lr=1e-3))
    assert type(optimizer) is torch.optim.AdamW

    def group_of(param: nn.Parameter) -> dict:
        return next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))

    assert group_of(attn.q_proj.weight)["lr"] == pytest.approx(1e-3 / 3)
    assert group_of(attn.q_proj.weight)["weight_decay"] == pytest.approx(0.03)
    assert group_of(readout.weight)["lr"] == pytest.approx(1e-3)  # MuReadout scales its input
    assert group_of(attn.q_proj.bias)["weight_decay"] == 0.0
    assert group_of(model.tasks[0].net.net[0].weight)["lr"] == pytest.approx(1e-3)
    # the one-cycle schedule keeps the per-group ratios at every step
    schedule = mup_one_cycle(optimizer, {"initial": 1e-5, "max": 1e-3, "end": 1e-6}, 20)
    hidden_group, fixed_group = group_of(attn.q_proj.weight), group_of(readout.weight)
    for _ in range(8):
        assert hidden_group["lr"] == pytest.approx(fixed_group["lr"] / 3)
        optimizer.step()
        schedule.step()
    assert fixed_group["lr"] > 1e-5  # it did move along the cycle
    # MuSGD rules for SGD
    sgd = mup_optimizer(torch.optim.SGD(parameter_groups(model, 0.0), lr=0.1))
    assert type(sgd) is torch.optim.SGD
    bias_group = next(
        g for g in sgd.param_groups if any(p is attn.q_proj.bias for p in g["params"])
    )
    assert bias_group["lr"] == pytest.approx(0.3)  # vectors: lr * width_mult


def test_mup_factories_plug_into_configure_optimization(shapes: dict) -> None:
    from types import SimpleNamespace

    from salt.training.optim import configure_optimization

    model = tiny_model(48)
    set_base_shapes(model, shapes)
    q_proj, readout = model.encoder.layers[0].attn.q_proj, model.encoder.out_proj
    trainer = SimpleNamespace(estimated_stepping_batches=10, max_epochs=1)
    lrs = {"initial": 1e-6, "max": 1e-3, "end": 1e-7, "weight_decay": 1e-5}

    def group_of(optimizer: torch.optim.Optimizer, param: nn.Parameter) -> dict:
        return next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))

    # default: AdamW + one-cycle, now with muP rates (the schedule starts at lrs.initial)
    factories = mup_factories(lrs, None, None, None, trainer)
    result = configure_optimization(model, lrs, *factories, None, trainer)
    optimizer, entry = result["optimizer"], result["lr_scheduler"]
    assert type(optimizer) is torch.optim.AdamW and entry["interval"] == "step"
    assert isinstance(entry["scheduler"], torch.optim.lr_scheduler.OneCycleLR)
    assert group_of(optimizer, q_proj.weight)["max_lr"] == pytest.approx(1e-3 / 3)
    assert group_of(optimizer, readout.weight)["max_lr"] == pytest.approx(1e-3)
    assert group_of(optimizer, readout.weight)["lr"] == pytest.approx(1e-6)
    assert group_of(optimizer, q_proj.weight)["weight_decay"] == pytest.approx(3e-5)
    assert group_of(optimizer, q_proj.bias)["weight_decay"] == 0.0
    # an optimizer by class_path keeps its class and settings, with muP rates; no schedule
    factories = mup_factories(lrs, lambda g: torch.optim.Adam(g, lr=0.01), None, None, trainer)
    optimizer = configure_optimization(model, lrs, *factories, None, trainer)
    assert type(optimizer) is torch.optim.Adam
    assert group_of(optimizer, q_proj.weight)["lr"] == pytest.approx(0.01 / 3)


def test_setup_names_a_layer_that_does_not_scale() -> None:
    from salt.mup.setup import check_widths

    fixed = {"hidden_layers": [32]}  # a feed-forward width that does not follow embed_dim
    base = tiny_model(16, ffn=fixed)  # type: ignore[arg-type]
    infshapes = mup.shape.zip_infshapes(base, tiny_model(8, ffn=fixed))  # type: ignore[arg-type]
    message = r"'encoder\.layers\.0\.ffn\.net\.0'.*fixed size \(32\).*hidden_layers unset"
    with pytest.raises(ValueError, match=message):
        check_widths(base, infshapes)
    check_widths(tiny_model(16), mup.shape.zip_infshapes(tiny_model(16), tiny_model(8)))
    same = mup.shape.zip_infshapes(tiny_model(16, heads=2), tiny_model(16, heads=4))
    with pytest.raises(ValueError, match="no parameter changes shape"):
        check_widths(tiny_model(16), same)


def test_set_base_shapes_errors(shapes: dict, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="setup_muP"):
        set_base_shapes(tiny_model(16), {**shapes, "shape_path": str(tmp_path / "none")})
    with pytest.raises(ValueError, match="does not fit the base shapes"):
        set_base_shapes(tiny_model(32, num_layers=3), shapes)
    with pytest.raises(ValueError, match="no layer is in muP mode"):
        set_base_shapes(tiny_model(32, muP=False), shapes)
    assert reset_mup_parameters(tiny_model(16, muP=False)) == 0


# ----------------------------------------------------------------------- coordinate check


def test_coord_check_mup_is_flat_and_writes_plot_and_table(tmp_path: Path) -> None:
    base_shapes = mup.make_base_shapes(tiny_model(16), tiny_model(8))

    def make(width: int, parametrisation: str) -> tuple[nn.Module, torch.optim.Optimizer]:
        model = tiny_model(width, muP=parametrisation == "muP")
        optimizer = torch.optim.AdamW(parameter_groups(model, 0.0), lr=5e-2)
        if parametrisation == "muP":
            mup.set_base_shapes(model, base_shapes)
            reset_mup_parameters(model)
            optimizer = mup_optimizer(optimizer)
        return model, optimizer

    widths = [16, 32, 64]
    records = coord_check(make, tiny_batches(5), tiny_loss, widths)
    assert {r.width for r in records} == set(widths) and max(r.step for r in records) == 5
    # the readout (and the residual stream) of muP barely move with the width ...
    assert spread(records, "muP", READOUT) < 2.0
    assert spread(records, "muP", "encoder.layers.1") < 2.0
    # ... while the standard parametrisation's hidden activations grow with it
    # (seeds 0-4 give muP spreads 1.2-2.0, SP 3.4-5.4 on the residual stream)
    assert spread(records, "SP", "encoder.layers.1") > 2.5
    assert spread(records, "SP", "encoder.layers.1") > 1.5 * spread(
        records, "muP", "encoder.layers.1"
    )

    paths = write_outputs(records, tmp_path / "check")
    csv_path, md_path, png_path = paths
    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(records)
    assert {row["parametrisation"] for row in rows} == {"muP", "SP"}
    table = md_path.read_text()
    assert "## muP, step 5" in table and "| encoder.out_proj |" in table
    assert "width 64" in table
    assert png_path.read_bytes()[:4] == b"\x89PNG" and png_path.stat().st_size > 10_000


# ------------------------------------------------------------------- through the configs


def data_args(demo: Path) -> list[str]:
    return [
        f"--data.train_file={demo / 'train.h5'}",
        f"--data.val_file={demo / 'val.h5'}",
        f"--data.test_file={demo / 'test.h5'}",
        f"--data.norm_dict={demo / 'norm_dict.yaml'}",
        f"--data.class_dict={demo / 'class_dict.yaml'}",
    ]


def test_setup_mup_writes_shapes_and_checks_from_another_directory(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from salt.mup.cli import setup_mup_main

    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    configs = ["-c", os.path.relpath(GN2, work), "--config", os.path.relpath(GN2_MUP, work)]
    small = ["--data.num_train=400", "--data.batch_size=100", *data_args(demo_dir)]
    assert setup_mup_main([*configs, *small]) == 0
    out = work / "temp_muP"  # shape_path is relative to the working directory
    shapes = yaml.safe_load((out / "storeshapes").read_text())
    assert shapes["encoder.layers.0.attn.q_proj.weight"] == [64, 64]
    assert shapes["encoder.out_proj.weight"] == [None, 64]
    assert shapes["tasks.0.net.net.0.weight"] == [None, None]
    for name, width in (("base", 64), ("delta", 32)):
        config = yaml.safe_load((out / f"{name}_config.yaml").read_text())
        net = config["model"]["model"]["init_args"]
        assert net["encoder"]["init_args"]["embed_dim"] == width
        assert net["init_nets"][0]["init_args"]["dense_config"]["output_size"] == width
        assert config["model"]["muP_config"]["embed_dim"]["parameter_base"] == 64
        state = torch.load(out / f"{name}_model.pt", weights_only=True)
        assert state["encoder.layers.0.attn.q_proj.weight"].shape == (width, width)
    # no silent overwrite
    before = (out / "storeshapes").stat().st_mtime_ns
    assert setup_mup_main([*configs, *small]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "storeshapes").stat().st_mtime_ns == before

    # coordinate check on the config's training data (tiny widths, one parametrisation)
    check = ["--check", "--widths", "16", "32", "--steps", "2", "--parametrisations", "muP"]
    assert setup_mup_main([*configs, *small, *check]) == 0
    table = (out / "coord_check.md").read_text()
    assert "width 16" in table and "| encoder.out_proj |" in table
    assert (out / "coord_check.png").stat().st_size > 10_000
    # a width that the heads do not divide: one line naming it
    bad = ["--check", "--widths", "18", "--steps", "1", "--overwrite"]
    assert setup_mup_main([*configs, *small, *bad]) == 2
    assert "--widths 18" in capsys.readouterr().err


def test_setup_mup_rejects_missing_config(tmp_path: Path, monkeypatch, capsys) -> None:
    from salt.mup.cli import setup_mup_main

    monkeypatch.chdir(tmp_path)
    assert setup_mup_main(["-c", "nope.yaml"]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    assert setup_mup_main(["-c", str(GN2)]) == 2  # no muP_config in GN2.yaml
    assert "model.muP_config: missing" in capsys.readouterr().err


def test_fit_with_mup(demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from salt.cli.main import main
    from salt.mup.cli import setup_mup_main

    monkeypatch.chdir(tmp_path)
    configs = ["--config", str(GN2), "--config", str(GN2_MUP)]
    assert setup_mup_main([*configs, *data_args(demo_dir)]) == 0
    root = tmp_path / "logs"
    args = [
        "fit",
        *configs,
        *data_args(demo_dir),
        "--data.batch_size=200",
        "--data.num_workers=0",
        "--data.num_train=600",
        "--data.num_val=200",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}",
        "--log_suffix=mup",
    ]
    assert main(args) == 0
    run = root / "GN2_muP_mup"
    assert (run / "muP" / "storeshapes").is_file()  # the run carries its base shapes
    saved = yaml.safe_load((run / "config.yaml").read_text())["model"]["muP_config"]
    assert Path(saved["shape_path"]) == (run / "muP").resolve()
    with (run / "metrics.csv").open() as handle:
        losses = [float(row["val/loss"]) for row in csv.DictReader(handle) if row["val/loss"]]
    assert losses and all(math.isfinite(loss) for loss in losses)
    ckpt = torch.load(next((run / "ckpts").glob("epoch=*.ckpt")), weights_only=False)
    readout = ckpt["state_dict"]["model.encoder.out_proj.weight"]
    assert readout.shape == (64, 64) and torch.isfinite(readout).all()
    # salt test needs only the run directory, from anywhere (temp_muP may be gone)
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    (tmp_path / "temp_muP" / "storeshapes").unlink()
    test = ["test", "--config", str(run / "config.yaml"), "--trainer.enable_progress_bar=false"]
    assert main([*test, "--data.num_test=200", "--evaluation.run_evaluation=false"]) == 0
    assert len(list((run / "ckpts").glob("*__test_test.h5"))) == 1
