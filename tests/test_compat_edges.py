"""salt-ml's edge syntax: pair embeddings read (and updated) in every layer, and its config form
(data.edge_constructors, edge_init_nets, edge_embed_dim, update_edges) read as salt's."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch
import yaml

from salt.cli.main import main
from salt.compat.rewrite import translate_config
from salt.models.edge_updates import EdgeAttention, EdgeTransformerEncoder
from salt.models.registers import Transformer

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "salt_ml"


def test_edge_attention_against_a_hand_computation():
    torch.manual_seed(0)
    attn = EdgeAttention(embed_dim=4, edge_dim=3, num_heads=2)
    x, edges = torch.randn(1, 3, 4), torch.randn(1, 3, 3, 3)
    mask = torch.tensor([[False, False, True]])
    out, scores = attn(x, edges, mask)
    q, k, v = attn.qkv(x)[0].chunk(3, dim=-1)
    heads = []
    for h in range(2):
        cols = slice(2 * h, 2 * h + 2)
        s = q[:, cols] @ k[:, cols].T / 2**0.5 + attn.edge_bias(edges)[0, :, :, h]
        torch.testing.assert_close(scores[0, :, :, h], s)
        w = s[:, :2].softmax(-1) * torch.sigmoid(attn.edge_gate(edges)[0, :, :2, h])
        heads.append(w @ v[:2, cols])  # the padded key gets no weight
    torch.testing.assert_close(out[0], attn.out(torch.cat(heads, dim=-1)))


def inputs(noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 8, generator=gen)
    edges = torch.randn(2, 4, 5, 5, generator=gen)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 3:] = True
    pairs = mask.unsqueeze(-1) | mask.unsqueeze(-2)
    edges = edges.masked_fill(pairs.unsqueeze(1), 0.0)
    x = x + noise * mask.unsqueeze(-1)  # only padding changes
    return x, mask, edges


@pytest.mark.parametrize("update", [False, True])
def test_encoder_ignores_padding_and_carries_registers(update: bool):
    torch.manual_seed(0)
    enc = EdgeTransformerEncoder(
        8, 2, edge_dim=4, num_heads=2, out_dim=6, update_edges=update, num_registers=2
    )
    x, mask, edges = inputs()
    out = enc(x, mask, edges)
    assert out.shape == (2, 7, 6)
    assert torch.all(out[0, 3:5] == 0) and torch.isfinite(out).all()
    noisy, _, _ = inputs(noise=100.0)
    torch.testing.assert_close(enc(noisy, mask, edges), out)
    with pytest.raises(ValueError, match="edge_dim=4"):
        enc(x, mask, edges[:, :3])


def test_updated_edges_reach_the_next_layer():
    torch.manual_seed(0)
    enc = EdgeTransformerEncoder(8, 2, edge_dim=4, num_heads=2, update_edges=True)
    x, mask, edges = inputs()
    out = enc(x, mask, edges)
    out.sum().backward()
    first_update = enc.layers[0].edge_update
    assert first_update is not None
    # the first layer's edge update only matters through the second layer's attention
    assert first_update[0].weight.grad is not None
    assert first_update[0].weight.grad.abs().sum() > 0
    frozen = EdgeTransformerEncoder(8, 2, edge_dim=4, num_heads=2, update_edges=False)
    frozen.load_state_dict(enc.state_dict(), strict=False)
    assert not torch.allclose(frozen(x, mask, edges), out)


def test_salt_ml_transformer_builds_the_edge_encoder():
    enc = Transformer(
        num_layers=2,
        embed_dim=8,
        edge_embed_dim=4,
        update_edges=True,
        attn_kwargs={"num_heads": 2},
        num_registers=1,
    )
    assert isinstance(enc.encoder, EdgeTransformerEncoder)
    x, mask, edges = inputs()
    assert enc(x, mask, edges).shape == (2, 6, 8)
    with pytest.raises(ValueError, match="update_edges=True needs edge_embed_dim"):
        Transformer(num_layers=1, embed_dim=8, update_edges=True)


def salt_ml_edges() -> dict:
    """salt-ml's edge form on top of GN2_registers.yaml (track pt, eta, phi as inputs)."""
    return {
        "model": {
            "model": {
                "init_args": {
                    "edge_init_nets": [
                        {
                            "input_name": "tracks",
                            "dense_config": {
                                "output_size": 8,
                                "hidden_layers": [16],
                                "activation": "ReLU",
                            },
                        }
                    ],
                    "encoder": {
                        "class_path": "salt.models.TransformerV2",
                        "init_args": {"edge_embed_dim": 8, "update_edges": True},
                    },
                }
            }
        },
        "data": {
            "variables": {
                "jets": ["pt_btagJes", "eta_btagJes"],
                "tracks": [
                    "d0",
                    "z0SinTheta",
                    "dphi",
                    "deta",
                    "qOverP",
                    "numberOfPixelHits",
                    "pt",
                    "eta",
                    "phi",
                ],
            },
            "edge_constructors": [
                {"input_name": "tracks", "edge_features": ["dR", "kt", "z", "isSelfLoop"]}
            ],
        },
    }


def test_translation_to_edge_features():
    out = translate_config(salt_ml_edges(), "edges.yaml")
    net = out.config["model"]["model"]["init_args"]
    assert "edge_init_nets" not in net and "edge_constructors" not in out.config["data"]
    assert net["edge_features"] == {
        "class_path": "salt.models.EdgeFeatures",
        "init_args": {
            "features": ["dR", "kt", "z", "isSelfLoop"],
            "input_name": "tracks",
            "num_heads": 8,
            "hidden_layers": [16],
            "activation": "ReLU",
        },
    }
    wrong = salt_ml_edges()
    wrong["model"]["model"]["init_args"]["edge_init_nets"][0]["dense_config"]["output_size"] = 4
    with pytest.raises(ValueError, match="output_size is 4 but the encoder's edge_embed_dim is 8"):
        translate_config(wrong, "edges.yaml")
    lone = salt_ml_edges()
    del lone["data"]["edge_constructors"], lone["model"]["model"]["init_args"]["edge_init_nets"]
    with pytest.raises(ValueError, match="edge_embed_dim needs pair features"):
        translate_config(lone, "edges.yaml")


def fit_args(demo: Path, root: Path, config: Path) -> list[str]:
    return [
        "fit",
        *("--config", str(FIXTURES / "GN2_registers.yaml")),
        *("--config", str(config)),
        f"--data.train_file={demo / 'train.h5'}",
        f"--data.val_file={demo / 'val.h5'}",
        f"--data.norm_dict={demo / 'norm_dict.yaml'}",
        f"--data.class_dict={demo / 'class_dict.yaml'}",
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
        "--log_suffix=edges",
        "-n",
        "ml",
    ]


def test_print_config_of_salt_ml_edges(demo_dir: Path, tmp_path: Path):
    config = tmp_path / "edges.yaml"
    config.write_text(yaml.safe_dump(salt_ml_edges()))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*fit_args(demo_dir, tmp_path, config), "--print_config"])
    net = yaml.safe_load(out.getvalue())["model"]["model"]["init_args"]
    assert net["edge_features"]["init_args"]["variables"][-3:] == ["pt", "eta", "phi"]
    assert net["encoder"]["init_args"]["edge_embed_dim"] == 8


@pytest.mark.slow
def test_salt_ml_edge_config_fits(demo_dir: Path, tmp_path: Path):
    config = tmp_path / "edges.yaml"
    config.write_text(yaml.safe_dump(salt_ml_edges()))
    assert main(fit_args(demo_dir, tmp_path, config)) == 0
    ckpt = next((tmp_path / "ml_edges" / "ckpts").glob("epoch=*.ckpt"))
    keys = torch.load(ckpt, weights_only=False)["state_dict"]
    assert any("encoder.encoder.layers.1.edge_update" in k for k in keys)
    from salt.export.cli import to_onnx_main  # exported with a parity check against PyTorch

    assert to_onnx_main(["--ckpt_path", str(ckpt)]) == 0
    assert (tmp_path / "ml_edges" / "network.onnx").is_file()
