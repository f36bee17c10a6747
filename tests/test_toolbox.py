"""The training toolbox: focal losses, the loss registry, DisCo, optimizers, warm-up schedules,
early stopping and step timing, checked against hand computations and through ``salt fit``."""

from __future__ import annotations

import csv
import importlib.util
import inspect
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from salt.losses import (
    DisCo,
    MulticlassFocalLoss,
    NamedLoss,
    SigmoidFocalLoss,
    available_losses,
    dcor_squared,
    distance_correlation,
    get_loss,
)
from salt.tasks.classification import ClassificationTask
from salt.training.module import SaltModule
from salt.training.optim import configure_optimization, optimizer_class, parameter_groups
from salt.training.schedulers import (
    AttentionWarmup,
    CosineWarmup,
    LinearWarmup,
    SqrtExpWarmup,
    bind_total_steps,
)
from tests.helpers import demo_fit_args

ROOT = Path(__file__).resolve().parents[1]
TOOLBOX = ROOT / "configs" / "toolbox"
HAS_PYTORCH_OPTIMIZER = importlib.util.find_spec("pytorch_optimizer") is not None
MODULE_ARGS = inspect.signature(SaltModule.__init__).parameters
PATCHED = "regularisers" in MODULE_ARGS and "lr_scheduler_config" in MODULE_ARGS
needs_patch = pytest.mark.skipif(
    not PATCHED, reason="SaltModule has no regularisers / lr_scheduler_config yet"
)


# -- focal losses ---------------------------------------------------------------------------
LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0], [0.0, 0.0, 4.0]])
TARGET = torch.tensor([0, 2, 0, 2])
ALPHA = [0.5, 2.0, 1.0]


def hand_focal(logits: np.ndarray, target: np.ndarray, gamma: float, alpha, eps: float = 0.0):
    """-sum_c q_c alpha_c (1 - p_c)^gamma log p_c per sample, written out with numpy."""
    e = np.exp(logits - logits.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    n, c = p.shape
    a = np.ones(c) if alpha is None else np.asarray(alpha)
    per_sample = np.zeros(n)
    for i in range(n):
        for k in range(c):
            q = (1 - eps) * (k == target[i]) + eps / c
            per_sample[i] -= q * a[k] * (1 - p[i, k]) ** gamma * np.log(p[i, k])
    return per_sample, a[target]


@pytest.mark.parametrize("alpha", [None, ALPHA])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_multiclass_focal_matches_hand_computation(alpha, eps):
    per_sample, alpha_t = hand_focal(LOGITS.numpy(), TARGET.numpy(), 2.0, alpha, eps)
    loss = MulticlassFocalLoss(gamma=2.0, weight=alpha, label_smoothing=eps, reduction="none")
    np.testing.assert_allclose(loss(LOGITS, TARGET).numpy(), per_sample, rtol=1e-5)
    loss.reduction = "sum"
    np.testing.assert_allclose(loss(LOGITS, TARGET).item(), per_sample.sum(), rtol=1e-5)
    loss.reduction = "mean"  # weighted mean, as CrossEntropyLoss
    expected = per_sample.sum() / alpha_t.sum()
    np.testing.assert_allclose(loss(LOGITS, TARGET).item(), expected, rtol=1e-5)


def test_multiclass_focal_is_per_sample():
    # without smoothing: -alpha_t (1 - p_t)^gamma log p_t of each jet, not of the batch mean
    p = torch.softmax(LOGITS, 1)[torch.arange(4), TARGET]
    expected = -torch.tensor(ALPHA)[TARGET] * (1 - p) ** 3 * p.log()
    loss = MulticlassFocalLoss(gamma=3.0, weight=ALPHA, reduction="none")
    torch.testing.assert_close(loss(LOGITS, TARGET), expected)
    easy_over_hard = loss(LOGITS, TARGET)[0] / loss(LOGITS, TARGET)[1]
    ce = nn.CrossEntropyLoss(reduction="none")(LOGITS, TARGET)
    assert easy_over_hard < ce[0] / ce[1]  # confident jets are down-weighted


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weight", [None, ALPHA])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_multiclass_focal_at_gamma_zero_is_cross_entropy(reduction, weight, eps):
    torch.manual_seed(0)
    logits, target = torch.randn(64, 3), torch.randint(0, 3, (64,))
    w = None if weight is None else torch.tensor(weight)
    focal = MulticlassFocalLoss(gamma=0.0, weight=weight, label_smoothing=eps, reduction=reduction)
    ce = nn.CrossEntropyLoss(weight=w, label_smoothing=eps, reduction=reduction)
    torch.testing.assert_close(focal(logits, target), ce(logits, target))


def test_multiclass_focal_ignores_index_and_has_finite_gradients():
    logits = torch.tensor([[30.0, -30.0], [0.0, 1.0], [1.0, 0.0]], requires_grad=True)
    target = torch.tensor([0, -100, 1])
    for gamma in (0.0, 0.5, 2.0):  # p_t == 1 in float32 for the first row
        loss = MulticlassFocalLoss(gamma=gamma)(logits, target)
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(grad).all() and grad[1].abs().sum() == 0
    empty = MulticlassFocalLoss()(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    assert empty.item() == 0.0


def test_sigmoid_focal_matches_hand_computation():
    x = torch.tensor([2.0, -1.0, 0.5, -3.0])
    t = torch.tensor([1.0, 1.0, 0.0, 0.0])
    p = 1 / (1 + np.exp(-x.numpy()))
    pt = np.where(t.numpy() == 1, p, 1 - p)
    at = np.where(t.numpy() == 1, 0.25, 0.75)
    expected = -at * (1 - pt) ** 2 * np.log(pt)
    loss = SigmoidFocalLoss(alpha=0.25, gamma=2.0, reduction="none")
    np.testing.assert_allclose(loss(x, t).numpy(), expected, rtol=1e-5)
    assert SigmoidFocalLoss(alpha=0.25)(x, t).item() == pytest.approx(expected.mean(), rel=1e-5)
    bce = nn.BCEWithLogitsLoss()(x, t)
    torch.testing.assert_close(SigmoidFocalLoss(alpha=None, gamma=0.0)(x, t), bce)


def test_sigmoid_focal_with_class_indices_is_one_vs_rest():
    one_hot = nn.functional.one_hot(TARGET, 3).float()
    elementwise = SigmoidFocalLoss(reduction="none")(LOGITS, one_hot)
    per_jet = SigmoidFocalLoss(reduction="none", weight=ALPHA)(LOGITS, TARGET)
    torch.testing.assert_close(per_jet, elementwise.sum(1) * torch.tensor(ALPHA)[TARGET])


def test_focal_losses_take_class_dict_weights_in_a_task():
    for loss in (MulticlassFocalLoss(), SigmoidFocalLoss(), NamedLoss("multiclass_focal")):
        task = ClassificationTask(
            "jets_classification",
            "jets",
            "flavour_label",
            {"input_size": 4, "hidden_layers": [8]},
            loss=loss,
            class_names=["bjets", "cjets", "ujets"],
        )
        task.set_class_weights(ALPHA)
        torch.testing.assert_close(task.loss.weight, torch.tensor(ALPHA))
        labels = {"jets": {"flavour_label": torch.tensor([0, 1, 2, -1])}}
        _, value = task(torch.randn(4, 4), labels)
        assert value is not None and torch.isfinite(value)
        value.backward()


# -- registry -------------------------------------------------------------------------------
def test_losses_by_name():
    assert isinstance(get_loss("focal"), SigmoidFocalLoss)
    assert isinstance(get_loss("multiclass_focal", gamma=1.0), MulticlassFocalLoss)
    assert isinstance(get_loss("CE", label_smoothing=0.1), nn.CrossEntropyLoss)
    assert isinstance(get_loss("bce"), nn.BCEWithLogitsLoss)
    assert isinstance(get_loss("mse"), nn.MSELoss)
    assert isinstance(get_loss("MulticlassFocalLoss"), MulticlassFocalLoss)
    with pytest.raises(KeyError, match="did you mean 'focal'"):
        get_loss("focall")
    named = NamedLoss("ce", {"reduction": "sum"})
    named.reduction = "none"  # what tasks that mask entries do
    assert named.loss.reduction == "none"
    assert named(LOGITS, TARGET).shape == (4,)


@pytest.mark.skipif(not HAS_PYTORCH_OPTIMIZER, reason="pytorch_optimizer not installed")
def test_pytorch_optimizer_losses_by_name():
    from pytorch_optimizer.loss import LOSS_FUNCTIONS

    assert set(LOSS_FUNCTIONS) <= set(available_losses())
    assert type(get_loss("focalloss")).__name__ == "FocalLoss"


# -- DisCo ----------------------------------------------------------------------------------
def numpy_dcor_squared(x: np.ndarray, y: np.ndarray) -> float:
    """Székely's V-statistic: double-centred distance matrices, written out with numpy."""
    a = np.abs(x[:, None] - x[None, :])
    b = np.abs(y[:, None] - y[None, :])
    big_a = a - a.mean(0, keepdims=True) - a.mean(1, keepdims=True) + a.mean()
    big_b = b - b.mean(0, keepdims=True) - b.mean(1, keepdims=True) + b.mean()
    return float((big_a * big_b).mean() / np.sqrt((big_a**2).mean() * (big_b**2).mean()))


def test_distance_correlation_values():
    rng = np.random.default_rng(3)
    x, noise = rng.normal(size=1000), rng.normal(size=1000)
    t = torch.tensor
    assert dcor_squared(t(x), t(noise)).item() < 0.01  # independent
    square = dcor_squared(t(x), t(x**2)).item()  # uncorrelated, but dependent
    assert abs(np.corrcoef(x, x**2)[0, 1]) < 0.1 and square > 0.2
    assert dcor_squared(t(x), t(3 * x - 1)).item() == pytest.approx(1.0, abs=1e-5)
    small = rng.normal(size=200)
    dependent = small**2 + 0.3 * rng.normal(size=200)
    expected = numpy_dcor_squared(small, dependent)
    assert dcor_squared(t(small), t(dependent)).item() == pytest.approx(expected, rel=1e-4)
    assert distance_correlation(t(small), t(dependent)).item() == pytest.approx(
        math.sqrt(expected), rel=1e-4
    )


def test_weighted_distance_correlation_equals_repeated_samples():
    rng = np.random.default_rng(4)
    x = rng.normal(size=40)
    y = np.abs(x) + 0.5 * rng.normal(size=40)
    w = rng.integers(0, 4, size=40)
    expected = numpy_dcor_squared(np.repeat(x, w), np.repeat(y, w))
    value = dcor_squared(torch.tensor(x), torch.tensor(y), torch.tensor(w, dtype=torch.float))
    assert value.item() == pytest.approx(expected, rel=1e-4)


def test_distance_correlation_gradient():
    x = torch.randn(100, requires_grad=True)
    value = dcor_squared(x, x.detach() ** 2 + 0.1 * torch.randn(100))
    (grad,) = torch.autograd.grad(value, x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # nothing selected: zero, with finite (zero) gradients
    empty = dcor_squared(x, torch.randn(100), torch.zeros(100))
    (grad,) = torch.autograd.grad(empty, x)
    assert empty.item() == 0.0 and torch.isfinite(grad).all()


def _bound_disco(**kwargs) -> DisCo:
    task = ClassificationTask(
        "jets_classification",
        "jets",
        "flavour_label",
        {"input_size": 4},
        class_names=["bjets", "cjets", "ujets"],
    )
    model = nn.Module()
    model.tasks = nn.ModuleList([task])
    model.global_object = "jets"
    disco = DisCo(**kwargs)
    disco.bind(model)
    return disco


def test_disco_penalty_on_the_b_tagging_discriminant():
    disco = _bound_disco(
        variables=["mass"], strength=2.0, fractions={"cjets": 0.2, "ujets": 0.8}, classes=["ujets"]
    )
    assert disco.label_fields() == {"jets": ["mass", "flavour_label"]}
    torch.manual_seed(1)
    logits = torch.randn(300, 3, requires_grad=True)
    flavour = torch.randint(-1, 3, (300,))
    mass = torch.rand(300) * 100
    labels = {"jets": {"mass": mass, "flavour_label": flavour}}
    value = disco({"jets_classification": logits}, labels)
    p = torch.softmax(logits, 1)
    d_b = torch.log(p[:, 0] / (0.2 * p[:, 1] + 0.8 * p[:, 2]))
    light = flavour == 2
    expected = numpy_dcor_squared(d_b[light].detach().double().numpy(), mass[light].numpy())
    assert value.item() == pytest.approx(expected, rel=1e-4)
    value.backward()
    assert logits.grad is not None and logits.grad[~light].abs().sum() == 0
    assert logits.grad[light].abs().sum() > 0


def test_disco_entropy_power_and_class_weights():
    disco = _bound_disco(variables=["mass"], multiclass_reduction="entropy", power=2)
    logits = torch.randn(50, 3)
    p = torch.softmax(logits, 1)
    torch.testing.assert_close(disco.score(logits), -(p * p.log()).sum(1))
    labels = {"jets": {"mass": torch.rand(50), "flavour_label": torch.randint(0, 3, (50,))}}
    plain = dcor_squared(disco.score(logits), labels["jets"]["mass"])
    torch.testing.assert_close(disco({"jets_classification": logits}, labels), plain**2)
    weighted = _bound_disco(variables=["mass"], weighted=True, multiclass_reduction="entropy")
    weighted.task.set_class_weights([1.0, 0.0, 0.0])  # only b-jets count
    b = labels["jets"]["flavour_label"] == 0
    expected = dcor_squared(disco.score(logits)[b], labels["jets"]["mass"][b])
    torch.testing.assert_close(weighted({"jets_classification": logits}, labels), expected)


def test_disco_checks_its_configuration():
    with pytest.raises(ValueError, match="unknown classes"):
        _bound_disco(variables=["mass"], classes=["gluons"])
    with pytest.raises(ValueError, match="no task named"):
        _bound_disco(variables=["mass"], task="nope")
    with pytest.raises(ValueError, match="at least one variable"):
        DisCo(variables=[])


# -- schedulers -----------------------------------------------------------------------------
def lr_curve(scheduler_cls, steps: int, base: float = 0.1, **kwargs) -> list[float]:
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=base)
    scheduler = scheduler_cls(optimizer, **kwargs)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_linear_warmup_curve():
    expected = [0.1 * min(1, (s + 1) / 4) for s in range(8)]
    np.testing.assert_allclose(lr_curve(LinearWarmup, 8, warmup_steps=4), expected)


def test_attention_warmup_curve():
    w = 5
    expected = [0.1 * min((s + 1) / w, math.sqrt(w / (s + 1))) for s in range(20)]
    lrs = lr_curve(AttentionWarmup, 20, warmup_steps=w)
    np.testing.assert_allclose(lrs, expected)
    assert max(lrs) == pytest.approx(0.1) and int(np.argmax(lrs)) == w - 1
    # proportional to the paper's d^-0.5 min(n^-0.5, n w^-1.5)
    paper = [min(n**-0.5, n * w**-1.5) for n in range(1, 21)]
    np.testing.assert_allclose(np.array(lrs) / np.array(paper), lrs[0] / paper[0])


def test_sqrt_exp_warmup_curve():
    lrs = lr_curve(SqrtExpWarmup, 30, warmup_steps=3, decay_start=12)
    expected = [
        0.1 * (1 - math.exp(-(s + 1) / 3)) * math.sqrt(12 / max(12, s + 1)) for s in range(30)
    ]
    np.testing.assert_allclose(lrs, expected)


def test_cosine_warmup_curve_and_total_from_trainer():
    lrs = lr_curve(CosineWarmup, 12, warmup_steps=3, total_steps=10, min_factor=0.1)
    for s in range(3):
        assert lrs[s] == pytest.approx(0.1 * (s + 1) / 3)
    for s in range(3, 10):
        t = (s - 3) / 6
        assert lrs[s] == pytest.approx(0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))))
    assert lrs[9] == lrs[11] == pytest.approx(0.01)
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    scheduler = CosineWarmup(optimizer)  # total_steps left to salt
    bind_total_steps(scheduler, 5)
    seen = []
    for _ in range(5):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(seen, [0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(5)])


def test_schedulers_resume_from_state_dict():
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    scheduler = CosineWarmup(optimizer, warmup_steps=2, total_steps=10)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    optimizer2 = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    resumed = CosineWarmup(optimizer2, warmup_steps=2, total_steps=10)
    resumed.load_state_dict(state)
    optimizer.step()
    scheduler.step()
    optimizer2.step()
    resumed.step()
    assert resumed.get_last_lr() == pytest.approx(scheduler.get_last_lr())


# -- optimizers -----------------------------------------------------------------------------
def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))


def test_parameter_groups_leave_the_optimizer_its_weight_decay():
    groups = parameter_groups(tiny_net(), None)
    assert "weight_decay" not in groups[0] and groups[1]["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in groups[0]["params"])
    assert all(p.ndim == 1 for p in groups[1]["params"])  # biases and the norm's scale/shift
    optimizer = torch.optim.AdamW(groups, lr=1e-3, weight_decay=0.05)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    assert parameter_groups(tiny_net(), 1e-5)[0]["weight_decay"] == 1e-5  # unchanged behaviour


def fake_trainer(steps: int = 40, epochs: int = 4) -> SimpleNamespace:
    return SimpleNamespace(estimated_stepping_batches=steps, max_epochs=epochs)


def test_configure_optimization():
    net, lrs = tiny_net(), {"max": 1e-3, "weight_decay": 1e-5, "initial": 1e-7, "end": 1e-5}
    default = configure_optimization(net, lrs, None, None, None, fake_trainer())
    assert isinstance(default["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.OneCycleLR)
    assert default["lr_scheduler"]["interval"] == "step"
    assert [g["weight_decay"] for g in default["optimizer"].param_groups] == [1e-5, 0.0]

    def sgd(params):
        return torch.optim.SGD(params, lr=0.1, weight_decay=0.01)

    only = configure_optimization(net, lrs, sgd, None, None, fake_trainer())
    assert isinstance(only, torch.optim.SGD)
    assert [g["weight_decay"] for g in only.param_groups] == [0.01, 0.0]

    def plateau(optimizer):
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=1)

    entry = configure_optimization(net, lrs, sgd, plateau, None, fake_trainer())["lr_scheduler"]
    assert entry["interval"] == "epoch" and entry["monitor"] == "val/loss"
    entry = configure_optimization(
        net, lrs, sgd, CosineWarmup, {"interval": "epoch", "frequency": 2}, fake_trainer()
    )["lr_scheduler"]
    assert entry["scheduler"].total_steps == 2  # max_epochs 4 / frequency 2
    entry = configure_optimization(net, lrs, sgd, CosineWarmup, None, fake_trainer())
    assert entry["lr_scheduler"]["scheduler"].total_steps == 40
    with pytest.raises(ValueError, match="interval"):
        configure_optimization(net, lrs, sgd, CosineWarmup, {"interval": "batch"}, fake_trainer())


def test_optimizer_class_by_name():
    assert optimizer_class("AdamW") is torch.optim.AdamW
    if HAS_PYTORCH_OPTIMIZER:
        import pytorch_optimizer

        assert optimizer_class("Lion") is pytorch_optimizer.Lion
        assert optimizer_class("ranger") is pytorch_optimizer.Ranger
    with pytest.raises(KeyError):
        optimizer_class("NoSuchOptimizer")


# -- through salt fit -----------------------------------------------------------------------
def fit_args(demo: Path, root: Path, name: str, *extra: str) -> list[str]:
    return demo_fit_args(
        demo,
        root,
        name,
        *extra,
        configs=("GN2.yaml", "GN2_demo.yaml", "GN2_noaux.yaml"),
        suffix="tb",
    )


def read_metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def last_checkpoint(run: Path) -> dict:
    ckpts = sorted((run / "ckpts").glob("epoch=*.ckpt"))
    return torch.load(ckpts[-1], map_location="cpu", weights_only=False)


@pytest.mark.skipif(not HAS_PYTORCH_OPTIMIZER, reason="pytorch_optimizer not installed")
def test_fit_with_lion_warmup_and_step_timer(demo_dir: Path, tmp_path: Path):
    from salt.cli.main import main

    args = fit_args(
        demo_dir,
        tmp_path,
        "lion",
        "--config",
        str(TOOLBOX / "optimizer_lion.yaml"),
        "--config",
        str(TOOLBOX / "warmup_attention.yaml"),
        "--model.lr_scheduler.init_args.warmup_steps=4",
        '--trainer.callbacks+={"class_path": "salt.callbacks.profiling.StepTimer"}',
    )
    assert main(args) == 0
    run = tmp_path / "lion_tb"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["optimizer"]["class_path"] == "pytorch_optimizer.Lion"
    ckpt = last_checkpoint(run)
    groups = ckpt["optimizer_states"][0]["param_groups"]
    assert "weight_decouple" in groups[0]  # a Lion state
    assert groups[-1]["weight_decay"] == 0.0  # biases and norms are never decayed
    if PATCHED:  # the optimizer's own weight decay reaches the weight matrices
        assert groups[0]["weight_decay"] == pytest.approx(1e-2)
    (sched,) = ckpt["lr_schedulers"]
    steps = sched["last_epoch"]
    assert steps == 6  # 3 steps x 2 epochs
    factor = min((steps + 1) / 4, math.sqrt(4 / (steps + 1)))
    assert groups[0]["lr"] == pytest.approx(1e-4 * factor)
    shares = [float(r["time/data_share"]) for r in read_metrics(run) if r.get("time/data_share")]
    assert len(shares) == 6 and all(0.0 <= s <= 1.0 for s in shares)


def test_fit_stops_early_with_profiling(demo_dir: Path, tmp_path: Path):
    from salt.cli.main import main

    # the shipped fragments, plus one whose min_delta no epoch can beat: stop after epoch 2
    strict = tmp_path / "strict_early_stopping.yaml"
    fragment = yaml.safe_load((TOOLBOX / "early_stopping.yaml").read_text())
    fragment["trainer"]["callbacks+"][0]["init_args"].update(patience=1, min_delta=100.0)
    strict.write_text(yaml.safe_dump(fragment))
    args = fit_args(
        demo_dir,
        tmp_path,
        "early",
        "--config",
        str(TOOLBOX / "profiling.yaml"),
        "--config",
        str(strict),
        "--trainer.max_epochs=5",
    )
    assert main(args) == 0
    run = tmp_path / "early_tb"
    assert len(list((run / "ckpts").glob("epoch=*-val_loss=*.ckpt"))) == 2
    assert yaml.safe_load((run / "metadata.yaml").read_text())["status"] == "finished"
    assert "fit-profile" in " ".join(p.name for p in run.rglob("*profile*"))


def test_toolbox_fragments_parse(capsys):
    from salt.cli.main import main

    fragments = ["focal_loss.yaml", "early_stopping.yaml", "profiling.yaml"]
    if HAS_PYTORCH_OPTIMIZER:
        fragments.append("optimizer_lion.yaml")
    fragments.append("warmup_attention.yaml")
    if PATCHED:  # each replaces the scheduler before it
        fragments += ["plateau.yaml", "reduce_lr_on_epoch.yaml", "disco.yaml", "warmup_cosine.yaml"]
    configs = [a for f in fragments for a in ("--config", str(TOOLBOX / f))]
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(ROOT / "configs" / "GN2.yaml"), *configs, "--print_config"])
    assert info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    callbacks = [c["class_path"] for c in printed["trainer"]["callbacks"]]
    assert callbacks == [  # callbacks+ in each fragment: they add up
        "lightning.pytorch.callbacks.EarlyStopping",
        "salt.callbacks.profiling.StepTimer",
    ]
    tasks = printed["model"]["model"]["init_args"]["tasks"]
    assert tasks[0]["init_args"]["loss"]["class_path"] == "salt.losses.MulticlassFocalLoss"
    if PATCHED:
        assert (
            printed["model"]["lr_scheduler"]["class_path"]
            == "salt.training.schedulers.CosineWarmup"
        )
        assert printed["model"]["regularisers"][0]["init_args"]["strength"] == 1.0


@needs_patch
def test_fit_with_disco_and_cosine_warmup(demo_dir: Path, tmp_path: Path):
    from salt.cli.main import main

    args = fit_args(
        demo_dir,
        tmp_path,
        "disco",
        "--config",
        str(TOOLBOX / "disco.yaml"),
        "--config",
        str(TOOLBOX / "warmup_cosine.yaml"),
        "--model.lr_scheduler.init_args.warmup_steps=2",
    )
    assert main(args) == 0
    run = tmp_path / "disco_tb"
    rows = read_metrics(run)
    disco = [float(r["train/disco"]) for r in rows if r.get("train/disco")]
    assert len(disco) == 6 and all(0.0 <= d <= 1.0 for d in disco)
    assert any(r.get("val/disco") for r in rows)
    (sched,) = last_checkpoint(run)["lr_schedulers"]
    assert sched["total_steps"] == 6  # from the trainer: 3 steps x 2 epochs


@needs_patch
def test_fit_with_plateau_per_epoch(demo_dir: Path, tmp_path: Path):
    from salt.cli.main import main

    args = fit_args(demo_dir, tmp_path, "plateau", "--config", str(TOOLBOX / "plateau.yaml"))
    assert main(args) == 0
    (sched,) = last_checkpoint(tmp_path / "plateau_tb")["lr_schedulers"]
    assert sched["last_epoch"] == 1 and sched["patience"] == 3  # stepped once per epoch
