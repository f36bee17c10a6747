"""The point-cloud backbones of the model zoo: ParticleTransformer, PET2, PointGlobalMixedViT."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from torch import Tensor, nn

from salt.cli.main import main
from salt.models.zoo import PET2, ParticleTransformer, PointGlobalMixedViT
from salt.models.zoo.embeddings import MaskedBatchNorm
from salt.models.zoo.part import count_parameters, part_pair_features
from salt.models.zoo.pet import PRESETS, KNNEdgeConv, PIDEmbedding, load_pretrained

ROOT = Path(__file__).resolve().parents[1]
TRACK_VARS = ["d0", "z0SinTheta", "deta", "dphi", "leptonID", "pt", "eta", "phi"]
VARIABLES = {"jets": ["pt_btagJes", "eta_btagJes"], "tracks": TRACK_VARS}
PIDS = [0, 11, -11, 13, -13]

BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "ParT": lambda **kw: ParticleTransformer(
        **{
            "variables": VARIABLES,
            "embed_dim": 16,
            "num_heads": 2,
            "num_layers": 2,
            "num_cls_layers": 1,
            "pair_hidden": [8, 8],
            "ffn_ratio": 2,
            "dropout": 0.0,
            "attn_dropout": 0.0,
            "activation_dropout": 0.0,
            "out_dim": 12,
            **kw,
        }
    ),
    "PET2": lambda **kw: PET2(
        **{
            "variables": VARIABLES,
            "base_dim": 16,
            "num_heads": 2,
            "num_layers": 2,
            "num_neighbours": 3,
            "pid_variable": "leptonID",
            "pid_values": PIDS,
            "out_dim": 12,
            **kw,
        }
    ),
    "ViT": lambda **kw: PointGlobalMixedViT(
        **{
            "variables": VARIABLES,
            "embed_dim": 16,
            "num_heads": 2,
            "num_layers": 2,
            "mlp_ratio": 2,
            "pid_variable": "leptonID",
            "pid_values": PIDS,
            "out_dim": 12,
            **kw,
        }
    ),
}
# width of the per-track outputs
CONSTITUENT_DIM = {"ParT": 16, "PET2": 12, "ViT": 16}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models here are tiny: a second OpenMP thread only adds contention on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_batch(
    batch: int = 5, length: int = 7, seed: int = 0
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """Normalised inputs, pad masks and raw inputs; jet i has i % (length + 1) valid tracks."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=gen)

    jet_eta = 2 * rand(batch, 1) - 1
    jet_phi = 6 * rand(batch, 1) - 3
    deta, dphi = 0.3 * rand(batch, length) - 0.15, 0.3 * rand(batch, length) - 0.15
    pids = torch.tensor(PIDS, dtype=torch.float32)
    raw = torch.stack(
        [
            torch.randn(batch, length, generator=gen),
            torch.randn(batch, length, generator=gen),
            deta,
            dphi,
            pids[torch.randint(0, len(PIDS), (batch, length), generator=gen)],
            1e3 + 2e4 * rand(batch, length),
            jet_eta + deta,
            jet_phi + dphi,
        ],
        dim=-1,
    )
    valid = torch.arange(length) < (torch.arange(batch) % (length + 1)).unsqueeze(-1)
    mask = ~valid
    raw = raw.masked_fill(mask.unsqueeze(-1), 0.0)
    norm = (raw - raw.mean((0, 1))) / raw.std((0, 1))
    jets = torch.randn(batch, 2, generator=gen)
    return (
        {"jets": jets, "tracks": norm.masked_fill(mask.unsqueeze(-1), 0.0)},
        {"tracks": mask},
        {"jets": jets, "tracks": raw},
    )


def run(model: nn.Module, batch: tuple) -> tuple[Tensor, Tensor]:
    pooled, constituents = model(*batch)
    return pooled, constituents["tracks"]


@pytest.fixture(params=list(BUILDERS))
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def build(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return BUILDERS[name](**kwargs)


def test_shapes_and_padding_rows(name: str):
    model = build(name).eval()
    batch = make_batch(5, 7)
    pooled, tracks = run(model, batch)
    assert pooled.shape == (5, 12)
    assert tracks.shape == (5, 7, CONSTITUENT_DIM[name])
    mask = batch[1]["tracks"]
    assert (tracks[mask] == 0).all() and (tracks[~mask] != 0).any()


def test_permutation_invariance(name: str):
    model = build(name).eval()
    batch = make_batch(6, 7, seed=1)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(3))
    inputs, masks, raw = batch
    permuted = (
        {"jets": inputs["jets"], "tracks": inputs["tracks"][:, perm]},
        {"tracks": masks["tracks"][:, perm]},
        {"jets": raw["jets"], "tracks": raw["tracks"][:, perm]},
    )
    with torch.no_grad():
        pooled, tracks = run(model, batch)
        pooled_p, tracks_p = run(model, permuted)
    torch.testing.assert_close(pooled_p, pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tracks_p, tracks[:, perm], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("garbage", [1e6, float("nan"), float("inf")])
def test_extra_padding_with_garbage_changes_nothing(name: str, garbage: float):
    model = build(name).eval()
    inputs, masks, raw = make_batch(5, 6, seed=2)
    extra = 3

    def pad(x: Tensor) -> Tensor:
        return torch.cat([x, torch.full((x.shape[0], extra, x.shape[2]), garbage)], dim=1)

    padded = (
        {"jets": inputs["jets"], "tracks": pad(inputs["tracks"])},
        {"tracks": torch.cat([masks["tracks"], torch.ones(5, extra, dtype=torch.bool)], 1)},
        {"jets": raw["jets"], "tracks": pad(raw["tracks"])},
    )
    with torch.no_grad():
        pooled, tracks = run(model, (inputs, masks, raw))
        pooled_p, tracks_p = run(model, padded)
    torch.testing.assert_close(pooled_p, pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tracks_p[:, :6], tracks, atol=1e-5, rtol=1e-5)
    assert (tracks_p[:, 6:] == 0).all()


def test_all_padded_jet_is_finite_with_finite_gradients(name: str):
    model = build(name).train()
    inputs, masks, raw = make_batch(3, 5)
    masks = {"tracks": torch.ones(3, 5, dtype=torch.bool)}  # every jet empty
    pooled, tracks = run(model, (inputs, masks, raw))
    assert torch.isfinite(pooled).all() and (tracks == 0).all()
    pooled.square().sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # a batch whose padded length is zero (ONNX exporters probe it) works too
    pooled, tracks = run(model.eval(), make_batch(3, 0))
    assert torch.isfinite(pooled).all() and tracks.shape == (3, 0, CONSTITUENT_DIM[name])


def test_jsonargparse_builds_backbone_from_class_path(name: str):
    classes = {"ParT": ParticleTransformer, "PET2": PET2, "ViT": PointGlobalMixedViT}
    cls = classes[name]
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--backbone", type=nn.Module)
    sizes = {
        "ParT": {"embed_dim": 16, "num_heads": 2, "num_layers": 1, "out_dim": 16},
        "PET2": {"preset": "small", "base_dim": 16, "num_heads": 2, "num_layers": 1},
        "ViT": {"embed_dim": 16, "num_heads": 2, "num_layers": 1, "pos_encoding": "fourier"},
    }[name]
    init_args = {"variables": VARIABLES, **sizes}
    config = parser.parse_object(
        {"backbone": {"class_path": f"{cls.__module__}.{cls.__name__}", "init_args": init_args}}
    )
    model = parser.instantiate(config).backbone
    assert isinstance(model, cls)
    assert run(model.eval(), make_batch())[0].shape[0] == 5
    bad = {"backbone": {"class_path": f"{cls.__module__}.{cls.__name__}", "init_args": {}}}
    bad["backbone"]["init_args"] = {**init_args, "num_heads": "two"}
    with pytest.raises(Exception, match="num_heads"):
        parser.parse_object(bad)


def test_a_few_steps_reduce_the_loss(name: str):
    """Tiny task: is the mean d0 of a jet's tracks positive? Learnable only through the tracks."""
    torch.manual_seed(0)
    model = build(name)
    head = nn.Linear(12, 2)
    inputs, masks, raw = make_batch(48, 6, seed=4)
    valid = (~masks["tracks"]).float()
    d0 = (raw["tracks"][..., 0] * valid).sum(1) / valid.sum(1).clamp_min(1)
    labels = (d0 > 0).long()
    params = [*model.parameters(), *head.parameters()]
    optimiser = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(25):
        loss = nn.functional.cross_entropy(head(run(model, (inputs, masks, raw))[0]), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_particle_transformer_matches_the_paper_size():
    """ParT with 17 particle and 4 pair features plus a 10-class Linear head: 2.14 M parameters.

    Counted: the backbone (particle and pair embeddings, 8 + 2 blocks, class token, final norm)
    and the head, trainable parameters only; the paper's input batch norm on the particle
    features is absent (salt normalises the inputs).
    """
    variables = {"jets": [], "tracks": [f"x{i}" for i in range(14)] + ["pt", "eta", "phi"]}
    model = ParticleTransformer(variables, attach_global=False)
    total = count_parameters(model) + count_parameters(nn.Linear(model.output_size, 10))
    assert abs(total - 2.14e6) / 2.14e6 < 0.02
    assert total == 2_143_436
    assert model.pair_embed is not None and model.pair_embed.out.out_features == 8


def test_part_massless_energy_reproduces_the_massless_pair_mass():
    gen = torch.Generator().manual_seed(0)
    pt = 1e3 + 2e4 * torch.rand(3, 5, generator=gen, dtype=torch.float64)
    eta = 2 * torch.rand(3, 5, generator=gen, dtype=torch.float64) - 1
    phi = 6 * torch.rand(3, 5, generator=gen, dtype=torch.float64) - 3
    massless = part_pair_features(pt, eta, phi)
    with_energy = part_pair_features(pt, eta, phi, energy=pt * torch.cosh(eta))
    torch.testing.assert_close(with_energy[..., :3], massless[..., :3])
    pairs = ~torch.eye(5, dtype=torch.bool)  # the diagonal is ln(eps) in both
    torch.testing.assert_close(with_energy[:, pairs, 3], massless[:, pairs, 3])
    # hand computation for one pair: ln m with m² = 2 pT1 pT2 (cosh Δη - cos Δφ)
    deta, dphi = eta[0, 0] - eta[0, 1], phi[0, 0] - phi[0, 1]
    m2 = 2 * pt[0, 0] * pt[0, 1] * (torch.cosh(deta) - torch.cos(dphi))
    torch.testing.assert_close(massless[0, 0, 1, 3], 0.5 * torch.log(m2))
    wrapped = (dphi + torch.pi) % (2 * torch.pi) - torch.pi
    dr = torch.sqrt(deta**2 + wrapped**2)
    kt = torch.minimum(pt[0, 0], pt[0, 1]) * dr
    torch.testing.assert_close(massless[0, 0, 1, 1], torch.log(kt), rtol=0, atol=1e-4)


def test_masked_batch_norm_uses_only_valid_entries():
    norm = MaskedBatchNorm(2, momentum=1.0)
    x = torch.tensor([[1.0, 10.0], [3.0, 30.0], [1e6, -1e6]])
    valid = torch.tensor([True, True, False])
    out = norm(x, ~valid)
    torch.testing.assert_close(out[:2], torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(norm.running_mean, torch.tensor([2.0, 20.0]))
    torch.testing.assert_close(norm.running_var, torch.tensor([2.0, 200.0]))  # unbiased
    norm(x, torch.ones(3, dtype=torch.bool))  # all padded: statistics unchanged
    torch.testing.assert_close(norm.running_mean, torch.tensor([2.0, 20.0]))


def test_knn_never_picks_padding_or_itself():
    coords = torch.tensor([[[0.0, 0.0], [0.1, 0.0], [0.3, 0.0], [0.05, 0.0], [0.0, 0.01]]])
    mask = torch.tensor([[False, False, False, True, True]])  # the two closest ones are padded
    index, valid = KNNEdgeConv(4, num_neighbours=3).neighbours(coords, mask)
    assert index[0, 0, :2].tolist() == [1, 2] and index[0, 1, :2].tolist() == [0, 2]
    assert valid[0, :3].tolist() == [[True, True, False]] * 3  # only two real neighbours each
    assert not valid[0, 3:].any()


def test_pid_embedding_maps_unknown_codes_to_other():
    embed = PIDEmbedding([0, 11, -11], 4)
    out = embed(torch.tensor([[11.0, -11.0, 0.0, 22.0, 13.0]]))
    torch.testing.assert_close(out[0, 0], embed.embed.weight[1])
    torch.testing.assert_close(out[0, 1], embed.embed.weight[2])
    torch.testing.assert_close(out[0, 3], embed.embed.weight[3])
    torch.testing.assert_close(out[0, 4], embed.embed.weight[3])


def test_pet2_preset_sizes():
    counts = {}
    for preset, (dim, heads, layers) in PRESETS.items():
        with torch.device("meta"):  # medium and large are only built, never run
            model = PET2(VARIABLES, preset=preset)
        assert (model.base_dim, model.num_heads, model.num_layers) == (dim, heads, layers)
        counts[preset] = count_parameters(model)
        # hand count per block: attention 4 (D² + D), two norms 4 D, MLP D -> 2D -> D
        # (4 D² + 3 D), LayerScale 2 D
        per_block = 8 * dim**2 + 13 * dim
        assert count_parameters(model.blocks) == layers * per_block
    assert counts == {"small": 1_146_984, "medium": 26_633_584, "large": 240_650_624}
    assert counts["small"] < counts["medium"] < counts["large"]
    with torch.device("meta"):
        override = PET2(VARIABLES, preset="medium", base_dim=64, num_layers=2)
    assert (override.base_dim, override.num_heads, override.num_layers) == (64, 16, 2)


def test_pet2_pretrained_state_dict_and_salt_checkpoint(tmp_path: Path, caplog):
    source = build("PET2").eval()
    batch = make_batch()
    expected = run(source, batch)[0]
    plain = tmp_path / "plain.pt"
    torch.save(source.state_dict(), plain)
    loaded = build("PET2", pretrained=str(plain)).eval()
    torch.testing.assert_close(run(loaded, batch)[0], expected)

    # a salt checkpoint of another task: backbone under model.backbone., heads and norms around
    state = {f"model.backbone.{k}": v for k, v in source.state_dict().items()}
    state["model.tasks.0.net.net.0.weight"] = torch.zeros(3, 12)
    state["normaliser.mean_tracks"] = torch.zeros(8)
    ckpt = tmp_path / "salt.ckpt"
    torch.save({"state_dict": state, "epoch": 3, "global_step": 10}, ckpt)
    with caplog.at_level(logging.WARNING):
        finetuned = build("PET2", pretrained=str(ckpt)).eval()
    warnings = [
        r
        for r in caplog.records
        if r.name.startswith("salt.models.zoo") and r.levelno >= logging.WARNING
    ]
    assert not warnings  # task heads and normalisation are skipped silently
    torch.testing.assert_close(run(finetuned, batch)[0], expected)


def test_pet2_pretrained_reports_keys_that_do_not_fit(tmp_path: Path, caplog):
    state = build("PET2").state_dict()
    state.pop("norm.weight")
    state["blocks.0.extra"] = torch.zeros(1)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    fewer = {"jets": VARIABLES["jets"], "tracks": [v for v in TRACK_VARS if v != "d0"]}
    with caplog.at_level(logging.WARNING):
        report = load_pretrained(build("PET2", variables=fewer), path, "PET2")
    assert report.missing == ["embed.net.0.weight", "norm.weight"]
    assert report.unexpected == ["blocks.0.extra"]
    assert report.mismatched == ["embed.net.0.weight"]
    warnings = caplog.text
    assert "missing" in warnings and "norm.weight" in warnings and "blocks.0.extra" in warnings

    wrong = tmp_path / "wrong.pt"
    torch.save({"encoder.layer.weight": torch.zeros(2)}, wrong)
    with pytest.raises(ValueError, match=r"PET2.pretrained .*no key matches"):
        build("PET2", pretrained=str(wrong))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build("PET2", pretrained=str(tmp_path / "absent.pt"))


@pytest.mark.parametrize(
    ("builder", "kwargs", "match"),
    [
        (ParticleTransformer, {"variables": None}, "variables: not set"),
        (ParticleTransformer, {"variables": {"tracks": ["d0"]}}, "pt_variable: variable 'pt'"),
        (PET2, {"variables": VARIABLES, "pid_values": [1]}, "without a pid_variable"),
        (PET2, {"variables": VARIABLES, "preset": "huge"}, "preset"),
        (PointGlobalMixedViT, {"variables": {"tracks": ["d0"]}}, "coord_variables"),
        (PointGlobalMixedViT, {"variables": {"tracks": VARIABLES["tracks"]}}, "event_token"),
    ],
)
def test_construction_errors_name_the_argument(builder, kwargs: dict, match: str):
    with pytest.raises(ValueError, match=match):
        builder(**kwargs)


class _Exportable(nn.Module):
    """Plain-tensor interface for ONNX: (tracks, jets, mask, raw tracks) -> (pooled, tracks)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, tracks: Tensor, jets: Tensor, mask: Tensor, raw: Tensor):
        inputs = {"jets": jets, "tracks": tracks}
        pooled, constituents = self.backbone(inputs, {"tracks": mask}, {"tracks": raw})
        return pooled, constituents["tracks"]


def test_onnx_export_parity(name: str, tmp_path: Path):
    model = _Exportable(build(name)).eval()
    inputs, masks, raw = make_batch(4, 6, seed=5)
    args = (inputs["tracks"], inputs["jets"], masks["tracks"], raw["tracks"])
    path = tmp_path / f"{name}.onnx"
    names = ["tracks", "jets", "mask", "raw"]
    dynamic = {"tracks": {0: "B", 1: "L"}, "jets": {0: "B"}, "mask": {0: "B", 1: "L"}}
    torch.onnx.export(
        model,
        args,
        str(path),
        input_names=names,
        output_names=["pooled", "constituents"],
        dynamic_axes={**dynamic, "raw": {0: "B", 1: "L"}, "pooled": {0: "B"}},
        opset_version=17,
        dynamo=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs, masks, raw = make_batch(7, 9, seed=6)  # other batch size and length than exported
    args = (inputs["tracks"], inputs["jets"], masks["tracks"], raw["tracks"])
    feed = {n: a.numpy() for n, a in zip(names, args)}
    pooled, tracks = session.run(None, feed)
    with torch.no_grad():
        expected = model(*args)
    np.testing.assert_allclose(pooled, expected[0].numpy(), atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(tracks, expected[1].numpy(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("config", "cls", "sizes"),
    [
        ("ParT", ParticleTransformer, {"embed_dim": 128, "num_layers": 8, "num_cls_layers": 2}),
        ("PET2", PET2, {"base_dim": 128, "num_heads": 8, "num_layers": 8}),
        ("ViT", PointGlobalMixedViT, {"embed_dim": 128, "output_size": 128}),
    ],
)
def test_full_size_configs_resolve_and_build(config: str, cls: type, sizes: dict, capsys):
    """The default-size fragments merge onto GN2.yaml and give a backbone salt can build."""
    configs = ["--config", str(ROOT / "configs" / "GN2.yaml")]
    configs += ["--config", str(ROOT / "configs" / f"{config}.yaml")]
    with pytest.raises(SystemExit) as info:
        main(["fit", *configs, "--print_config"])
    assert info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)["model"]["model"]["init_args"]
    assert printed["backbone"]["class_path"] == f"salt.models.zoo.{cls.__name__}"
    with torch.device("meta"):
        model = cls(**printed["backbone"]["init_args"])
    assert {key: getattr(model, key) for key in sizes} == sizes
    assert printed["tasks"][0]["init_args"]["dense_config"]["input_size"] == model.output_size


def _data_args(demo: Path) -> list[str]:
    return [
        f"--data.train_file={demo / 'train.h5'}",
        f"--data.val_file={demo / 'val.h5'}",
        f"--data.test_file={demo / 'test.h5'}",
        f"--data.norm_dict={demo / 'norm_dict.yaml'}",
        f"--data.class_dict={demo / 'class_dict.yaml'}",
        "--data.num_train=500",
        "--data.num_val=200",
        "--data.num_test=200",
        "--data.batch_size=100",
        "--data.num_workers=0",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]


BACKBONE = "--model.model.init_args.backbone.init_args"
E2E = {
    "ParT_small": [],
    "PET2": [
        f"{BACKBONE}.base_dim=16",
        f"{BACKBONE}.num_heads=2",
        f"{BACKBONE}.num_layers=1",
        f"{BACKBONE}.out_dim=16",
    ],
    "ViT": [
        f"{BACKBONE}.embed_dim=16",
        f"{BACKBONE}.num_heads=2",
        f"{BACKBONE}.num_layers=1",
        f"{BACKBONE}.out_dim=16",
    ],
}


@pytest.mark.parametrize("config", list(E2E))
def test_fit_then_test_from_the_command_line(config: str, demo_dir: Path, tmp_path: Path):
    configs = ["--config", str(ROOT / "configs" / "GN2.yaml")]
    configs += ["--config", str(ROOT / "configs" / f"{config}.yaml")]
    root = f"--trainer.default_root_dir={tmp_path}"
    args = ["fit", *configs, *_data_args(demo_dir), *E2E[config], root, "-n", "zoo"]
    assert main([*args, "--log_suffix=e2e"]) == 0
    run_dir = tmp_path / "zoo_e2e"
    assert main(["test", "--config", str(run_dir / "config.yaml")]) == 0
    assert len(list((run_dir / "ckpts").glob("*__test_test.h5"))) == 1

    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    saved = resolved["model"]["model"]["init_args"]
    assert saved["init_nets"] == [] and saved["encoder"] is None and saved["pool_net"] is None
    backbone = saved["backbone"]["init_args"]
    assert backbone["variables"] == resolved["data"]["variables"]  # filled in by salt
    task = saved["tasks"][0]["init_args"]
    assert task["dense_config"]["input_size"] == backbone["out_dim"]  # derived by salt
    if config == "PET2":  # fine-tune: a fresh backbone from the salt checkpoint, every key fits
        ckpt = run_dir / "ckpts" / "last.ckpt"
        report = load_pretrained(PET2(**backbone), ckpt, "PET2")
        assert report.prefix == "model.backbone."
        assert not (report.missing or report.unexpected or report.mismatched)
