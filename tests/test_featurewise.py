"""Feature-wise conditioning (salt-ml's featurewise_nets): numbers, places, sizes, errors, CLI."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch
import yaml

from salt.cli.main import main
from salt.compat.rewrite import translate_config
from salt.models import ClassificationTask, GlobalAttentionPooling, InitNet, SaltModel
from salt.models.featurewise import FeaturewiseNets, FeaturewiseTransformation
from salt.models.transformer import TransformerEncoder

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "salt_ml"


def test_scale_and_shift_per_jet_and_feature():
    torch.manual_seed(0)
    net = FeaturewiseTransformation(2, 3, {}, {})  # single Linear layers: c -> 3
    c = torch.randn(4, 2)
    x = torch.randn(4, 5, 3)
    scale = c @ net.scale_net.net[0].weight.T + net.scale_net.net[0].bias
    shift = c @ net.bias_net.net[0].weight.T + net.bias_net.net[0].bias
    torch.testing.assert_close(net(x, c), x * scale[:, None] + shift[:, None])
    # packed rows (N, F) with the jet of each row give the same numbers
    jet = torch.tensor([0, 0, 2, 3, 3])
    rows = x[jet, torch.arange(5)]
    s, b = net.modulation(c)
    torch.testing.assert_close(net.modulate(rows, s, b, jet), net(x, c)[jet, torch.arange(5)])
    only_shift = FeaturewiseTransformation(2, 3, None, {"hidden_layers": [4]}, apply_norm=True)
    assert only_shift.scale_net is None and only_shift.norm is not None
    out = only_shift(x, c)
    torch.testing.assert_close(out.mean(-1), torch.zeros(4, 5), atol=1e-5, rtol=0)


def model(featurewise: list[dict], packed: bool = True, params_in_init: int = 0) -> SaltModel:
    torch.manual_seed(1)
    init = InitNet("tracks", {"input_size": 3 + 2 + params_in_init, "output_size": 8})
    encoder = TransformerEncoder(
        8, 2, mha_config={"num_heads": 2}, out_dim=6, num_registers=1, packed=packed
    )
    task = ClassificationTask(
        "jets_classification", "jets", "flavour_label", {"input_size": 6}, class_names=["a", "b"]
    )
    return SaltModel(
        [init],
        [task],
        GlobalAttentionPooling(6),
        encoder,
        num_parameters=1,
        featurewise_nets=featurewise,  # type: ignore[arg-type]
    )


def batch(mass: float) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(2)
    inputs = {
        "tracks": torch.randn(3, 5, 3, generator=gen),
        "jets": torch.randn(3, 2, generator=gen),
        "PARAMETERS": torch.full((3, 1), mass),
    }
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0, 2:] = True
    mask[1, 4:] = True
    return inputs, {"tracks": mask}


ALL_PLACES = [
    {"layer": "input", "dense_config_scale": {"hidden_layers": [4]}, "dense_config_bias": {}},
    {"layer": "encoder", "apply_norm": True, "dense_config_bias": {"hidden_layers": [4]}},
    {"layer": "global", "dense_config_scale": {"final_activation": "Sigmoid"}},
]


@pytest.mark.parametrize("place", ALL_PLACES, ids=lambda p: p["layer"])
def test_each_place_conditions_the_output_on_the_parameters(place):
    net = model([place])
    assert net.featurewise is not None
    # input: the parameters modulate instead of being appended to the init net's inputs
    assert net.featurewise.replaces_parameter_inputs == (place["layer"] == "input")
    if place["layer"] != "input":
        net = model([place], params_in_init=1)
    out_a, _ = net(*batch(5.0))
    out_b, _ = net(*batch(55.0))
    assert not torch.allclose(out_a["jets_classification"], out_b["jets_classification"])
    layers = net.encoder.layers  # type: ignore[union-attr]
    assert all(not layer._forward_pre_hooks for layer in layers)  # hooks only during a call


def test_encoder_layers_get_one_transformation_each_packed_or_padded():
    places = [ALL_PLACES[1], ALL_PLACES[2]]
    packed, padded = model(places, params_in_init=1), model(places, False, params_in_init=1)
    padded.load_state_dict(packed.state_dict())
    assert len(packed.featurewise.layers) == 2  # type: ignore[union-attr]
    out_packed, _ = packed(*batch(16.0))
    out_padded, _ = padded(*batch(16.0))
    torch.testing.assert_close(out_packed["jets_classification"], out_padded["jets_classification"])
    # without the transformations the encoder computes something else
    plain = model([], params_in_init=1)
    plain.load_state_dict(packed.state_dict(), strict=False)
    assert not torch.allclose(
        plain(*batch(16.0))[0]["jets_classification"], out_packed["jets_classification"]
    )


@pytest.mark.parametrize(
    "configs,message",
    [
        ([{"layer": "decoder", "dense_config_scale": {}}], "layer='decoder'"),
        ([{"layer": "input"}], "dense_config_scale, dense_config_bias or both"),
        (
            [{"layer": "input", "dense_config_bias": {"output_size": 17}}],
            r"dense_config_bias.output_size=17 but the model implies 5",
        ),
        (
            [
                {"layer": "global", "dense_config_bias": {}},
                {"layer": "global", "dense_config_bias": {}},
            ],
            "a second 'global'",
        ),
    ],
)
def test_bad_configs_stop_with_one_line(configs, message):
    with pytest.raises(ValueError, match=message) as err:
        model(configs)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="layer stack"):
        FeaturewiseNets(
            [{"layer": "encoder", "dense_config_bias": {}}],
            [InitNet("t", {"input_size": 2, "output_size": 4})],
            None,
            1,
        )


def salt_ml_featurewise_config(tmp_path: Path) -> Path:
    """salt-ml's documented featurewise_nets block (sizes written out, as salt-ml needs)."""
    config = {
        "model": {
            "model": {
                "init_args": {
                    "featurewise_nets": [
                        {
                            "layer": "input",
                            "dense_config_scale": {"hidden_layers": [4], "output_size": 8},
                            "dense_config_bias": {"hidden_layers": [4], "output_size": 8},
                        },
                        {
                            "layer": "encoder",
                            "apply_norm": True,
                            "dense_config_scale": {"hidden_layers": [16], "output_size": 64},
                            "dense_config_bias": {"hidden_layers": [16], "output_size": 64},
                        },
                        {
                            "layer": "global",
                            "dense_config_scale": {
                                "hidden_layers": [16],
                                "output_size": 32,
                                "final_activation": "Sigmoid",
                                "mup": False,
                            },
                        },
                    ]
                }
            }
        }
    }
    path = tmp_path / "featurewise.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_salt_ml_featurewise_nets_are_read_and_sized(tmp_path: Path, demo_dir: Path):
    path = salt_ml_featurewise_config(tmp_path)
    translation = translate_config(yaml.safe_load(path.read_text()))
    assert any("mup" in change for change in translation.changes)
    args = [
        "fit",
        *("--config", str(FIXTURES / "GN2_registers.yaml")),
        *("--config", str(FIXTURES / "param.yaml")),
        *("--config", str(path)),
        f"--data.train_file={demo_dir / 'train.h5'}",
        f"--data.val_file={demo_dir / 'val.h5'}",
        f"--data.norm_dict={demo_dir / 'norm_dict.yaml'}",
        f"--data.class_dict={demo_dir / 'class_dict.yaml'}",
        "--print_config",
    ]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(args)
    printed = yaml.safe_load(out.getvalue())
    net = printed["model"]["model"]["init_args"]
    assert [f["condition_size"] for f in net["featurewise_nets"]] == [1, 1, 1]
    # 6 track + 2 jet variables; the parameter conditions them instead of being appended
    assert net["init_nets"][0]["init_args"]["dense_config"]["input_size"] == 8


@pytest.mark.slow
def test_salt_ml_featurewise_config_fits(tmp_path: Path, demo_dir: Path):
    path = salt_ml_featurewise_config(tmp_path)
    args = [
        "fit",
        *("--config", str(FIXTURES / "GN2_registers.yaml")),
        *("--config", str(FIXTURES / "param.yaml")),
        *("--config", str(path)),
        f"--data.train_file={demo_dir / 'train.h5'}",
        f"--data.val_file={demo_dir / 'val.h5'}",
        f"--data.norm_dict={demo_dir / 'norm_dict.yaml'}",
        f"--data.class_dict={demo_dir / 'class_dict.yaml'}",
        "--data.num_inputs={tracks: 8}",
        "--data.num_train=200",
        "--data.num_val=100",
        "--data.batch_size=100",
        "--data.num_workers=0",
        "--trainer.max_epochs=1",
        "--trainer.accelerator=cpu",
        "--trainer.precision=32",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}",
        "--log_suffix=fw",
        "-n",
        "fw",
    ]
    assert main(args) == 0
    state = torch.load(
        next((tmp_path / "fw_fw" / "ckpts").glob("epoch=*.ckpt")), weights_only=False
    )
    keys = state["state_dict"]
    assert any(".featurewise.layers.1." in k for k in keys)  # one per encoder layer
    assert any(".featurewise.inputs.tracks.scale_net" in k for k in keys)
    assert any(".featurewise.encoded.scale_net" in k for k in keys)
    # the export traces the per-layer transformations and checks parity with PyTorch
    from salt.export.cli import to_onnx_main

    ckpt = next((tmp_path / "fw_fw" / "ckpts").glob("epoch=*.ckpt"))
    assert to_onnx_main(["--ckpt_path", str(ckpt)]) == 0
    assert (tmp_path / "fw_fw" / "network.onnx").is_file()
