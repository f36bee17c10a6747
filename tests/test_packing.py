"""The packed path (real constituents only) computes what the padded path computes."""

from __future__ import annotations

import pytest
import torch

from salt.models.attention import ScaledDotProductAttention
from salt.models.packing import Packing
from salt.models.transformer import TransformerEncoder
from salt.tasks.classification import ClassificationTask
from salt.tasks.vertexing import VertexingTask


def padded_batch(lengths: list[int], length: int, dim: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), length, dim, generator=generator)
    pad_mask = torch.arange(length)[None, :] >= torch.tensor(lengths)[:, None]
    return x, pad_mask


def test_packing_round_trip_and_pairs() -> None:
    x, pad_mask = padded_batch([3, 0, 2], 4, 2)
    pad_mask[2] = torch.tensor([False, True, False, True])  # real entries need not come first
    packing = Packing.from_pad_mask(pad_mask)
    assert packing.num_real == 5
    assert packing.lengths.tolist() == [3, 0, 2]
    assert packing.max_length == 3
    assert packing.slot.tolist() == [0, 1, 2, 0, 1]
    packed = packing.pack(x)
    torch.testing.assert_close(packed[3], x[2, 0])
    torch.testing.assert_close(packed[4], x[2, 2])
    restored = packing.unpack(packed)
    torch.testing.assert_close(restored, x.masked_fill(pad_mask[..., None], 0.0))
    compact = packing.to_compact(packed)
    assert compact.shape == (3, 3, 2)
    torch.testing.assert_close(compact[2, 1], x[2, 2])
    torch.testing.assert_close(packing.from_compact(compact), packed)
    first, second = packing.pairs(ordered=True)
    pairs = sorted(zip(first.tolist(), second.tolist()))
    expected = sorted([(i, j) for i in range(3) for j in range(3) if i != j] + [(3, 4), (4, 3)])
    assert pairs == expected
    first, second = packing.pairs(ordered=False)
    assert sorted(zip(first.tolist(), second.tolist())) == [(0, 1), (0, 2), (1, 2), (3, 4)]


@pytest.mark.parametrize("num_registers", [0, 2])
def test_packed_encoder_equals_padded(num_registers: int) -> None:
    torch.manual_seed(1)
    encoder = TransformerEncoder(
        16, 2, {"num_heads": 4}, out_dim=8, num_registers=num_registers, norm_affine=False
    ).eval()
    x, pad_mask = padded_batch([5, 1, 0, 7], 7, 16)
    packed = encoder(x, pad_mask)
    encoder.packed = False
    padded = encoder(x, pad_mask)
    assert packed.shape == (4, 7 + num_registers, 8)
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=1e-5)
    assert packed[0, 5:7].abs().sum() == 0  # padding stays zero


def test_varlen_attention_equals_compact() -> None:
    """The jagged (CUDA) kernel path, run on the CPU, equals the compact padded one."""
    torch.manual_seed(2)
    encoder = TransformerEncoder(8, 1, {"num_heads": 2}, num_registers=1).eval()
    x, pad_mask = padded_batch([3, 1, 4], 4, 8)
    compact = encoder(x, pad_mask)
    attention = encoder.layers[0].attn.attention
    assert isinstance(attention, ScaledDotProductAttention)
    attention.varlen = True
    torch.testing.assert_close(encoder(x, pad_mask), compact, atol=1e-5, rtol=1e-5)


def gradients(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def run_both(task, x, pad_mask, labels, context, monkeypatch: pytest.MonkeyPatch):
    """(output, loss, gradients) of the packed path, then of the padded path."""
    import salt.tasks.classification as classification_module
    import salt.tasks.vertexing as vertexing_module

    results = []
    for packed in (True, False):
        if not packed:
            for module in (classification_module, vertexing_module):
                monkeypatch.setattr(module, "packing_enabled", lambda _: False)
        task.zero_grad()
        out, loss = task(x, labels, pad_mask=pad_mask, context=context)
        loss.backward()
        results.append((out.detach(), loss.detach(), gradients(task)))
    return results


@pytest.mark.parametrize("normalise_by", ["pairs", "linked_pairs"])
@pytest.mark.parametrize("jet_weights", [False, True])
def test_packed_vertexing_equals_padded(
    normalise_by: str, jet_weights: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(3)
    x, pad_mask = padded_batch([4, 2, 0, 5], 5, 6)
    context = torch.randn(4, 3)
    vertex = torch.tensor(
        [[0, 0, 1, -1, -1], [2, 2, -1, -1, -1], [-1] * 5, [0, 1, 0, 3, 3]]
    ).masked_fill(pad_mask, -1)
    origin = torch.tensor([[3, 3, 1, 0, 0], [1, 1, 0, 0, 0], [0] * 5, [4, 2, 5, 1, 1]])
    labels = {"tracks": {"vertex": vertex, "origin": origin}}
    if jet_weights:
        labels["EVENT"] = {"weight": torch.tensor([1.0, 2.0, 0.5, 3.0])}
    task = VertexingTask(
        "vtx",
        "tracks",
        "vertex",
        {"input_size": 6, "context_size": 3, "hidden_layers": [8, 4]},
        normalise_by=normalise_by,  # type: ignore[arg-type]
        origin_label="origin",
        heavy_flavour_pair_weight=2.0,
        fake_pair_weight=0.0,
    )
    (out_p, loss_p, grad_p), (out_d, loss_d, grad_d) = run_both(
        task, x, pad_mask, labels, context, monkeypatch
    )
    torch.testing.assert_close(out_p, out_d, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss_p, loss_d, atol=1e-6, rtol=1e-5)
    for name in grad_d:
        torch.testing.assert_close(grad_p[name], grad_d[name], atol=1e-5, rtol=1e-4)


def test_vertexing_loss_by_hand() -> None:
    """Two real tracks of one vertex and a third apart: the loss is the BCE mean by hand."""
    task = VertexingTask("vtx", "tracks", "v", {"input_size": 2, "hidden_layers": [3]})
    x, pad_mask = padded_batch([3], 4, 2)
    labels = {"tracks": {"v": torch.tensor([[0, 0, 1, -1]])}}
    logits, loss = task(x, labels, pad_mask=pad_mask)
    targets = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.float)
    real = logits[0, :3, :3]
    off = ~torch.eye(3, dtype=torch.bool)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(real[off], targets[off])
    torch.testing.assert_close(loss, expected)
    assert logits[0, 3].abs().sum() == 0 and logits[0, :, 3].abs().sum() == 0


def test_packed_constituent_classification_equals_padded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(4)
    x, pad_mask = padded_batch([3, 0, 4], 4, 5)
    context = torch.randn(3, 2)
    target = torch.tensor([[0, 2, -1, -1], [-1] * 4, [1, 1, 0, 2]])
    task = ClassificationTask(
        "origin",
        "tracks",
        "o",
        {"input_size": 5, "context_size": 2, "hidden_layers": [4]},
        class_names=["a", "b", "c"],
    )
    (out_p, loss_p, grad_p), (out_d, loss_d, grad_d) = run_both(
        task, x, pad_mask, {"tracks": {"o": target}}, context, monkeypatch
    )
    real = ~pad_mask
    torch.testing.assert_close(out_p[real], out_d[real], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(loss_p, loss_d)
    for name in grad_d:
        torch.testing.assert_close(grad_p[name], grad_d[name], atol=1e-6, rtol=1e-5)


def test_shipped_gn2_is_salt_mls_network(demo_dir) -> None:
    """configs/GN2.yaml builds salt-ml's GN2: the same parameter count, 2,339,150."""
    from pathlib import Path

    from salt.cli.salt_cli import build

    root = Path(__file__).resolve().parents[1]
    data = [
        f"--data.train_file={demo_dir / 'train.h5'}",
        f"--data.val_file={demo_dir / 'val.h5'}",
        f"--data.norm_dict={demo_dir / 'norm_dict.yaml'}",
        f"--data.class_dict={demo_dir / 'class_dict.yaml'}",
    ]
    built = build([root / "configs" / "GN2.yaml"], "fit", data)
    assert sum(p.numel() for p in built.module.parameters()) == 2_339_150
