"""Behaviour of the GN2 building blocks: shapes, hand-computed numbers, masking and configs."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from torch import Tensor, nn

from salt.models.attention import AttentionBase, MultiheadAttention, ScaledDotProductAttention
from salt.models.dense import Dense
from salt.models.initnet import InitNet
from salt.models.pooling import GlobalAttentionPooling
from salt.models.transformer import TransformerEncoder, TransformerEncoderLayer


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def random_mask(batch: int, length: int, all_padded_row: int | None = None) -> Tensor:
    """Scattered padding (not only trailing), at least one valid entry per row unless asked."""
    mask = torch.rand(batch, length) < 0.4
    mask[:, 0] = False
    if all_padded_row is not None:
        mask[all_padded_row] = True
    return mask


def all_finite_grads(parameters: Iterable[Tensor]) -> bool:
    grads = [p.grad for p in parameters if p.grad is not None]
    return bool(grads) and all(torch.isfinite(grad).all() for grad in grads)


def encoder_layers(encoder: TransformerEncoder) -> list[TransformerEncoderLayer]:
    layers = list(encoder.layers)
    assert all(isinstance(layer, TransformerEncoderLayer) for layer in layers)
    return layers  # type: ignore[return-value]


# --------------------------------------------------------------------------------------- Dense


def test_dense_shapes_and_layer_order() -> None:
    dense = Dense(
        6,
        3,
        hidden_layers=[8, 4],
        activation="SiLU",
        final_activation="Sigmoid",
        norm_layer="LayerNorm",
        dropout=0.1,
    )
    kinds = [type(layer) for layer in dense.net]
    assert kinds == [
        *[nn.Linear, nn.LayerNorm, nn.SiLU, nn.Dropout] * 2,
        nn.Linear,
        nn.Sigmoid,
    ]
    assert dense.output_size == 3
    assert dense(torch.randn(5, 6)).shape == (5, 3)
    assert dense(torch.randn(5, 7, 6)).shape == (5, 7, 3)
    assert len(Dense(6, 3).net) == 1


def test_dense_context_is_appended_to_every_row() -> None:
    with_context = Dense(4, 3, hidden_layers=[5], context_size=2)
    plain = Dense(6, 3, hidden_layers=[5])
    plain.load_state_dict(with_context.state_dict())
    x, context = torch.randn(2, 7, 4), torch.randn(2, 2)
    manual = torch.cat([x, context[:, None, :].expand(2, 7, 2)], dim=-1)
    torch.testing.assert_close(with_context(x, context), plain(manual))
    torch.testing.assert_close(with_context(x[:, 0], context), plain(manual[:, 0]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_size": 0, "output_size": 2}, "input_size"),
        ({"input_size": 2, "output_size": -1}, "output_size"),
        ({"input_size": 2, "output_size": 2, "hidden_layers": [4, 0]}, "hidden_layers"),
        ({"input_size": 2, "output_size": 2, "activation": "NotALayer"}, "activation"),
        ({"input_size": 2, "output_size": 2, "activation": "Tensor"}, "activation"),
        ({"input_size": 2, "output_size": 2, "final_activation": "relu"}, "final_activation"),
        (
            {"input_size": 2, "output_size": 2, "hidden_layers": [3], "norm_layer": "Nope"},
            "norm_layer",
        ),
        ({"input_size": 2, "output_size": 2, "dropout": 1.0}, "dropout"),
        ({"input_size": 2, "output_size": 2, "context_size": -1}, "context_size"),
    ],
)
def test_dense_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Dense(**kwargs)


def test_dense_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="input_size=4"):
        Dense(4, 2)(torch.randn(3, 5))
    with pytest.raises(ValueError, match="context"):
        Dense(4, 2, context_size=2)(torch.randn(3, 4))
    with pytest.raises(ValueError, match="context"):
        Dense(4, 2, context_size=2)(torch.randn(3, 4), torch.randn(3, 3))
    with pytest.raises(ValueError, match="context_size=0"):
        Dense(4, 2)(torch.randn(3, 4), torch.randn(3, 2))


# ------------------------------------------------------------------------------------- InitNet


def test_initnet_embeds_to_output_size() -> None:
    net = InitNet("tracks", {"input_size": 5, "output_size": 8, "hidden_layers": [16]})
    assert (net.input_size, net.output_size, net.attach_global) == (5, 8, True)
    assert net(torch.randn(2, 10, 5)).shape == (2, 10, 8)


@pytest.mark.parametrize("missing", ["input_size", "output_size"])
def test_initnet_requires_sizes(missing: str) -> None:
    config: dict[str, Any] = {"input_size": 5, "output_size": 8}
    del config[missing]
    with pytest.raises(ValueError, match=rf"init_nets\[tracks\]\.dense_config\.{missing}"):
        InitNet("tracks", config)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- Attention


def hand_attention(
    mha: MultiheadAttention, x: Tensor, kv: Tensor, q_mask: Tensor, kv_mask: Tensor
) -> Tensor:
    """Reference multi-head attention with explicit matmuls, one jet and one head at a time."""
    heads, dim = mha.num_heads, mha.head_dim
    q = x @ mha.q_proj.weight.T + mha.q_proj.bias
    k = kv @ mha.k_proj.weight.T + mha.k_proj.bias
    v = kv @ mha.v_proj.weight.T + mha.v_proj.bias
    out = torch.zeros(x.shape[0], x.shape[1], heads * dim)
    for b in range(x.shape[0]):
        valid = ~kv_mask[b]
        for h in range(heads):
            cols = slice(h * dim, (h + 1) * dim)
            scores = q[b, :, cols] @ k[b][valid][:, cols].T / math.sqrt(dim)
            weights = torch.exp(scores - scores.max(dim=-1, keepdim=True).values)
            weights = weights / weights.sum(dim=-1, keepdim=True)
            out[b, :, cols] = weights @ v[b][valid][:, cols]
    out_proj = mha.out_proj
    assert isinstance(out_proj, nn.Linear)
    out = out @ out_proj.weight.T + out_proj.bias
    return out.masked_fill(q_mask[..., None], 0.0)


def test_self_attention_matches_hand_computation() -> None:
    mha = MultiheadAttention(embed_dim=6, num_heads=2).eval()
    x = torch.randn(3, 5, 6)
    mask = torch.tensor([[0, 0, 1, 0, 1], [0, 0, 0, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    expected = hand_attention(mha, x, x, mask, mask)
    torch.testing.assert_close(mha(x, pad_mask=mask), expected, atol=1e-5, rtol=1e-5)


def test_cross_attention_matches_hand_computation() -> None:
    mha = MultiheadAttention(embed_dim=4, num_heads=2, head_dim=3, kv_size=5).eval()
    x, kv = torch.randn(2, 3, 4), torch.randn(2, 6, 5)
    q_mask = torch.tensor([[0, 0, 1], [0, 0, 0]], dtype=torch.bool)
    kv_mask = torch.tensor([[0, 1, 0, 0, 1, 1], [1, 1, 1, 0, 0, 1]], dtype=torch.bool)
    out = mha(x, kv, pad_mask=q_mask, kv_pad_mask=kv_mask)
    assert out.shape == (2, 3, 4)
    expected = hand_attention(mha, x, kv, q_mask, kv_mask)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_attention_padding_gives_exact_zeros_and_no_nan() -> None:
    mha = MultiheadAttention(embed_dim=8, num_heads=2)
    x = torch.randn(3, 6, 8, requires_grad=True)
    mask = random_mask(3, 6, all_padded_row=1)
    out = mha(x, pad_mask=mask)
    assert torch.equal(out[mask], torch.zeros_like(out[mask]))
    assert torch.equal(out[1], torch.zeros(6, 8))
    # a jet whose keys are all padded, seen from unpadded queries (cross-attention)
    kv_mask = torch.zeros(3, 6, dtype=torch.bool)
    kv_mask[2] = True
    cross = mha(x, torch.randn(3, 6, 8), kv_pad_mask=kv_mask)
    assert torch.equal(cross[2], torch.zeros(6, 8))
    (out.sum() + cross.sum()).backward()
    assert all_finite_grads(mha.parameters())
    assert all_finite_grads([x])


def test_sdp_strategy_zeros_queries_without_keys() -> None:
    q, k, v = (torch.randn(2, 3, 4, 5) for _ in range(3))
    kv_mask = torch.tensor([[True] * 4, [False, True, False, True]])
    out = ScaledDotProductAttention()(q, k, v, kv_mask)
    assert out.shape == (2, 3, 4, 5)
    assert torch.equal(out[0], torch.zeros(3, 4, 5))
    assert torch.isfinite(out).all()


def test_sdp_never_hands_a_fully_masked_row_to_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels differ on rows without any allowed key (NaN or zeros); we must not depend on it."""
    seen: list[Tensor] = []
    kernel = torch.nn.functional.scaled_dot_product_attention

    def spy(*args: Any, **kwargs: Any) -> Tensor:
        seen.append(kwargs["attn_mask"])
        return kernel(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    q, k, v = (torch.randn(2, 1, 3, 4) for _ in range(3))
    ScaledDotProductAttention()(q, k, v, torch.tensor([[True] * 3, [False, True, True]]))
    assert len(seen) == 1
    assert seen[0].any(dim=-1).all()


def test_attention_ignores_non_finite_padded_keys() -> None:
    mha = MultiheadAttention(embed_dim=8, num_heads=2, kv_size=5).eval()
    x, kv, kv_mask = torch.randn(3, 4, 8), torch.randn(3, 6, 5), random_mask(3, 6)
    out = mha(x, kv, kv_pad_mask=kv_mask)
    for value in (float("inf"), float("-inf"), 1e38):
        changed = kv.clone()
        changed[kv_mask] = value
        torch.testing.assert_close(mha(x, changed, kv_pad_mask=kv_mask), out)


def test_sdp_dropout_only_in_training() -> None:
    attention = ScaledDotProductAttention(dropout=0.5)
    q, k, v = (torch.randn(2, 2, 8, 4) for _ in range(3))
    assert not torch.allclose(attention.train()(q, k, v), attention.eval()(q, k, v))
    torch.testing.assert_close(attention(q, k, v), attention(q, k, v))


def test_attention_sizes() -> None:
    assert MultiheadAttention(12, num_heads=3).head_dim == 4
    mha = MultiheadAttention(10, num_heads=3, head_dim=4, out_proj=False)
    assert mha.output_size == 12
    assert mha(torch.randn(2, 5, 10)).shape == (2, 5, 12)
    with pytest.raises(ValueError, match=r"embed_dim: .*num_heads=3"):
        MultiheadAttention(10, num_heads=3)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"num_heads": 0}, "num_heads"),
        ({"head_dim": 0}, "head_dim"),
        ({"kv_size": 0}, "kv_size"),
        ({"dropout": -0.1}, "dropout"),
    ]
    for kwargs, name in bad:
        with pytest.raises(ValueError, match=name):
            MultiheadAttention(8, **kwargs)
    with pytest.raises(ValueError, match="dropout"):
        ScaledDotProductAttention(dropout=1.5)


# ------------------------------------------------------------------------------------ Encoder


def make_encoder(**overrides: Any) -> TransformerEncoder:
    kwargs: dict[str, Any] = {
        "embed_dim": 16,
        "num_layers": 2,
        "mha_config": {"num_heads": 4, "attention": ScaledDotProductAttention(dropout=0.1)},
        "dense_config": {"hidden_layers": [32], "activation": "SiLU", "dropout": 0.1},
        "dropout": 0.1,
    }
    kwargs.update(overrides)
    return TransformerEncoder(**kwargs).eval()


def test_encoder_shapes_and_padded_outputs() -> None:
    encoder = make_encoder(out_dim=8)
    assert encoder.output_size == 8
    mask = random_mask(4, 9)
    out = encoder(torch.randn(4, 9, 16), mask)
    assert out.shape == (4, 9, 8)
    assert torch.equal(out[mask], torch.zeros_like(out[mask]))
    assert not torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    assert make_encoder().output_size == 16
    assert make_encoder()(torch.randn(2, 3, 16)).shape == (2, 3, 16)


def test_encoder_ignores_values_at_padded_positions() -> None:
    encoder, pool = make_encoder(), GlobalAttentionPooling(16)
    x, mask = torch.randn(4, 7, 16), random_mask(4, 7)
    out = encoder(x, mask)

    changed = x.clone()
    changed[mask] = 1e30 * torch.randn(int(mask.sum()), 16)
    out_changed = encoder(changed, mask)
    torch.testing.assert_close(out_changed, out, atol=1e-5, rtol=1e-5)
    out_changed.sum().backward()
    assert all_finite_grads(encoder.parameters())

    extra = 1e4 * torch.randn(4, 5, 16)
    longer = torch.cat([x, extra], dim=1)
    longer_mask = torch.cat([mask, torch.ones(4, 5, dtype=torch.bool)], dim=1)
    out_longer = encoder(longer, longer_mask)
    torch.testing.assert_close(out_longer[:, :7], out, atol=1e-5, rtol=1e-5)
    assert torch.equal(out_longer[:, 7:], torch.zeros(4, 5, 16))
    torch.testing.assert_close(pool(out_longer, longer_mask), pool(out, mask), atol=1e-5, rtol=1e-5)


def test_encoder_all_padded_jet_is_finite() -> None:
    encoder, pool = make_encoder(), GlobalAttentionPooling(16)
    x, mask = torch.randn(3, 5, 16), random_mask(3, 5, all_padded_row=0)
    with torch.autograd.detect_anomaly():  # raises if any backward step produces NaN
        pooled = pool(encoder(x, mask), mask)
        assert torch.equal(pooled[0], torch.zeros(16))
        pooled.sum().backward()
    assert all_finite_grads([*encoder.parameters(), *pool.parameters()])


class TemperatureAttention(ScaledDotProductAttention):
    """A strategy with a learnable parameter, to show each layer owns its own copy."""

    def __init__(self) -> None:
        super().__init__()
        self.temperature = nn.Parameter(torch.ones(1))

    def forward(self, q: Tensor, k: Tensor, v: Tensor, kv_mask: Tensor | None = None) -> Tensor:
        return super().forward(q * self.temperature, k, v, kv_mask)


def test_encoder_layers_own_their_attention() -> None:
    prototype = TemperatureAttention()
    encoder = make_encoder(num_layers=3, mha_config={"num_heads": 4, "attention": prototype})
    layers = encoder_layers(encoder)
    strategies = [layer.attn.attention for layer in layers]
    assert all(isinstance(s, TemperatureAttention) for s in strategies)
    assert len({id(s) for s in [prototype, *strategies]}) == 4
    pointers = {p.data_ptr() for layer in layers for p in layer.attn.parameters()}
    assert len(pointers) == 3 * len(list(layers[0].attn.parameters()))
    temperatures = [s.temperature for s in strategies if isinstance(s, TemperatureAttention)]
    with torch.no_grad():
        temperatures[0].fill_(3.0)
    assert temperatures[1].item() == 1.0
    assert prototype.temperature.item() == 1.0


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"embed_dim": 0}, "embed_dim"),
        ({"num_layers": 0}, "num_layers"),
        ({"out_dim": 0}, "out_dim"),
        ({"norm_layer": "NoSuchNorm"}, "norm_layer"),
        ({"dropout": 2.0}, "dropout"),
        ({"mha_config": {"num_heads": 2, "head_dim": 4, "out_proj": False}}, "mha_config"),
        ({"mha_config": {"num_heads": 3}}, "num_heads=3"),
        ({"mha_config": {"num_heads": 4, "attention": nn.ReLU()}}, "mha_config.attention"),
        ({"dense_config": {"output_size": 8}}, "dense_config.output_size"),
        ({"dense_config": {"context_size": 2}}, "dense_config.context_size"),
    ],
)
def test_encoder_rejects_bad_arguments(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_encoder(**overrides)


def test_encoder_exports_with_dynamic_shapes() -> None:
    """No data-dependent Python branching: the graph must export and stay correct."""

    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.pool = make_encoder(), GlobalAttentionPooling(16)

        def forward(self, x: Tensor, mask: Tensor) -> Tensor:
            return self.pool(self.encoder(x, mask), mask)

    tagger = Tagger().eval()
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    exported = torch.export.export(
        tagger,
        (torch.randn(3, 6, 16), random_mask(3, 6)),
        dynamic_shapes=({0: batch, 1: length}, {0: batch, 1: length}),
    )
    x, mask = torch.randn(5, 11, 16), random_mask(5, 11, all_padded_row=2)
    torch.testing.assert_close(exported.module()(x, mask), tagger(x, mask))


# ------------------------------------------------------------------------------------ Pooling


def test_pooling_matches_hand_computation() -> None:
    pool = GlobalAttentionPooling(3)
    x = torch.randn(2, 4, 3)
    mask = torch.tensor([[0, 1, 0, 1], [0, 0, 0, 0]], dtype=torch.bool)
    expected = torch.zeros(2, 3)
    for b in range(2):
        valid = x[b][~mask[b]]
        scores = valid @ pool.score.weight[0] + pool.score.bias
        weights = torch.exp(scores) / torch.exp(scores).sum()
        expected[b] = weights @ valid
    torch.testing.assert_close(pool(x, mask), expected)
    torch.testing.assert_close(pool(x[1:], None), expected[1:])
    assert pool.output_size == 3


def test_pooling_masking_and_all_padded() -> None:
    pool = GlobalAttentionPooling(8)
    x, mask = torch.randn(3, 5, 8, requires_grad=True), random_mask(3, 5, all_padded_row=2)
    out = pool(x, mask)
    changed = x.detach().clone()
    changed[mask] = 1e6 * torch.randn(int(mask.sum()), 8)
    torch.testing.assert_close(pool(changed, mask), out)
    assert torch.equal(out[2], torch.zeros(8))
    with torch.autograd.detect_anomaly():  # raises if any backward step produces NaN
        pool(x, mask).sum().backward()
    assert all_finite_grads([x, *pool.parameters()])
    with pytest.raises(ValueError, match="input_size"):
        GlobalAttentionPooling(0)
    with pytest.raises(ValueError, match="input_size=8"):
        pool(torch.randn(2, 3, 4))


# ----------------------------------------------------------------------------- jsonargparse


ENCODER_YAML = """
enc:
  class_path: salt.models.transformer.TransformerEncoder
  init_args:
    embed_dim: 16
    num_layers: 3
    out_dim: 8
    mha_config:
      num_heads: 4
      attention:
        class_path: salt.models.attention.ScaledDotProductAttention
        init_args:
          dropout: 0.2
      out_proj: false
    dense_config:
      hidden_layers: [32]
      activation: SiLU
      norm_layer: LayerNorm
      dropout: 0.1
"""


def test_jsonargparse_builds_encoder_from_yaml() -> None:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--enc", type=TransformerEncoder)
    config = parser.parse_object(yaml.safe_load(ENCODER_YAML))
    encoder = parser.instantiate(config).enc
    assert isinstance(encoder, TransformerEncoder)
    assert len(encoder.layers) == 3
    assert encoder.output_size == 8
    layers = encoder_layers(encoder)
    strategies = [layer.attn.attention for layer in layers]
    assert all(type(s) is ScaledDotProductAttention and s.dropout == 0.2 for s in strategies)
    assert len({id(s) for s in strategies}) == 3
    assert isinstance(layers[0].attn.out_proj, nn.Identity)
    assert [type(m) for m in layers[0].ffn.net] == [
        nn.Linear,
        nn.LayerNorm,
        nn.SiLU,
        nn.Dropout,
        nn.Linear,
    ]
    assert "ScaledDotProductAttention" in parser.dump(config)


@pytest.mark.parametrize(
    ("key", "value"),
    [("num_heads", "four"), ("attention", {"class_path": "torch.nn.ReLU"}), ("unknown", 1)],
)
def test_jsonargparse_validates_mha_config(key: str, value: Any) -> None:
    raw = yaml.safe_load(ENCODER_YAML)
    raw["enc"]["init_args"]["mha_config"][key] = value
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--enc", type=TransformerEncoder)
    with pytest.raises(Exception, match="mha_config"):
        parser.parse_object(raw)


@pytest.mark.parametrize(
    ("cls", "init_args"),
    [
        (Dense, {"input_size": 3, "output_size": 2, "hidden_layers": [4], "norm_layer": None}),
        (InitNet, {"input_name": "tracks", "dense_config": {"input_size": 3, "output_size": 4}}),
        (
            MultiheadAttention,
            {
                "embed_dim": 8,
                "num_heads": 2,
                "kv_size": 5,
                "attention": {"class_path": "salt.models.attention.ScaledDotProductAttention"},
            },
        ),
        (GlobalAttentionPooling, {"input_size": 4}),
    ],
)
def test_jsonargparse_resolves_every_block(cls: type[nn.Module], init_args: dict[str, Any]) -> None:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--block", type=cls)
    path = f"{cls.__module__}.{cls.__name__}"
    config = parser.parse_object({"block": {"class_path": path, "init_args": init_args}})
    block = parser.instantiate(config).block
    assert isinstance(block, cls)
    assert isinstance(block.output_size, int)
    assert block.output_size > 0


def test_attention_base_is_abstract() -> None:
    with pytest.raises(TypeError):
        AttentionBase()  # type: ignore[abstract]
