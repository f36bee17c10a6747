"""GATv2 attention, attention bias, cross-attention pooling/encoding and edge features."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from torch import Tensor, nn

from salt.models.attention import AttentionBase, MultiheadAttention, ScaledDotProductAttention
from salt.models.cross_attention import CrossAttentionPooling, TransformerCrossAttentionEncoder
from salt.models.edges import EdgeFeatures, pair_features, wrap_phi
from salt.models.gatv2 import GATv2Attention
from salt.models.transformer import TransformerEncoder


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def random_mask(batch: int, length: int, all_padded_row: int | None = None) -> Tensor:
    """Scattered padding with at least one valid entry per row, unless a row is asked padded."""
    mask = torch.rand(batch, length) < 0.4
    mask[:, 0] = False
    if all_padded_row is not None:
        mask[all_padded_row] = True
    return mask


def all_finite_grads(parameters: Any) -> bool:
    grads = [p.grad for p in parameters if p.grad is not None]
    return bool(grads) and all(torch.isfinite(grad).all() for grad in grads)


def strategies() -> list[AttentionBase]:
    return [ScaledDotProductAttention(), GATv2Attention()]


# ------------------------------------------------------------------------ strategies and bias


@pytest.mark.parametrize("attention", strategies(), ids=["sdp", "gatv2"])
def test_strategies_shapes_and_padding(attention: AttentionBase) -> None:
    mha = MultiheadAttention(8, num_heads=2, attention=attention).eval()
    x, mask = torch.randn(3, 6, 8), random_mask(3, 6, all_padded_row=2)
    out = mha(x, pad_mask=mask)
    assert out.shape == (3, 6, 8)
    assert torch.equal(out[mask], torch.zeros_like(out[mask]))
    changed = x.clone()
    changed[mask] = 1e4 * torch.randn(int(mask.sum()), 8)
    torch.testing.assert_close(mha(changed, pad_mask=mask), out)

    q, k, v = (torch.randn(2, 2, 5, 4) for _ in range(3))
    kv_mask = torch.tensor([[False, True, False, True, True], [True] * 5])
    out = attention(q, k, v, kv_mask)
    assert out.shape == (2, 2, 5, 4)
    assert torch.equal(out[1], torch.zeros(2, 5, 4))
    k2, v2 = k.clone(), v.clone()
    k2[0, :, kv_mask[0]], v2[0, :, kv_mask[0]] = 1e3, -1e3
    torch.testing.assert_close(attention(q, k2, v2, kv_mask), out)


def test_gatv2_matches_hand_computation() -> None:
    attention = GATv2Attention(num_heads=2, head_dim=2)
    assert attention.att_weight is not None
    with torch.no_grad():
        attention.att_weight.copy_(torch.tensor([[0.5, -1.0], [2.0, 0.25]]))
    q = torch.tensor([[[[0.1, -0.4], [1.0, 0.3]], [[-0.2, 0.6], [0.0, -1.5]]]])  # (1, 2, 2, 2)
    k = torch.tensor([[[[0.7, 0.2], [-0.3, -0.9], [0.4, 1.1]], [[0.5, -0.5], [1.2, 0.1], [0, 0]]]])
    v = torch.arange(12.0).reshape(1, 2, 3, 2)
    kv_mask = torch.tensor([[False, False, True]])
    bias = torch.tensor([0.3, -0.2, 5.0]).expand(1, 2, 2, 3)

    def leaky(value: float) -> float:
        return value if value > 0 else 0.2 * value

    a = attention.att_weight.tolist()
    expected = torch.zeros(1, 2, 2, 2)
    for with_bias in (False, True):
        for h in range(2):
            for i in range(2):
                scores = [
                    sum(a[h][d] * leaky(float(q[0, h, i, d] + k[0, h, j, d])) for d in range(2))
                    + (float(bias[0, h, i, j]) if with_bias else 0.0)
                    for j in range(2)  # key 2 is padded
                ]
                weights = [math.exp(s) / sum(math.exp(t) for t in scores) for s in scores]
                for d in range(2):
                    expected[0, h, i, d] = sum(
                        w * float(v[0, h, j, d]) for j, w in enumerate(weights)
                    )
        out = attention(q, k, v, kv_mask, bias if with_bias else None)
        torch.testing.assert_close(out, expected)


def test_gatv2_takes_or_checks_the_head_layout() -> None:
    mha = MultiheadAttention(16, num_heads=4, attention=GATv2Attention())
    assert isinstance(mha.attention, GATv2Attention)
    assert mha.attention.att_weight is not None
    assert mha.attention.att_weight.shape == (4, 4)
    with pytest.raises(ValueError, match=r"num_heads=8, head_dim=4 .* num_heads=4, head_dim=4"):
        MultiheadAttention(16, num_heads=4, attention=GATv2Attention(num_heads=8, head_dim=4))
    with pytest.raises(ValueError, match=r"mha_config\.attention: .*head_dim=32.*head_dim=4"):
        TransformerEncoder(
            16,
            1,
            mha_config={"num_heads": 4, "attention": GATv2Attention(num_heads=4, head_dim=32)},
        )
    with pytest.raises(ValueError, match="num_heads and head_dim are unknown"):
        GATv2Attention()(*(torch.randn(1, 2, 3, 4) for _ in range(3)))
    with pytest.raises(ValueError, match="head_dim"):
        GATv2Attention(num_heads=2, head_dim=0)
    with pytest.raises(ValueError, match="activation"):
        GATv2Attention(activation="NoSuchActivation")


def test_gatv2_dropout_only_in_training() -> None:
    attention = GATv2Attention(num_heads=2, head_dim=4, dropout=0.5)
    q, k, v = (torch.randn(2, 2, 8, 4) for _ in range(3))
    assert not torch.allclose(attention.train()(q, k, v), attention.eval()(q, k, v))


def test_sdp_bias_matches_hand_computation() -> None:
    q, k, v = (torch.randn(2, 2, 3, 4) for _ in range(3))
    bias = torch.randn(2, 2, 3, 3)
    kv_mask = torch.tensor([[False, True, False], [False, False, False]])
    scores = q @ k.transpose(-1, -2) / 2.0 + bias
    scores = scores.masked_fill(kv_mask[:, None, None, :], float("-inf"))
    expected = torch.softmax(scores, dim=-1) @ v
    out = ScaledDotProductAttention()(q, k, v, kv_mask, bias)
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, ScaledDotProductAttention()(q, k, v, kv_mask), atol=1e-3)


@pytest.mark.parametrize("attention", strategies(), ids=["sdp", "gatv2"])
def test_large_negative_bias_equals_masking(attention: AttentionBase) -> None:
    mha = MultiheadAttention(8, num_heads=2, attention=attention).eval()
    x = torch.randn(2, 5, 8)
    bias = torch.zeros(2, 2, 5, 5)
    bias[..., 3] = -1e9
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[:, 3] = True
    # Masking key 3 also zeroes query 3, so compare the other rows.
    rows = [0, 1, 2, 4]
    biased = mha(x, attn_bias=bias)[:, rows]
    torch.testing.assert_close(biased, mha(x, pad_mask=mask)[:, rows])
    assert not torch.allclose(biased, mha(x)[:, rows], atol=1e-3)


@pytest.mark.parametrize("attention", strategies(), ids=["sdp", "gatv2"])
def test_encoder_bias_reaches_every_layer_and_padding_still_holds(
    attention: AttentionBase,
) -> None:
    encoder = TransformerEncoder(
        8,
        2,
        mha_config={"num_heads": 2, "attention": attention},
        dense_config={"hidden_layers": [8]},
    ).eval()
    x, mask = torch.randn(3, 6, 8), random_mask(3, 6, all_padded_row=1)
    bias = torch.randn(3, 2, 6, 6)
    out = encoder(x, mask, bias)
    assert not torch.allclose(out, encoder(x, mask), atol=1e-3)
    pair_padded = (mask[:, :, None] | mask[:, None, :])[:, None].expand_as(bias)
    changed = bias.clone()
    changed[pair_padded] = 1e6
    torch.testing.assert_close(encoder(x, mask, changed), out)
    assert torch.isfinite(out).all()
    assert torch.equal(out[1], torch.zeros(6, 8))
    # one layer ignoring the bias would break this: compare against layer-by-layer application
    ref = x.masked_fill(mask[..., None], 0.0)
    for layer in encoder.layers:
        ref = layer(ref, mask, bias)
    torch.testing.assert_close(out, encoder.norm(ref).masked_fill(mask[..., None], 0.0))


# ----------------------------------------------------------------------- cross-attention pooling


def make_pool(**overrides: Any) -> CrossAttentionPooling:
    kwargs: dict[str, Any] = {
        "input_size": 8,
        "num_layers": 2,
        "mha_config": {"num_heads": 2, "out_proj": False},
        "dense_config": {"hidden_layers": [16], "activation": "SiLU"},
    }
    kwargs.update(overrides)
    return CrossAttentionPooling(**kwargs).eval()


def test_cross_attention_pooling_invariances() -> None:
    pool = make_pool(out_dim=5)
    assert pool.output_size == 5
    x, mask = torch.randn(4, 7, 8), random_mask(4, 7)
    out = pool(x, mask)
    assert out.shape == (4, 5)
    perm = torch.randperm(7)
    torch.testing.assert_close(pool(x[:, perm], mask[:, perm]), out)
    longer = torch.cat([x, 1e4 * torch.randn(4, 3, 8)], dim=1)
    longer_mask = torch.cat([mask, torch.ones(4, 3, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(pool(longer, longer_mask), out)
    changed = x.clone()
    changed[mask] = float("inf")
    torch.testing.assert_close(pool(changed, mask), out)
    # the class token really reads the constituents
    assert not torch.allclose(pool(x + torch.randn_like(x), mask), out, atol=1e-3)
    assert pool(x).shape == (4, 5)


def test_cross_attention_pooling_all_padded_is_finite() -> None:
    pool = make_pool().train()
    x, mask = torch.randn(3, 5, 8, requires_grad=True), random_mask(3, 5, all_padded_row=0)
    with torch.autograd.detect_anomaly():
        out = pool(x, mask)
        assert out.shape == (3, 8)
        assert torch.isfinite(out).all()
        out.sum().backward()
    assert all_finite_grads([x, *pool.parameters()])


def test_cross_attention_pooling_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="input_size: not set"):
        CrossAttentionPooling()
    with pytest.raises(ValueError, match="num_layers"):
        make_pool(num_layers=0)
    with pytest.raises(ValueError, match="mha_config"):
        make_pool(mha_config={"num_heads": 2, "head_dim": 3, "out_proj": False})
    with pytest.raises(ValueError, match="input_size=8"):
        make_pool()(torch.randn(2, 3, 4))


# ---------------------------------------------------------------- cross-attention encoder


def make_hetero(ca_every_layer: bool, **overrides: Any) -> TransformerCrossAttentionEncoder:
    kwargs: dict[str, Any] = {
        "input_names": ["tracks", "electrons"],
        "embed_dim": 8,
        "num_layers": 2,
        "mha_config": {"num_heads": 2},
        "sa_dense_config": {"hidden_layers": [16]},
        "ca_every_layer": ca_every_layer,
        "out_dim": 6,
    }
    kwargs.update(overrides)
    return TransformerCrossAttentionEncoder(**kwargs).eval()


@pytest.mark.parametrize("ca_every_layer", [True, False])
def test_cross_attention_encoder_shapes_and_mixing(ca_every_layer: bool) -> None:
    encoder = make_hetero(ca_every_layer)
    assert encoder.output_size == 6
    assert len(encoder.ca_layers["tracks"]) == (2 if ca_every_layer else 1)  # type: ignore[arg-type]
    x = {"tracks": torch.randn(3, 7, 8), "electrons": torch.randn(3, 2, 8)}
    masks = {"tracks": random_mask(3, 7), "electrons": torch.tensor([[0, 1], [1, 1], [0, 0]]) > 0}
    out = encoder(x, masks)
    assert out["tracks"].shape == (3, 7, 6)
    assert out["electrons"].shape == (3, 2, 6)
    for name in x:
        assert torch.equal(out[name][masks[name]], torch.zeros_like(out[name][masks[name]]))
    # tracks read the valid electrons (jets 0 and 2), never the padded ones (jet 1)
    other = {
        "tracks": x["tracks"],
        "electrons": x["electrons"] + 1e3 * masks["electrons"][..., None],
    }
    torch.testing.assert_close(encoder(other, masks)["tracks"], out["tracks"])
    other = {"tracks": x["tracks"], "electrons": torch.randn(3, 2, 8)}
    tracks = encoder(other, masks)["tracks"]
    torch.testing.assert_close(tracks[1], out["tracks"][1])
    assert not torch.allclose(tracks[[0, 2]], out["tracks"][[0, 2]], atol=1e-3)
    unpadded = encoder(x)
    assert unpadded["electrons"].shape == (3, 2, 6)


@pytest.mark.parametrize("ca_every_layer", [True, False])
def test_cross_attention_encoder_jet_without_electrons_is_finite(ca_every_layer: bool) -> None:
    encoder = make_hetero(ca_every_layer).train()
    x = {"tracks": torch.randn(2, 5, 8), "electrons": torch.randn(2, 3, 8)}
    masks = {"tracks": random_mask(2, 5), "electrons": torch.ones(2, 3, dtype=torch.bool)}
    masks["electrons"][1, 0] = False
    with torch.autograd.detect_anomaly():
        out = encoder(x, masks)
        assert all(torch.isfinite(value).all() for value in out.values())
        assert torch.equal(out["electrons"][0], torch.zeros(3, 6))
        sum(value.sum() for value in out.values()).backward()  # type: ignore[union-attr]
    assert all_finite_grads(encoder.parameters())


def test_cross_attention_encoder_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="input_names"):
        make_hetero(True, input_names=["tracks"])
    with pytest.raises(ValueError, match="input_names"):
        make_hetero(True, input_names=["tracks", "tracks"])
    with pytest.raises(ValueError, match=r"sa_dense_config\.output_size"):
        make_hetero(True, sa_dense_config={"output_size": 3})
    encoder = make_hetero(False)
    with pytest.raises(ValueError, match="electrons"):
        encoder({"tracks": torch.randn(1, 2, 8)})
    x = {"tracks": torch.randn(1, 2, 8), "electrons": torch.randn(1, 2, 8)}
    with pytest.raises(ValueError, match="pad_masks"):
        encoder(x, {"tracks": torch.zeros(1, 2, dtype=torch.bool)})


# ------------------------------------------------------------------------------ edge features


def test_pair_features_match_hand_computation() -> None:
    pt, eta, phi, subjet = [5.0, 2.0], [0.3, -0.4], [3.0, -3.0], [1.0, 1.0]
    names = ["dR", "kt", "z", "isSelfLoop", "subjetIndex", "mass"]
    as_tensor = [torch.tensor([values], dtype=torch.float64) for values in (pt, eta, phi, subjet)]
    out = pair_features(*as_tensor[:3], names, subjet=as_tensor[3], eps=1e-12)
    assert out.shape == (1, 2, 2, 6)

    deta, dphi = 0.3 - (-0.4), 6.0 - 2 * math.pi  # wrapped across +-pi
    dr = math.sqrt(deta**2 + dphi**2)
    # massless four-vectors summed, m^2 = E^2 - |p|^2
    px = sum(p * math.cos(f) for p, f in zip(pt, phi))
    py = sum(p * math.sin(f) for p, f in zip(pt, phi))
    pz = sum(p * math.sinh(e) for p, e in zip(pt, eta))
    energy = sum(p * math.cosh(e) for p, e in zip(pt, eta))
    mass = math.sqrt(energy**2 - px**2 - py**2 - pz**2)
    off_diagonal = [
        math.log(dr),
        math.log(2.0 * dr),
        math.log(2.0 / 7.0),
        0.0,
        1.0,
        math.log(mass),
    ]
    torch.testing.assert_close(out[0, 0, 1], torch.tensor(off_diagonal, dtype=torch.float64))
    torch.testing.assert_close(out[0, 1, 0], out[0, 0, 1])
    diagonal = out[0, 0, 0]
    torch.testing.assert_close(diagonal[2:5], torch.tensor([math.log(0.5), 1.0, 1.0]).double())
    assert torch.isfinite(diagonal).all()
    assert diagonal[0] < -10  # log of a zero distance, held finite by eps
    different = pair_features(None, None, None, ["subjetIndex"], subjet=torch.tensor([[0.0, 1.0]]))
    assert different[0, 0, 1, 0] == 0.0


def test_wrap_phi() -> None:
    values = torch.tensor([0.5, math.pi + 0.1, -math.pi - 0.1, 4 * math.pi + 0.2])
    expected = torch.tensor([0.5, -math.pi + 0.1, math.pi - 0.1, 0.2])
    torch.testing.assert_close(wrap_phi(values), expected)


def test_edge_features_bias_from_named_columns() -> None:
    variables = ["d0", "phi", "pt", "eta", "subjetIndex"]
    edges = EdgeFeatures(["dR", "z", "subjetIndex"], num_heads=3, variables=variables)
    assert edges.output_size == 3
    x_raw = torch.rand(2, 4, 5) * 10
    mask = torch.tensor([[False, False, True, True], [False, False, False, False]])
    x_raw[mask] = float("nan")  # garbage in padding must not leak
    bias = edges(x_raw, mask)
    assert bias.shape == (2, 3, 4, 4)
    assert torch.isfinite(bias).all()
    pair_padded = mask[:, :, None] | mask[:, None, :]
    assert torch.equal(
        bias.permute(0, 2, 3, 1)[pair_padded], torch.zeros(int(pair_padded.sum()), 3)
    )
    clean = x_raw.nan_to_num(0.0)
    features = pair_features(
        clean[..., 2],
        clean[..., 3],
        clean[..., 1],
        ["dR", "z", "subjetIndex"],
        subjet=clean[..., 4],
    )
    expected = edges.net(features).permute(0, 3, 1, 2)
    torch.testing.assert_close(bias[1], expected[1])
    torch.testing.assert_close(bias[0, :, :2, :2], expected[0, :, :2, :2])
    self_loop = EdgeFeatures(["isSelfLoop"], num_heads=2, variables=variables)
    assert self_loop(x_raw, mask).shape == (2, 2, 4, 4)


def test_edge_features_name_what_is_missing() -> None:
    with pytest.raises(
        ValueError, match=r"'kt' needs the variable 'pt' in data\.variables\[hits\]"
    ):
        EdgeFeatures(["dR", "kt"], input_name="hits", variables=["eta", "phi", "d0"])
    with pytest.raises(ValueError, match=r"'subjetIndex'"):
        EdgeFeatures(["subjetIndex"], variables=["pt", "eta", "phi"])
    with pytest.raises(ValueError, match=r"variables: not set.*data\.variables\[tracks\]"):
        EdgeFeatures()
    with pytest.raises(ValueError, match="unknown edge features"):
        EdgeFeatures(["dR", "angle"], variables=["eta", "phi"])
    with pytest.raises(ValueError, match="x_raw"):
        EdgeFeatures(["dR"], variables=["eta", "phi"])(torch.randn(1, 2, 3))


# ----------------------------------------------------------------------------- jsonargparse


CONFIG_YAML = """
encoder:
  class_path: salt.models.transformer.TransformerEncoder
  init_args:
    embed_dim: 16
    num_layers: 2
    mha_config:
      num_heads: 2
      attention:
        class_path: salt.models.gatv2.GATv2Attention
        init_args: {num_heads: 2, head_dim: 8, activation: SiLU}
pool:
  class_path: salt.models.cross_attention.CrossAttentionPooling
  init_args:
    input_size: 16
    num_layers: 2
    mha_config:
      num_heads: 4
      attention: {class_path: salt.models.attention.ScaledDotProductAttention}
      out_proj: false
    dense_config: {norm_layer: LayerNorm, activation: SiLU, hidden_layers: [32], dropout: 0.1}
hetero:
  class_path: salt.models.cross_attention.TransformerCrossAttentionEncoder
  init_args:
    input_names: [tracks, electrons]
    ca_every_layer: true
    embed_dim: 16
    num_layers: 2
    out_dim: 8
    mha_config:
      num_heads: 4
      attention: {class_path: salt.models.gatv2.GATv2Attention}
      out_proj: false
    sa_dense_config: {activation: SiLU, hidden_layers: [32]}
edges:
  class_path: salt.models.edges.EdgeFeatures
  init_args:
    features: [dR, kt, z, isSelfLoop]
    num_heads: 2
    variables: [pt, eta, phi, d0]
"""


def test_jsonargparse_builds_the_variants() -> None:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--encoder", type=TransformerEncoder)
    parser.add_argument("--pool", type=nn.Module)
    parser.add_argument("--hetero", type=nn.Module)
    parser.add_argument("--edges", type=EdgeFeatures)
    config = parser.parse_object(yaml.safe_load(CONFIG_YAML))
    built = parser.instantiate(config)
    strategies = [layer.attn.attention for layer in built.encoder.layers]
    assert all(isinstance(s, GATv2Attention) for s in strategies)
    assert isinstance(strategies[0].act, nn.SiLU)
    assert not torch.equal(strategies[0].att_weight, strategies[1].att_weight)
    assert isinstance(built.pool, CrossAttentionPooling)
    assert built.pool.output_size == 16
    assert isinstance(built.hetero, TransformerCrossAttentionEncoder)
    assert built.hetero.output_size == 8
    ca_attention = built.hetero.ca_layers["tracks"][0].attn.attention
    assert isinstance(ca_attention, GATv2Attention)
    assert ca_attention.num_heads == 4
    assert ca_attention.head_dim == 4
    assert built.edges.features == ["dR", "kt", "z", "isSelfLoop"]

    x, mask = torch.randn(2, 5, 16), random_mask(2, 5)
    bias = built.edges(torch.rand(2, 5, 4), mask)
    assert built.pool(built.encoder(x, mask, bias), mask).shape == (2, 16)

    raw = yaml.safe_load(CONFIG_YAML)
    raw["encoder"]["init_args"]["mha_config"]["attention"]["init_args"]["head_dim"] = 4
    with pytest.raises(Exception, match="head_dim"):
        parser.instantiate(parser.parse_object(raw))


# ------------------------------------------------------------------------------------- ONNX


class BiasedTagger(nn.Module):
    """Edge features -> GATv2 encoder: the path a GN2 with edges exports to ONNX."""

    def __init__(self) -> None:
        super().__init__()
        self.edges = EdgeFeatures(
            ["dR", "kt", "z", "isSelfLoop", "mass"],
            num_heads=2,
            variables=["pt", "eta", "phi"],
            hidden_layers=[8],
        )
        self.encoder = TransformerEncoder(
            8,
            1,
            mha_config={"num_heads": 2, "attention": GATv2Attention()},
            dense_config={"hidden_layers": [8]},
        )

    def forward(self, x: Tensor, x_raw: Tensor, mask: Tensor) -> Tensor:
        return self.encoder(x, mask, self.edges(x_raw, mask))


def test_gatv2_encoder_with_bias_exports_to_onnx() -> None:
    model = BiasedTagger().eval()
    args = (torch.randn(2, 4, 8), torch.rand(2, 4, 3), random_mask(2, 4))
    axes = {0: "batch", 1: "length"}
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        args,
        buffer,
        dynamo=False,
        input_names=["x", "x_raw", "mask"],
        output_names=["out"],
        dynamic_axes={"x": axes, "x_raw": axes, "mask": axes, "out": axes},
    )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    x, x_raw = torch.randn(3, 7, 8), torch.rand(3, 7, 3) * 3
    mask = random_mask(3, 7, all_padded_row=1)
    (out,) = session.run(None, {"x": x.numpy(), "x_raw": x_raw.numpy(), "mask": mask.numpy()})
    with torch.no_grad():
        expected = model(x, x_raw, mask).numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)
