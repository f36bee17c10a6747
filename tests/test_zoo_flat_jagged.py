"""SeeSaw-style zoo: embeddings, flat and jagged backbones, fusion, quantiles, configs."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from torch import Tensor, nn

from salt.cli.main import main
from salt.models.zoo import (
    MLP,
    CondOnlyMLP,
    DeepSets,
    EventTransformer,
    FusionBackbone,
    JaggedTransformer,
    ResNet,
)
from salt.models.zoo.embeddings import (
    EmbeddingConfig,
    FlatEmbedding,
    JaggedEmbedding,
    MaskedBatchNorm,
    PiecewiseLinearEncoding,
)
from salt.models.zoo.fusion import FusionMode
from salt.models.zoo.quantiles import calculate_quantiles_main, load_bin_edges

ROOT = Path(__file__).resolve().parents[1]
VARS = {"jets": ["pt", "eta"], "tracks": ["d0", "z0", "hits"], "electrons": ["e0", "e1"]}
N_TRACKS = [7, 3, 0, 1, 5, 2]  # jet 2 has no constituents at all
N_ELECTRONS = [1, 0, 0, 3, 2, 1]
Batch = tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]


def make_batch(seed: int = 0, garbage: float = 0.0) -> Batch:
    """Six jets; padded slots hold ``garbage``; raw hit counts are small integers."""
    g = torch.Generator().manual_seed(seed)
    masks = {
        "tracks": torch.arange(7)[None] >= torch.tensor(N_TRACKS)[:, None],
        "electrons": torch.arange(3)[None] >= torch.tensor(N_ELECTRONS)[:, None],
    }
    raw = {
        "jets": torch.randn(6, 2, generator=g),
        "tracks": torch.randn(6, 7, 3, generator=g),
        "electrons": torch.randn(6, 3, 2, generator=g),
    }
    raw["tracks"][..., 2] = torch.randint(0, 6, (6, 7), generator=g).float()
    for name, mask in masks.items():
        raw[name] = raw[name].masked_fill(mask.unsqueeze(-1), garbage)
    inputs = {k: v.clone() for k, v in raw.items()}
    inputs["tracks"][..., 2] = (raw["tracks"][..., 2] - 2.0) / 2.0  # "normalised" hits
    return inputs, masks, raw


SMALL_EMB: EmbeddingConfig = {
    "numerical": "ple",
    "ple_bins": "uniform",
    "num_bins": 4,
    "categorical": {"hits": 6},
}
BUILDERS = {
    "MLP": lambda: MLP(VARS, out_dim=8, hidden_dim=16, num_layers=2),
    "ResNet": lambda: ResNet(VARS, out_dim=8, hidden_dim=16, num_layers=4, block_size=2),
    "EventTransformer": lambda: EventTransformer(VARS, out_dim=8, embed_dim=16, depth=2),
    "CondOnlyMLP": lambda: CondOnlyMLP(VARS, out_dim=8, hidden_dim=16, positive_output=True),
    "DeepSets": lambda: DeepSets(
        VARS,
        out_dim=8,
        embed_dim=12,
        phi_layers=[16, 16],
        rho_layers=[16],
        pooling=["mean", "sum", "max"],
        attach_global=True,
        embeddings=SMALL_EMB,
    ),
    "JaggedTransformer": lambda: JaggedTransformer(VARS, out_dim=8, embed_dim=16, num_heads=2),
    "JaggedTransformer-objects": lambda: JaggedTransformer(
        VARS,
        out_dim=8,
        embed_dim=16,
        num_heads=2,
        seed_strategy="objects",
        set_transform_events=True,
        norm="layernorm",
        embeddings={"reduction": "conv2d"},
    ),
    "JaggedTransformer-particles": lambda: JaggedTransformer(
        VARS,
        out_dim=8,
        embed_dim=16,
        num_heads=2,
        seed_strategy="particles",
        num_particles=5,
        predictor_pooling="mean",
        set_transform_events=True,
    ),
    "Fusion": lambda: FusionBackbone(
        DeepSets(VARS, out_dim=8, embed_dim=8), MLP(VARS, out_dim=4), "attn", 8, VARS
    ),
}
FLAT = {"MLP", "ResNet", "EventTransformer", "CondOnlyMLP"}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_shapes_and_all_padded_jets_are_finite(name: str):
    torch.manual_seed(0)
    model = BUILDERS[name]()
    inputs, masks, raw = make_batch(garbage=1e4)
    model.train()
    out, constituents = model(inputs, masks, raw)
    out.square().mean().backward()  # every path trains
    model.eval()
    out, constituents = model(inputs, masks, raw)
    assert out.shape == (6, 8) and torch.isfinite(out).all()
    if name not in FLAT:
        width = {"DeepSets": 12, "Fusion": 8}.get(name, 16)  # embed_dim of the jagged model
        assert set(constituents) == {"tracks", "electrons"}
        for key, seq in constituents.items():
            assert seq.shape == (6, masks[key].shape[1], width)
            assert torch.isfinite(seq).all()
            assert (seq[masks[key]] == 0).all()  # padding stays zero
    else:
        assert constituents == {}
    # a batch where every jet is empty is finite too
    empty = {k: torch.ones_like(m) for k, m in masks.items()}
    assert torch.isfinite(model(inputs, empty, raw)[0]).all()


@pytest.mark.parametrize("name", ["DeepSets", "JaggedTransformer", "JaggedTransformer-objects"])
def test_permutation_and_padding_invariance(name: str):
    torch.manual_seed(0)
    model = BUILDERS[name]().eval()
    inputs, masks, raw = make_batch(garbage=3.0)
    out, cons = model(inputs, masks, raw)
    perm = torch.tensor([4, 0, 6, 2, 1, 5, 3])
    p_inputs, p_raw = dict(inputs), dict(raw)
    p_inputs["tracks"], p_raw["tracks"] = inputs["tracks"][:, perm], raw["tracks"][:, perm]
    p_masks = {**masks, "tracks": masks["tracks"][:, perm]}
    p_out, p_cons = model(p_inputs, p_masks, p_raw)
    torch.testing.assert_close(p_out, out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(p_cons["tracks"], cons["tracks"][:, perm], atol=1e-5, rtol=1e-5)
    # four more padded tracks holding large values change nothing
    junk = torch.full((6, 4, 3), 1e3)
    x_inputs = {**inputs, "tracks": torch.cat([inputs["tracks"], junk], 1)}
    x_raw = {**raw, "tracks": torch.cat([raw["tracks"], junk], 1)}
    x_masks = {
        **masks,
        "tracks": torch.cat([masks["tracks"], torch.ones(6, 4, dtype=torch.bool)], 1),
    }
    x_out, x_cons = model(x_inputs, x_masks, x_raw)
    torch.testing.assert_close(x_out, out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x_cons["tracks"][:, :7], cons["tracks"], atol=1e-5, rtol=1e-5)
    assert (x_cons["tracks"][:, 7:] == 0).all()


def test_ple_matches_hand_computation():
    # bins [0, 1) and [1, 3]: inside, below (first bin extrapolates) and above (last bin does)
    ple = PiecewiseLinearEncoding([[0.0, 1.0, 3.0], [10.0, 20.0]])
    x = torch.tensor([[2.0, 15.0], [-1.0, 5.0], [5.0, 30.0], [0.5, 20.0]])
    expected = torch.tensor(
        [
            [[1.0, 0.5], [0.5, 0.0]],
            [[-1.0, 0.0], [-0.5, 0.0]],
            [[1.0, 2.0], [2.0, 0.0]],  # second feature has one bin: its 2nd component is unused
            [[0.5, 0.0], [1.0, 0.0]],
        ]
    )
    torch.testing.assert_close(ple(x), expected)
    learnable = PiecewiseLinearEncoding([[0.0, 1.0, 3.0], [10.0, 20.0]], learnable=True)
    torch.testing.assert_close(learnable(x), expected)  # starts at the given edges
    learnable(x).sum().backward()
    assert learnable.raw_width.grad is not None and learnable.raw_width.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="strictly increasing"):
        PiecewiseLinearEncoding([[0.0, 0.0, 1.0]])


FEATURES = [("jets", "pt"), ("jets", "eta"), ("jets", "hits")]


@pytest.mark.parametrize("numerical", ["linear", "featurewise", "ple"])
@pytest.mark.parametrize(
    ("reduction", "shape"),
    [("mean", (5, 4)), ("reshape", (5, 12)), ("conv1d", (5, 4)), ("none", (5, 3, 4))],
)
def test_flat_embedding_modes(numerical: str, reduction: str, shape: tuple[int, ...]):
    config = {"numerical": numerical, "reduction": reduction, "ple_bins": "uniform"}
    if numerical == "linear" and reduction == "mean":
        with pytest.raises(ValueError, match="only sees the mean"):
            FlatEmbedding(FEATURES, 4, config)  # type: ignore[arg-type]
        return
    emb = FlatEmbedding(FEATURES, 4, config)  # type: ignore[arg-type]
    x = torch.randn(5, 3)
    out = emb(x, x)
    assert out.shape == shape and emb.output_size == shape[-1]


@pytest.mark.parametrize(("reduction", "embed_dim"), [("mean", 6), ("reshape", 6), ("conv2d", 8)])
@pytest.mark.parametrize(
    "post",
    [None, {"act": "GELU", "layernorm": True, "dropout": 0.1}, {"batchnorm": True, "act": "ReLU"}],
)
def test_jagged_embedding_modes(reduction: str, embed_dim: int, post: dict | None):
    config = {"reduction": reduction, "embed_dim": embed_dim, "post_embeddings": post}
    emb = JaggedEmbedding(FEATURES, 8, config)  # type: ignore[arg-type]
    x = torch.randn(5, 7, 3)
    mask = torch.arange(7)[None] >= torch.tensor([7, 3, 0, 1, 5])[:, None]
    out = emb(x, x, mask)
    assert out.shape == (5, 7, 8) and (out[mask] == 0).all() and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="conv2d"):
        JaggedEmbedding(FEATURES, 8, {"reduction": "conv1d"})


def test_categorical_uses_raw_values_and_disable_passes_through():
    config = {"categorical": {"hits": 4}, "reduction": "none"}
    emb = FlatEmbedding(FEATURES, 4, config)  # type: ignore[arg-type]
    x = torch.zeros(3, 3)
    raw = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0], [0.0, 0.0, 9.0]])  # 9 clips to 3
    tokens = emb(x, raw)
    assert emb.tokens.categorical is not None
    torch.testing.assert_close(tokens[:, 2], emb.tokens.categorical.weight[[1, 2, 3]])
    plain = FlatEmbedding(FEATURES, 4, None, disable=True)
    assert plain.output_size == 3 and plain(raw, raw) is raw
    with pytest.raises(ValueError, match=r"not in data\.variables"):
        MLP(VARS, embeddings={"categorical": {"hitz": 4}})


def test_masked_batchnorm_ignores_padding():
    bn = MaskedBatchNorm(2, momentum=1.0)
    x = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [1e6, -1e6]]])
    mask = torch.tensor([[False, False, True]])
    out = bn(x, mask)
    torch.testing.assert_close(bn.running_mean, torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(
        out[0, :2], torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), atol=1e-4, rtol=0
    )
    assert (out[0, 2] == 0).all()


@pytest.mark.parametrize("mode", ["add", "cat", "learn", "gate", "attn"])
def test_fusion_modes(mode: FusionMode):
    torch.manual_seed(0)
    fusion = FusionBackbone(
        DeepSets(VARS, out_dim=6, embed_dim=8), MLP(VARS, out_dim=4), mode, 12, VARS
    )
    inputs, masks, raw = make_batch()
    out, cons = fusion(inputs, masks, raw)
    assert out.shape == (6, 12) and set(cons) == {"tracks", "electrons"}
    if mode in ("learn", "gate"):
        param = fusion.alpha if mode == "learn" else fusion.gate.weight  # type: ignore[union-attr]
        assert param is not None and param.requires_grad
        before = param.detach().clone()
        optimiser = torch.optim.SGD(fusion.parameters(), lr=0.5)
        out.sum().backward()
        assert param.grad is not None and param.grad.abs().sum() > 0
        optimiser.step()
        assert not torch.equal(param.detach(), before)


def _parse(config: dict) -> nn.Module:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--backbone", type=nn.Module)
    cfg = parser.parse_object({"backbone": config})
    return parser.instantiate(cfg).backbone


def test_jsonargparse_builds_every_backbone():
    emb = {
        "embed_dim": 4,
        "numerical": "ple",
        "ple_bins": "learnable",
        "num_bins": 3,
        "ple_range": [-2.0, 2.0],
        "categorical": {"hits": 6},
        "reduction": "mean",
        "post_embeddings": {"act": "SiLU", "layernorm": True, "dropout": 0.0},
    }
    for cls in (MLP, ResNet, CondOnlyMLP, DeepSets, JaggedTransformer, EventTransformer):
        args = {"variables": VARS, "out_dim": 5, "embeddings": emb}
        if cls is EventTransformer:
            args["embeddings"] = {**emb, "reduction": "none"}
        model = _parse({"class_path": f"salt.models.zoo.{cls.__name__}", "init_args": args})
        assert type(model) is cls and model.output_size == 5
        assert model(*make_batch())[0].shape == (6, 5)
    fusion = _parse(
        {
            "class_path": "salt.models.zoo.FusionBackbone",
            "init_args": {
                "variables": VARS,
                "mode": "gate",
                "out_dim": 7,
                "jagged": {"class_path": "salt.models.zoo.JaggedTransformer",
                           "init_args": {"embed_dim": 8, "num_heads": 2}},
                "flat": {"class_path": "salt.models.zoo.EventTransformer",
                         "init_args": {"embed_dim": 8, "num_heads": 2}},
            },
        }
    )  # fmt: skip
    assert isinstance(fusion.jagged, JaggedTransformer) and fusion.jagged.inputs.input_names == [
        "tracks",
        "electrons",
    ]
    assert fusion(*make_batch())[0].shape == (6, 7)
    with pytest.raises(ValueError, match="variables: not set"):
        DeepSets()
    with pytest.raises(ValueError, match="num_particles"):
        JaggedTransformer(VARS, seed_strategy="particles")


@pytest.mark.parametrize("name", ["MLP", "DeepSets", "JaggedTransformer", "Fusion"])
def test_a_few_steps_reduce_the_loss(name: str):
    torch.manual_seed(1)
    model = BUILDERS[name]()
    head = nn.Linear(8, 1)
    inputs, masks, raw = make_batch(seed=3)
    # learnable from both views: sign of the jet pT plus the summed track d0
    valid = (~masks["tracks"]).float()
    target = ((inputs["jets"][:, 0] + (inputs["tracks"][..., 0] * valid).sum(1)) > 0).float()
    params = [*model.parameters(), *head.parameters()]
    optimiser = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(25):
        logits = head(model(inputs, masks, raw)[0]).squeeze(-1)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


class _Exportable(nn.Module):
    """Flat tensor arguments for the ONNX exporter."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, jets: Tensor, tracks: Tensor, track_mask: Tensor) -> Tensor:
        inputs = {"jets": jets, "tracks": tracks}
        return self.backbone(inputs, {"tracks": track_mask}, inputs)[0]


ONNX_VARS = {"jets": ["pt", "eta"], "tracks": ["d0", "z0", "hits"]}


@pytest.mark.parametrize(
    "build",
    [
        lambda: DeepSets(ONNX_VARS, out_dim=8, embed_dim=8, phi_layers=[8], rho_layers=[8],
                         pooling=["mean", "max"], attach_global=True, embeddings=SMALL_EMB),
        lambda: JaggedTransformer(ONNX_VARS, out_dim=8, embed_dim=8, num_heads=2,
                                  attach_global=True),
        lambda: MLP(ONNX_VARS, out_dim=8, hidden_dim=8, batchnorm=True,
                    embeddings={"numerical": "ple", "ple_bins": "uniform", "reduction": "reshape"}),
    ],
    ids=["DeepSets", "JaggedTransformer", "MLP"],
)  # fmt: skip
def test_onnx_export_parity(build, tmp_path: Path):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = _Exportable(build()).eval()
    inputs, masks, _ = make_batch()
    args = (inputs["jets"], inputs["tracks"], masks["tracks"])
    path = tmp_path / "model.onnx"
    torch.onnx.export(
        model,
        args,
        str(path),
        dynamo=False,
        input_names=["jets", "tracks", "track_mask"],
        output_names=["out"],
        dynamic_axes={
            "jets": {0: "batch"},
            "tracks": {0: "batch", 1: "length"},
            "track_mask": {0: "batch", 1: "length"},
            "out": {0: "batch"},
        },
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(5)  # another batch size and length than the export's
    jets, tracks = torch.randn(3, 2, generator=g), torch.randn(3, 11, 3, generator=g)
    tracks[..., 2] = tracks[..., 2].abs().round()
    mask = torch.arange(11)[None] >= torch.tensor([11, 0, 4])[:, None]
    tracks = tracks.masked_fill(mask.unsqueeze(-1), 0.0)
    feed = {"jets": jets.numpy(), "tracks": tracks.numpy(), "track_mask": mask.numpy()}
    names = {i.name for i in session.get_inputs()}  # the MLP never reads the tracks
    (got,) = session.run(None, {k: v for k, v in feed.items() if k in names})
    with torch.no_grad():
        expected = model(jets, tracks, mask).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_calculate_quantiles_gives_numpy_quantiles(tiny_files, tmp_path: Path, capsys):
    base = tmp_path / "base.yaml"
    base.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "train_file": str(tiny_files["train_a"]),
                    "norm_dict": str(tiny_files["norm"]),
                    "variables": {"jets": ["pt", "eta", "mass"], "tracks": ["d0"]},
                }
            }
        )
    )
    override = tmp_path / "override.yaml"  # merged after base: replaces data.variables
    override.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "variables": {"jets": ["pt"], "tracks": ["d0", "z0SinTheta"]},
                    "num_inputs": {"tracks": 4},
                }
            }
        )
    )
    out = tmp_path / "bins.yaml"
    argv = ["--config", str(base), "--config", str(override), "--bins", "5", "--out", str(out)]
    assert calculate_quantiles_main([*argv, "--num_jets", "200"]) == 0
    content = yaml.safe_load(out.read_text())
    with h5py.File(tiny_files["train_a"]) as h5:
        tracks = h5["tracks"][:200, :4]
        pt = h5["jets"]["pt"][:200]
    d0 = tracks["d0"][tracks["valid"]].astype(np.float64)
    expected = np.unique(np.quantile(d0, np.linspace(0, 1, 6)))
    np.testing.assert_allclose(content["raw_edges"]["tracks"]["d0"], expected)
    np.testing.assert_allclose(content["edges"]["tracks"]["d0"], (expected - 1.0) / 2.0)
    np.testing.assert_allclose(
        content["raw_edges"]["jets"]["pt"], np.quantile(pt.astype(np.float64), np.linspace(0, 1, 6))
    )
    assert content["raw_edges"]["tracks"]["z0SinTheta"] == [2.0]  # constant: one edge
    assert set(content["edges"]["jets"]) == {"pt"} and content["normalised"] is True
    # the PLE reads them (a constant variable gets one bin around its value)
    table = load_bin_edges(out)
    emb = JaggedEmbedding(
        [("tracks", "d0"), ("tracks", "z0SinTheta")], 4, {"numerical": "ple", "bins_path": str(out)}
    )
    assert emb.tokens.ple is not None and emb.tokens.ple.num_bins == len(table["tracks"]["d0"]) - 1
    # never overwrite without --force; NPZ output holds the same edges
    assert calculate_quantiles_main(argv) == 2
    assert "--force" in capsys.readouterr().err
    npz = tmp_path / "bins.npz"
    assert calculate_quantiles_main([*argv[:-1], str(npz), "--num_jets", "200"]) == 0
    np.testing.assert_allclose(load_bin_edges(npz)["tracks"]["d0"], table["tracks"]["d0"])


@pytest.mark.parametrize("name", ["MLP", "FTTransformer", "CondOnlyMLP"])
def test_config_fragments_replace_the_gn2_network(name: str, capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(ROOT / "configs" / "GN2.yaml"),
              "--config", str(ROOT / "configs" / f"{name}.yaml"), "--print_config"])  # fmt: skip
    assert info.value.code == 0
    model = yaml.safe_load(capsys.readouterr().out)["model"]["model"]["init_args"]
    assert model["init_nets"] == [] and model["encoder"] is None and model["pool_net"] is None
    backbone = model["backbone"]
    assert backbone["init_args"]["variables"]["jets"] == ["pt_btagJes", "eta_btagJes"]
    out_dim = backbone["init_args"]["out_dim"]
    assert model["tasks"][0]["init_args"]["dense_config"]["input_size"] == out_dim
    built = _parse(backbone)  # the printed config builds
    assert built(*_demo_like_batch())[0].shape == (4, out_dim)


def _demo_like_batch() -> Batch:
    tracks = torch.randn(4, 5, 19)
    inputs = {"jets": torch.randn(4, 2), "tracks": tracks}
    return inputs, {"tracks": torch.zeros(4, 5, dtype=torch.bool)}, inputs


SMALL = {
    "DeepSets": {"embed_dim": 16, "out_dim": 16, "phi_layers": [16], "rho_layers": [16]},
    "SetTransformer": {"embed_dim": 16, "out_dim": 16, "num_heads": 2, "encoder_depth": 1},
    "Fusion": {
        "out_dim": 16,
        "jagged": {"init_args": {"embed_dim": 16, "out_dim": 16, "phi_layers": [16]}},
        "flat": {"init_args": {"hidden_dim": 16, "out_dim": 8}},
    },
}


@pytest.mark.parametrize("name", list(SMALL))
def test_fit_and_test_end_to_end(name: str, demo_dir: Path, tmp_path: Path):
    small = tmp_path / "small.yaml"
    small.write_text(
        yaml.safe_dump(
            {"model": {"model": {"init_args": {"backbone": {"init_args": SMALL[name]}}}}}
        )
    )
    args = [
        "fit",
        *("--config", str(ROOT / "configs" / "GN2.yaml")),
        *("--config", str(ROOT / "configs" / f"{name}.yaml")),
        *("--config", str(small)),
        f"--data.train_file={demo_dir / 'train.h5'}",
        f"--data.val_file={demo_dir / 'val.h5'}",
        f"--data.test_file={demo_dir / 'test.h5'}",
        f"--data.norm_dict={demo_dir / 'norm_dict.yaml'}",
        f"--data.class_dict={demo_dir / 'class_dict.yaml'}",
        "--data.num_train=500",
        "--data.num_val=200",
        "--data.batch_size=100",
        "--data.num_workers=0",
        "--data.num_inputs.tracks=10",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}",
        "--log_suffix=zoo",
        "-n",
        "tiny",
    ]
    assert main(args) == 0
    run = tmp_path / "tiny_zoo"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["model"]["init_args"]["backbone"]["init_args"]["out_dim"] == 16
    test = ["test", "--config", str(run / "config.yaml"), "--data.num_test=200"]
    assert (
        main([*test, "--trainer.enable_progress_bar=false", "--evaluation.run_evaluation=false"])
        == 0
    )
    (preds,) = (run / "ckpts").glob("*__test_test.h5")
    with h5py.File(preds) as h5:
        jets = h5["jets"][:]
    probs = np.stack([jets[f"tiny_p{x}"] for x in ("b", "c", "u", "tau")], axis=1)
    assert len(jets) == 200 and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
