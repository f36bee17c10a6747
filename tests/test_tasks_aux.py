"""GN2's auxiliary heads: vertexing, (Gaussian) regression, and the common ``predict``."""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
from jsonargparse import ArgumentParser
from torch import nn
from torch.nn import functional

from salt.models import GlobalAttentionPooling, InitNet, SaltModel  # before salt.tasks: see report
from salt.tasks.base import TaskBase
from salt.tasks.classification import ClassificationTask
from salt.tasks.regression import GaussianRegressionTask, RegressionTask
from salt.tasks.vertexing import VertexingTask, vertex_indices

NAN = float("nan")


def vertexing_task(width: int = 4, hidden: int = 8, **kwargs) -> VertexingTask:
    torch.manual_seed(0)
    config = {"input_size": width, "context_size": 3, "hidden_layers": [hidden]}
    return VertexingTask("vtx", "tracks", "ftagTruthVertexIndex", config, **kwargs)


def same_vertex(index: torch.Tensor) -> torch.Tensor:
    """(B, L, L): whether two real tracks share a vertex (a numbering-free view of a partition)."""
    real = index >= 0
    return (index[:, :, None] == index[:, None, :]) & real[:, :, None] & real[:, None, :]


# --- vertexing ----------------------------------------------------------------------------------


def test_vertexing_loss_is_bce_over_valid_pairs_only():
    task = vertexing_task(loss=nn.BCEWithLogitsLoss(pos_weight=torch.tensor(3.0)))
    vertex = torch.tensor([[0, 0, 1, -1, 1, 2, -1], [4, 4, 4, 0, -1, -1, -1]])
    pad = torch.tensor([[0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1, 1]], dtype=torch.bool)
    x, context = torch.randn(2, 7, 4), torch.randn(2, 3)
    logits, loss = task(x, {"tracks": {"ftagTruthVertexIndex": vertex}}, pad, context)

    terms = []
    for b in range(2):
        for i in range(7):
            for j in range(7):
                if i == j or pad[b, i] or pad[b, j] or vertex[b, i] < 0 or vertex[b, j] < 0:
                    continue
                y = float(vertex[b, i] == vertex[b, j])
                p = torch.sigmoid(logits[b, i, j])
                terms.append(-(3.0 * y * torch.log(p) + (1 - y) * torch.log(1 - p)))
    assert len(terms) == 2 * (10 + 6)  # ordered pairs: 5 usable tracks in jet 0, 4 in jet 1
    torch.testing.assert_close(loss, torch.stack(terms).mean())

    # padded inputs and pairs with unknown labels change nothing
    noisy = x.clone()
    noisy[pad] = 1e3
    _, again = task(noisy, {"tracks": {"ftagTruthVertexIndex": vertex}}, pad, context)
    torch.testing.assert_close(again, loss)


def test_vertexing_without_usable_pairs_gives_zero_loss_and_finite_gradient():
    task = vertexing_task()
    vertex = torch.tensor([[3, -1, -1, -1]])
    x = torch.randn(1, 4, 4)
    _, loss = task(x, {"tracks": {"ftagTruthVertexIndex": vertex}}, None, torch.randn(1, 3))
    loss.backward()
    assert loss.item() == 0.0
    assert all(torch.isfinite(p.grad).all() for p in task.parameters())


def test_vertexing_output_is_permutation_equivariant():
    task = vertexing_task()
    x, context = torch.randn(3, 6, 4), torch.randn(3, 3)
    logits, _ = task(x, context=context)
    assert logits.shape == (3, 6, 6)
    assert (logits.diagonal(dim1=1, dim2=2) == 0).all()
    perm = torch.tensor([4, 2, 0, 5, 1, 3])
    permuted, _ = task(x[:, perm], context=context)
    torch.testing.assert_close(permuted, logits[:, perm][:, :, perm])


def planted_logits() -> tuple[torch.Tensor, torch.Tensor]:
    """Tracks {0, 1, 2} linked only as 0-2-1, {3, 4} linked, 5 alone, 6-7 padding.

    1 reaches 0 only through 2, so grouping by direct links alone would split {0, 1, 2}.
    """
    logits = torch.full((1, 8, 8), -4.0)
    for i, j in [(0, 2), (2, 1), (3, 4), (5, 6), (6, 7)]:  # 5-6 and 6-7 touch padding
        logits[0, i, j] = logits[0, j, i] = 4.0
    pad = torch.tensor([[False] * 6 + [True] * 2])
    return logits, pad


def test_vertex_indices_finds_planted_vertices():
    logits, pad = planted_logits()
    assert vertex_indices(logits, pad).tolist() == [[0, 0, 0, 1, 1, 2, -1, -1]]
    # a stricter threshold cuts every link: each real track is its own vertex
    strict = vertex_indices(logits, pad, threshold=0.99)
    assert strict.tolist() == [[0, 1, 2, 3, 4, 5, -1, -1]]


def test_vertex_indices_is_permutation_consistent():
    logits, pad = planted_logits()
    reference = vertex_indices(logits, pad)
    for seed in range(5):
        perm = torch.randperm(8, generator=torch.Generator().manual_seed(seed))
        permuted = vertex_indices(logits[:, perm][:, :, perm], pad[:, perm])
        assert torch.equal(same_vertex(permuted), same_vertex(reference)[:, perm][:, :, perm])
        assert torch.equal(permuted < 0, pad[:, perm])


def shuffled_chain(length: int, seed: int = 0) -> torch.Tensor:
    """(1, L, L) logits linking the tracks in one chain that visits them in a random order."""
    order = torch.randperm(length, generator=torch.Generator().manual_seed(seed))
    chain = torch.full((1, length, length), -5.0)
    chain[0, order[:-1], order[1:]] = chain[0, order[1:], order[:-1]] = 5.0
    return chain


def test_vertex_indices_follows_long_chains_in_a_batch():
    length = 17  # a chain of 17 tracks needs paths of length 16: four squarings
    pairs = torch.full((1, length, length), -5.0)
    idx = torch.arange(0, length - 1, 2)
    pairs[0, idx, idx + 1] = pairs[0, idx + 1, idx] = 5.0
    result = vertex_indices(torch.cat([shuffled_chain(length), pairs]))
    assert result[0].tolist() == [0] * length
    assert result[1].tolist() == [k // 2 for k in range(length)]


def test_vertexing_predict_writes_vertex_index():
    task = vertexing_task()
    logits, pad = planted_logits()
    prediction = task.predict(logits, pad)
    assert list(prediction) == ["vertex_index"]
    assert prediction["vertex_index"].dtype == torch.long
    assert prediction["vertex_index"].tolist() == [[0, 0, 0, 1, 1, 2, -1, -1]]


def test_vertexing_exports_to_onnx_with_a_dynamic_number_of_tracks():
    ort = pytest.importorskip("onnxruntime")
    task = vertexing_task().eval()

    class Exported(nn.Module):
        def __init__(self):
            super().__init__()
            self.task = task

        def forward(self, x, pad, context):
            logits = self.task(x, None, pad, context)[0]
            return logits, self.task.predict(logits, pad)["vertex_index"]

    example = (torch.randn(1, 5, 4), torch.zeros(1, 5, dtype=torch.bool), torch.randn(1, 3))
    axes = {"x": {0: "b", 1: "n"}, "pad": {0: "b", 1: "n"}, "context": {0: "b"}}
    axes |= {"logits": {0: "b", 1: "n", 2: "n"}, "vertex": {0: "b", 1: "n"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Exported(), example, buffer, dynamo=False, opset_version=17,
            input_names=["x", "pad", "context"], output_names=["logits", "vertex"],
            dynamic_axes=axes,
        )  # fmt: skip
    session = ort.InferenceSession(buffer.getvalue())
    # 30 tracks: a traced graph must neither fix L nor the number of squarings to the example's
    x = torch.randn(2, 30, 4).repeat_interleave(10, dim=1)[:, :30]  # runs of identical tracks
    pad = torch.zeros(2, 30, dtype=torch.bool)
    pad[1, 25:] = True
    context = torch.randn(2, 3)
    with torch.no_grad():
        expected = Exported()(x, pad, context)
    got = session.run(None, {"x": x.numpy(), "pad": pad.numpy(), "context": context.numpy()})
    torch.testing.assert_close(torch.from_numpy(got[0]), expected[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(torch.from_numpy(got[1]), expected[1])
    chain = shuffled_chain(40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(lambda logits: vertex_indices(logits), torch.randn(1, 5, 5))
    assert traced(chain).tolist() == [[0] * 40]


# --- regression ---------------------------------------------------------------------------------


def test_regression_ignores_nan_targets_with_finite_gradients():
    torch.manual_seed(0)
    task = RegressionTask("reg", "jets", ["pt", "mass"], {"input_size": 3})
    assert task.label_fields() == {"jets": ["pt", "mass"]}
    assert task.net.output_size == 2
    pt = torch.tensor([1.0, NAN, 3.0, 4.0])
    mass = torch.tensor([NAN, NAN, 0.5, 2.0])
    x = torch.randn(4, 3)
    output, loss = task(x, {"jets": {"pt": pt, "mass": mass}})
    target = torch.stack([pt, mass], -1)
    keep = ~target.isnan()
    torch.testing.assert_close(loss, ((output - target)[keep] ** 2).mean())
    loss.backward()
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in task.parameters())


def test_constituent_regression_uses_context_and_skips_padding():
    torch.manual_seed(0)
    config = {"input_size": 4, "context_size": 2}
    task = RegressionTask("d0", "tracks", "truth_d0", config, loss=nn.L1Loss())
    x, context = torch.randn(2, 5, 4), torch.randn(2, 2)
    pad = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    target = torch.randn(2, 5).masked_fill(pad, -1.0)
    target[1, 2] = NAN
    output, loss = task(x, {"tracks": {"truth_d0": target}}, pad, context)
    assert output.shape == (2, 5, 1)
    keep = ~pad & ~target.isnan()
    torch.testing.assert_close(loss, (output[..., 0] - target)[keep].abs().mean())
    other, _ = task(x, None, pad, torch.randn(2, 2))
    assert not torch.allclose(other, output)  # the jet context enters the head
    prediction = task.predict(output, pad)
    assert prediction["truth_d0"][pad].isnan().all()
    assert prediction["truth_d0"][~pad].isfinite().all()


def test_scaler_is_applied_to_targets_and_inverted_in_predict():
    scaler = {"pt": {"op": "log", "mean": 10.0, "std": 2.0}, "eta": {"mean": 0.5, "std": 4.0}}
    task = RegressionTask("reg", "jets", ["pt", "eta", "frac"], {"input_size": 2}, scaler=scaler)
    raw = torch.tensor([[5e4, -1.0, 0.3], [2e5, 2.0, 0.9]])
    scaled = task.scale(raw)
    expected = torch.stack(
        [(raw[:, 0].log() - 10.0) / 2.0, (raw[:, 1] - 0.5) / 4.0, raw[:, 2]], dim=-1
    )
    torch.testing.assert_close(scaled, expected)
    prediction = task.predict(scaled)  # an output equal to the scaled targets ...
    for k, name in enumerate(["pt", "eta", "frac"]):  # ... reads back as the targets
        torch.testing.assert_close(prediction[name], raw[:, k])
    # the loss is computed in scaled units; log(0) is unusable and left out
    labels = {"jets": {"pt": torch.tensor([0.0, 2e5]), "eta": raw[:, 1], "frac": raw[:, 2]}}
    output, loss = task(torch.randn(2, 2), labels)
    keep = torch.tensor([[False, True, True], [True, True, True]])
    torch.testing.assert_close(loss, ((output - scaled)[keep] ** 2).mean())


def test_gaussian_nll_matches_formula_and_rewards_confident_correct_predictions():
    torch.manual_seed(0)
    task = GaussianRegressionTask("gauss", "jets", ["pt", "mass"], {"input_size": 3})
    assert task.net.output_size == 4
    pt, mass = torch.tensor([1.0, 2.0, NAN]), torch.tensor([0.5, NAN, 1.5])
    output, loss = task(torch.randn(3, 3), {"jets": {"pt": pt, "mass": mass}})
    mean, var = output[:, :2], functional.softplus(output[:, 2:])
    target = torch.stack([pt, mass], -1)
    keep = ~target.isnan()
    by_hand = 0.5 * (var.log() + (target - mean) ** 2 / var)
    torch.testing.assert_close(loss, by_hand[keep].mean())
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in task.parameters())

    def loss_for(raw_variance: float) -> torch.Tensor:
        """A head that outputs exactly the target, 2.0, with the given raw variance."""
        with torch.no_grad():
            task.net.net[-1].weight.zero_()
            task.net.net[-1].bias.copy_(torch.tensor([2.0, 2.0, raw_variance, raw_variance]))
        labels = {"jets": {"pt": torch.full((3,), 2.0), "mass": torch.full((3,), 2.0)}}
        return task(torch.randn(3, 3), labels)[1]

    assert loss_for(-5.0) < loss_for(0.0) < loss_for(5.0)


def test_gaussian_predict_gives_mean_and_sigma_in_file_units():
    scaler = {"pt": {"op": "log", "mean": 1.0, "std": 2.0}, "mass": {"mean": 3.0, "std": 10.0}}
    task = GaussianRegressionTask("g", "jets", ["pt", "mass"], {"input_size": 2}, scaler=scaler)
    mean_z = torch.tensor([[0.5, -1.0]])
    var_z = torch.tensor([[0.04, 0.25]])
    raw = torch.log(torch.expm1(var_z))  # inverse softplus
    prediction = task.predict(torch.cat([mean_z, raw], -1))
    assert set(prediction) == {"pt", "pt_sigma", "mass", "mass_sigma"}
    pt = math.exp(0.5 * 2.0 + 1.0)
    torch.testing.assert_close(prediction["pt"], torch.tensor([pt]))
    torch.testing.assert_close(prediction["pt_sigma"], torch.tensor([pt * 2.0 * 0.2]))
    torch.testing.assert_close(prediction["mass"], torch.tensor([-10.0 + 3.0]))
    torch.testing.assert_close(prediction["mass_sigma"], torch.tensor([10.0 * 0.5]))


# --- classification predict, configuration, training --------------------------------------------


def test_track_origin_classification_predict():
    torch.manual_seed(0)
    names = ["Pileup", "Fake", "Primary", "FromB", "FromBC", "FromC", "FromTau", "OtherSecondary"]
    config = {"input_size": 4, "context_size": 3}
    task = ClassificationTask(
        "track_origin", "tracks", "ftagTruthOriginLabel", config, class_names=names
    )
    pad = torch.tensor([[0, 0, 1]], dtype=torch.bool)
    logits, _ = task(torch.randn(1, 3, 4), None, pad, torch.randn(1, 3))
    prediction = task.predict(logits, pad)
    assert list(prediction) == [f"p{n}" for n in names]
    total = sum(prediction.values())
    torch.testing.assert_close(total[0, :2], torch.ones(2))
    assert total[0, 2].isnan()


@pytest.mark.parametrize(
    ("class_path", "init_args"),
    [
        (
            "salt.tasks.vertexing.VertexingTask",
            {
                "name": "vtx",
                "input_name": "tracks",
                "label": "ftagTruthVertexIndex",
                "dense_config": {"input_size": 4, "context_size": 3, "hidden_layers": [8]},
                "threshold": 0.6,
            },
        ),
        (
            "salt.tasks.regression.RegressionTask",
            {
                "name": "reg",
                "input_name": "jets",
                "targets": ["pt", "mass"],
                "dense_config": {"input_size": 4},
                "loss": {"class_path": "torch.nn.HuberLoss", "init_args": {"delta": 0.5}},
                "scaler": {"pt": {"op": "log", "mean": 11.0, "std": 1.0}},
            },
        ),
        (
            "salt.tasks.regression.GaussianRegressionTask",
            {
                "name": "gauss",
                "input_name": "tracks",
                "targets": "truth_d0",
                "dense_config": {"input_size": 4, "context_size": 3},
                "scaler": {"truth_d0": {"std": 0.1}},
            },
        ),
    ],
)
def test_jsonargparse_builds_tasks(class_path: str, init_args: dict):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--task", type=TaskBase)
    cfg = parser.parse_object({"task": {"class_path": class_path, "init_args": init_args}})
    task = parser.instantiate(cfg).task
    assert type(task).__name__ == class_path.rsplit(".", 1)[1]
    assert task.name == init_args["name"]
    bad = dict(init_args, weight="heavy")
    with pytest.raises(Exception, match="weight"):
        parser.parse_object({"task": {"class_path": class_path, "init_args": bad}})


def test_configuration_errors_are_readable():
    with pytest.raises(ValueError, match="one output"):
        VertexingTask("v", "tracks", "l", {"input_size": 4, "output_size": 2})
    with pytest.raises(ValueError, match="input_size is not set"):
        VertexingTask("v", "tracks", "l", {})
    with pytest.raises(ValueError, match="threshold"):
        VertexingTask("v", "tracks", "l", {"input_size": 4}, threshold=1.0)
    with pytest.raises(ValueError, match=r"scaler has \['eta'\]"):
        RegressionTask("r", "jets", "pt", {"input_size": 2}, scaler={"eta": {"std": 1.0}})
    with pytest.raises(ValueError, match=r"std=0\.0"):
        RegressionTask("r", "jets", "pt", {"input_size": 2}, scaler={"pt": {"std": 0.0}})
    with pytest.raises(ValueError, match="need 4 outputs"):
        GaussianRegressionTask("r", "jets", ["a", "b"], {"input_size": 2, "output_size": 2})
    with pytest.raises(ValueError, match="distinct"):
        RegressionTask("r", "jets", ["a", "a"], {"input_size": 2})
    with pytest.raises(ValueError, match="reduction"):
        RegressionTask("r", "jets", "a", {"input_size": 2}, loss=nn.Identity())


def train(task: nn.Module, make_batch, steps: int = 60) -> tuple[float, float]:
    """First and last loss of a few Adam steps on fresh synthetic batches."""
    optimizer = torch.optim.Adam(task.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = task(*make_batch())[1]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return sum(losses[:5]) / 5, sum(losses[-5:]) / 5


def test_tasks_train_on_synthetic_problems():
    torch.manual_seed(0)
    vertex_task = vertexing_task(width=6, hidden=16)

    def vertex_batch():
        """Tracks whose features carry their vertex's direction plus noise."""
        vertex = torch.randint(0, 3, (32, 8))
        directions = torch.randn(32, 3, 6)
        x = directions.gather(1, vertex[..., None].expand(-1, -1, 6))
        pad = torch.rand(32, 8) < 0.2
        vertex = vertex.masked_fill(pad, -1)
        labels = {"tracks": {"ftagTruthVertexIndex": vertex}}
        return x + 0.1 * torch.randn_like(x), labels, pad, torch.randn(32, 3)

    first, last = train(vertex_task, vertex_batch)
    assert last < 0.6 * first

    weights = torch.randn(4, 2)
    for task in (
        RegressionTask("r", "jets", ["a", "b"], {"input_size": 4, "hidden_layers": [16]}),
        GaussianRegressionTask("g", "jets", ["a", "b"], {"input_size": 4, "hidden_layers": [16]}),
    ):

        def regression_batch():
            x = torch.randn(64, 4)
            y = x @ weights + 0.05 * torch.randn(64, 2)
            y[::7, 0] = NAN
            return x, {"jets": {"a": y[:, 0], "b": y[:, 1]}}

        first, last = train(task, regression_batch)
        assert last < first - 0.3


def test_aux_tasks_run_inside_salt_model():
    torch.manual_seed(0)
    tasks = [
        ClassificationTask("jets_classification", "jets", "flavour_label", {"input_size": 8},
                           class_names=["bjets", "cjets", "ujets"]),
        VertexingTask("vtx", "tracks", "ftagTruthVertexIndex",
                      {"input_size": 8, "context_size": 8, "hidden_layers": [8]}),
        RegressionTask("pt", "jets", "pt", {"input_size": 8}, scaler={"pt": {"op": "log"}}),
        GaussianRegressionTask("d0", "tracks", "truth_d0", {"input_size": 8, "context_size": 8}),
    ]  # fmt: skip
    init = InitNet("tracks", {"input_size": 3, "output_size": 8})
    model = SaltModel([init], tasks, GlobalAttentionPooling(8))
    assert model.label_fields() == {
        "jets": ["flavour_label", "pt"],
        "tracks": ["ftagTruthVertexIndex", "truth_d0"],
    }
    pad = torch.tensor([[0, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.bool)
    labels = {
        "jets": {"flavour_label": torch.tensor([0, 2]), "pt": torch.tensor([3e4, NAN])},
        "tracks": {
            "ftagTruthVertexIndex": torch.tensor([[0, 0, 1, -1], [-1, 2, 2, 2]]),
            "truth_d0": torch.tensor([[0.1, NAN, 0.3, -1.0], [0.2, 0.1, 0.0, 0.5]]),
        },
    }
    outputs, losses = model({"tracks": torch.randn(2, 4, 3)}, {"tracks": pad}, labels)
    assert set(losses) == {t.name for t in tasks}
    assert all(torch.isfinite(loss) for loss in losses.values())
    sum(losses.values()).backward()
    for task in tasks:
        mask = None if task.input_name == "jets" else pad
        for value in task.predict(outputs[task.name].detach(), mask).values():
            assert value.shape == ((2,) if mask is None else (2, 4))
