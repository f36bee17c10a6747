"""Sample mixing (named groups of files, sample weights) and per-jet training weights: chunk
composition, epochs, determinism, sharding, weighted losses, errors and a short ``salt fit``."""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from salt.data.batch import EVENT, EVENT_WEIGHT
from salt.data.datamodule import SaltDataModule
from salt.data.mixing import Mixture, apportion, prefix_counts
from salt.tasks import ClassificationTask, RegressionTask, VertexingTask
from tests.helpers import write_norm_dict, write_tiny_file

HAS_MOTO = bool(importlib.util.find_spec("moto") and importlib.util.find_spec("boto3"))

ROOT = Path(__file__).resolve().parents[1]
TRACK_VARS = ["d0", "z0SinTheta", "numberOfPixelHits"]
# the hand-made files: global row numbers (eventNumber) per file
FILES = {"a1": (0, 300), "a2": (300, 100), "b1": (1000, 200), "c1": (2000, 100)}


@pytest.fixture
def groups(tmp_path: Path) -> dict[str, Path]:
    """Files a1, a2 (group a), b1 (group b), c1 (group c); rows encode a per-file offset."""
    out = {
        name: write_tiny_file(tmp_path / f"{name}.h5", n, first)
        for name, (first, n) in FILES.items()
    }
    out["norm"] = write_norm_dict(tmp_path / "norm.yaml")
    return out


def make_dm(files: dict[str, Path], train_file, **kwargs) -> SaltDataModule:
    options = {
        "train_file": train_file,
        "val_file": train_file,
        "norm_dict": str(files["norm"]),
        "variables": {"jets": ["pt", "eta"], "tracks": TRACK_VARS},
        "batch_size": 100,
        "chunk_size": 100,
        "block_size": 20,
        "num_workers": 0,
    }
    options.update(kwargs)
    dm = SaltDataModule(**options)
    dm.request_labels({"jets": ["eventNumber"]})
    return dm


def ab(files: dict[str, Path]) -> dict[str, list[str]]:
    return {"a": [str(files["a1"]), str(files["a2"])], "b": [str(files["b1"])]}


def file_of(rows: np.ndarray) -> np.ndarray:
    """Which hand-made file each global row number comes from."""
    names = np.array(list(FILES))
    starts = np.array([first for first, _ in FILES.values()])
    return names[np.searchsorted(starts, rows, side="right") - 1]


def epoch_batches(loader) -> list[np.ndarray]:
    """Row numbers of every batch of the loader's next epoch."""
    return [b[2]["jets"]["eventNumber"].numpy() for b in loader]


def counts(rows: np.ndarray) -> dict[str, int]:
    names, n = np.unique(file_of(rows), return_counts=True)
    return dict(zip(names.tolist(), n.tolist()))


# -- the plan ---------------------------------------------------------------------------------
def test_apportion_and_interleaving_are_exact_and_monotone():
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert apportion(266, [Fraction(1), Fraction(3)]) == [67, 199]  # 66.5 / 199.5: tie to first
    assert apportion(7, [0, 5]) == [0, 7]
    # the interleaving is the sort of all rows by (j + 1/2) / m, written out for small sizes
    for sizes in ([3, 5], [1, 2, 3], [4, 0, 4, 1], [6, 6, 6]):
        keys = sorted(
            (Fraction(2 * j + 1, 2 * m), s) for s, m in enumerate(sizes) for j in range(m)
        )
        for position in range(sum(sizes) + 1):
            expected = [sum(1 for _, s in keys[:position] if s == k) for k in range(len(sizes))]
            assert prefix_counts(position, sizes) == expected
    sizes = [300, 100, 7, 0]
    previous = [0] * len(sizes)
    for position in range(sum(sizes) + 1):
        now = prefix_counts(position, sizes)
        assert sum(now) == position
        assert all(0 <= p <= n <= m for p, n, m in zip(previous, now, sizes))
        for n, m in zip(now, sizes):  # every prefix holds each stratum's share to within a row
            assert abs(n - position * m / sum(sizes)) <= 1.5
        previous = now


def test_mixture_quotas_default_and_weighted():
    mix = Mixture.build({"a": [300, 100], "b": [200]})
    assert [s.quota for s in mix.strata] == [300, 100, 200] and mix.num_rows == 600
    # b is 3/4 of every epoch: it runs out first, at 200 / (3/4) = 266 rows per epoch
    mix = Mixture.build({"a": [300, 100], "b": [200]}, {"a": 1.0, "b": 3.0})
    assert mix.group_quotas == {"a": 67, "b": 199} and mix.num_rows == 266
    assert [s.quota for s in mix.strata] == [50, 17, 199]  # a's files by their rows
    # weights proportional to the rows, written as decimals: every row is used
    mix = Mixture.build({"a": [600], "b": [400]}, {"a": 0.6, "b": 0.4})
    assert mix.num_rows == 1000
    assert Mixture.build({"a": [300, 100], "b": [200]}, {"a": 1, "b": 3}, 100).num_rows == 100


# -- through the datamodule -------------------------------------------------------------------
def test_every_chunk_draws_every_file_of_every_group_in_proportion(groups):
    dm = make_dm(groups, ab(groups))
    dm.setup("fit")
    # batch_size == chunk_size: every batch is a whole chunk
    batches = epoch_batches(dm.train_dataloader())
    assert len(batches) == 6
    for rows in batches:  # 300 : 100 : 200 rows -> 50 : 16.7 : 33.3 per chunk of 100
        c = counts(rows)
        assert c["a1"] == 50 and c["a2"] in (16, 17) and c["b1"] in (33, 34)
        assert np.any(np.diff(rows) != 1)  # shuffled inside the chunk
    rows = np.concatenate(batches)
    expected = [r for first, n in list(FILES.values())[:3] for r in range(first, first + n)]
    assert sorted(rows.tolist()) == expected  # proportional: every row once per epoch


def test_sample_weights_set_the_shares_and_the_epoch_ends_when_a_group_runs_out(groups):
    dm = make_dm(
        groups, ab(groups), sample_weights={"a": 1.0, "b": 3.0}, batch_size=50, chunk_size=50
    )
    dm.setup("fit")
    assert dm.datasets["train"].num_rows == 266  # b (200 rows) at 3/4: 200 * 4 / 3
    loader = dm.train_dataloader()
    epochs = [epoch_batches(loader) for _ in range(2)]
    for batches in epochs:
        for rows in batches[:-1]:  # full chunks of 50: 37.5 from b
            c = counts(rows)
            assert abs(c["b1"] - 37.5) <= 1 and abs(c.get("a1", 0) + c.get("a2", 0) - 12.5) <= 1
        rows = np.concatenate(batches)
        assert len(rows) == len(set(rows.tolist())) == 266  # no row twice in an epoch
        assert counts(rows) == {"a1": 50, "a2": 17, "b1": 199}
    # a's subset changes between epochs (its blocks are permuted anew)
    a_rows = [set(r for r in np.concatenate(b).tolist() if r < 1000) for b in epochs]
    assert a_rows[0] != a_rows[1]


def test_three_groups_and_globs(groups, tmp_path: Path):
    spec = {"a": str(tmp_path / "a*.h5"), "b": str(groups["b1"]), "c": [str(groups["c1"])]}
    dm = make_dm(groups, spec, sample_weights={"a": 2, "b": 1, "c": 1}, num_train=200)
    dm.setup("fit")
    for rows in epoch_batches(dm.train_dataloader()):
        c = counts(rows)
        assert c["a1"] + c["a2"] == 50 and c["b1"] == 25 and c["c1"] == 25


def test_same_seed_same_order_new_epoch_new_order(groups):
    runs = []
    for _ in range(2):
        dm = make_dm(groups, ab(groups), seed=7)
        dm.setup("fit")
        loader = dm.train_dataloader()
        runs.append([np.concatenate(epoch_batches(loader)) for _ in range(2)])
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0], runs[0][1])
    other = make_dm(groups, ab(groups), seed=8)
    other.setup("fit")
    assert not np.array_equal(np.concatenate(epoch_batches(other.train_dataloader())), runs[0][0])


@pytest.mark.parametrize("weights", [None, {"a": 1.0, "b": 3.0}])
def test_two_ranks_get_disjoint_rows_and_equal_steps(groups, weights):
    dm = make_dm(groups, ab(groups), sample_weights=weights, batch_size=40, chunk_size=80)
    dm.setup("fit")
    dataset = dm.datasets["train"]
    seen, steps = [], []
    for rank in range(2):
        dataset.set_distributed(rank, 2)
        batches = [b[2]["jets"]["eventNumber"].numpy() for b in iter(dataset)]
        assert len(batches) == len(dataset)
        steps.append(len(batches))
        seen.append(np.concatenate(batches))
    assert steps[0] == steps[1]
    assert not set(seen[0].tolist()) & set(seen[1].tolist())
    assert len(seen[0]) + len(seen[1]) == dataset.num_rows
    for rows in seen:  # each rank holds its share of every file
        assert set(counts(rows)) == {"a1", "a2", "b1"}


def test_grouped_validation_is_mixed_and_the_same_every_epoch(groups):
    dm = make_dm(groups, ab(groups), num_val=300, num_workers=2)
    dm.setup("fit")
    loader = dm.val_dataloader()
    first, second = epoch_batches(loader), epoch_batches(loader)
    assert [r.tolist() for r in first] == [r.tolist() for r in second]
    rows = np.concatenate(first)
    assert counts(rows) == {"a1": 150, "a2": 50, "b1": 100}
    assert all(len(counts(r)) == 3 for r in first)
    # unshuffled: each file's first rows, in order
    assert sorted(r for r in rows.tolist() if r < 300) == list(range(150))


def test_grouped_test_file_is_read_in_file_order(groups):
    dm = make_dm(groups, ab(groups), test_file=ab(groups))
    dm.setup("test")
    rows = np.concatenate([b[2]["jets"]["eventNumber"].numpy() for b in dm.test_dataloader()])
    assert rows.tolist() == [*range(0, 400), *range(1000, 1200)]


def test_label_values_first_file_and_class_names_with_groups(groups):
    dm = make_dm(groups, ab(groups))
    assert dm.first_file() == groups["a1"]
    assert dm.class_names("jets", "flavour_label") == ["bjets", "cjets", "ujets"]
    assert dm.label_values("jets", "eventNumber", max_rows=30).tolist() == [
        *range(10),
        *range(300, 310),
        *range(1000, 1010),
    ]


# -- per-jet weights --------------------------------------------------------------------------
def add_weights(path: Path, weights: np.ndarray, field: str = "weight") -> Path:
    """Rewrite the jets of a tiny file with an extra float field."""
    with h5py.File(path, "r+") as h5:
        jets = h5["jets"][:]
        attrs = dict(h5["jets"].attrs)
        dtype = np.dtype([*jets.dtype.descr, (field, "<f4")])
        out = np.zeros(len(jets), dtype=dtype)
        for name in jets.dtype.names:
            out[name] = jets[name]
        out[field] = weights
        del h5["jets"]
        ds = h5.create_dataset("jets", data=out)
        ds.attrs.update(attrs)
    return path


def test_weight_field_is_read_into_the_labels(groups):
    for name, (first, n) in list(FILES.items())[:3]:
        add_weights(groups[name], 1.0 + (np.arange(first, first + n) % 4))
    dm = make_dm(groups, ab(groups), weight_field="weight", test_file=str(groups["a1"]))
    dm.setup("fit")
    for _, _, labels in dm.train_dataloader():
        rows = labels["jets"]["eventNumber"].numpy()
        weights = labels[EVENT][EVENT_WEIGHT]
        assert weights.dtype == torch.float32
        np.testing.assert_array_equal(weights.numpy(), 1.0 + rows % 4)
    dm.setup("test")  # no weights for salt test
    assert EVENT not in next(iter(dm.test_dataloader()))[2]


def hand_ce(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, target[..., None], -1)[..., 0]


def test_weighted_classification_loss_matches_hand_computation():
    torch.manual_seed(0)
    task = ClassificationTask(
        "flavour", "jets", "flavour_label", {"input_size": 4}, class_names=["b", "c", "u"]
    )
    x = torch.randn(6, 4)
    target = torch.tensor([0, 2, 1, -1, 2, 0])
    w = torch.tensor([1.0, 2.0, 0.5, 9.0, 3.0, 0.0])
    labels = {"jets": {"flavour_label": target}, EVENT: {EVENT_WEIGHT: w}}
    logits, loss = task(x, labels)
    keep = target.numpy() >= 0
    per = hand_ce(logits.detach().numpy()[keep], target.numpy()[keep])
    expected = (w.numpy()[keep] * per).sum() / w.numpy()[keep].sum()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # with class weights: sum w_i c_i l_i / sum w_i c_i
    task.set_class_weights([2.0, 1.0, 0.5])
    _, loss = task(x, labels)
    c = np.array([2.0, 1.0, 0.5])[target.numpy()[keep]]
    expected = (w.numpy()[keep] * c * per).sum() / (w.numpy()[keep] * c).sum()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # unit weights reproduce the unweighted loss (CrossEntropyLoss's weighted mean) exactly
    ones = {"jets": {"flavour_label": target}, EVENT: {EVENT_WEIGHT: torch.ones(6)}}
    torch.testing.assert_close(task(x, ones)[1], task(x, {"jets": {"flavour_label": target}})[1])
    assert task.loss.reduction == "mean"  # restored after the per-sample call


def test_weighted_ignore_index_and_sum_reduction():
    torch.manual_seed(1)
    loss = nn.CrossEntropyLoss(ignore_index=1, reduction="sum")
    task = ClassificationTask(
        "flavour", "jets", "flavour_label", {"input_size": 3}, loss, class_names=["b", "c", "u"]
    )
    x = torch.randn(4, 3)
    target = torch.tensor([0, 1, 2, 2])
    w = torch.tensor([2.0, 5.0, 1.0, 3.0])
    logits, value = task(x, {"jets": {"flavour_label": target}, EVENT: {EVENT_WEIGHT: w}})
    per = hand_ce(logits.detach().numpy(), target.numpy())
    keep = target.numpy() != 1
    assert value.item() == pytest.approx((w.numpy() * per)[keep].sum(), rel=1e-5)


def test_constituent_tasks_take_their_jets_weight():
    torch.manual_seed(2)
    origin = ClassificationTask(
        "origin",
        "tracks",
        "ftagTruthOriginLabel",
        {"input_size": 4, "context_size": 2},
        class_names=["x", "y"],
    )
    x, context = torch.randn(2, 3, 4), torch.randn(2, 2)
    target = torch.tensor([[0, 1, -1], [1, 1, 0]])
    pad = torch.tensor([[False, False, True], [False, False, False]])
    w = torch.tensor([3.0, 1.0])
    labels = {"tracks": {"ftagTruthOriginLabel": target}, EVENT: {EVENT_WEIGHT: w}}
    logits, loss = origin(x, labels, pad_mask=pad, context=context)
    per = hand_ce(logits.detach().numpy(), target.clamp(min=0).numpy())
    jet_w = np.array([[3.0, 3.0, 0.0], [1.0, 1.0, 1.0]])
    assert loss.item() == pytest.approx((jet_w * per).sum() / jet_w.sum(), rel=1e-5)

    vertexing = VertexingTask("vtx", "tracks", "vtx", {"input_size": 4, "hidden_layers": [8]})
    vertex = torch.tensor([[0, 0, 1], [0, 1, 1]])
    labels = {"tracks": {"vtx": vertex}, EVENT: {EVENT_WEIGHT: w}}
    pair_logits, loss = vertexing(x, labels)
    same = (vertex[:, :, None] == vertex[:, None, :]).float()
    bce = nn.functional.binary_cross_entropy_with_logits(pair_logits, same, reduction="none")
    off = ~torch.eye(3, dtype=torch.bool)
    per_jet = (bce * off).sum((1, 2))  # 6 pairs per jet
    expected = (w * per_jet).sum() / (6 * w.sum())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_weighted_regression_loss_matches_hand_computation():
    torch.manual_seed(3)
    task = RegressionTask("pt", "jets", ["pt", "eta"], {"input_size": 3})
    x = torch.randn(4, 3)
    pt = torch.tensor([1.0, float("nan"), 3.0, 4.0])
    eta = torch.tensor([0.5, 1.0, -1.0, 0.0])
    w = torch.tensor([1.0, 2.0, 3.0, 0.5])
    labels = {"jets": {"pt": pt, "eta": eta}, EVENT: {EVENT_WEIGHT: w}}
    out, loss = task(x, labels)
    sq = (out.detach() - torch.stack([pt, eta], -1)) ** 2
    usable = torch.isfinite(sq)
    ww = w[:, None].expand_as(sq) * usable
    expected = (torch.where(usable, sq, 0.0) * ww).sum() / ww.sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


# -- errors: one line naming the key ----------------------------------------------------------
def one_line_error(build, *types: type[Exception]) -> str:
    with pytest.raises(types or (ValueError,)) as info:
        build()
    message = str(info.value).strip("'\"")
    assert "\n" not in message
    return message


def test_bad_mixing_configs(groups, tmp_path: Path):
    spec = ab(groups)

    def fit(**kwargs):
        return lambda: make_dm(groups, kwargs.pop("train_file", spec), **kwargs).setup("fit")

    msg = one_line_error(fit(sample_weights={"a": 1.0, "ttbar": 1.0}))
    assert "sample_weights" in msg and "'ttbar'" in msg and "a, b" in msg
    msg = one_line_error(fit(sample_weights={"a": 1.0, "b": 0.0}))
    assert "sample_weights.b=0.0" in msg and "positive" in msg
    msg = one_line_error(fit(sample_weights={"a": -1.0, "b": 1.0}))
    assert "sample_weights.a=-1.0" in msg
    msg = one_line_error(fit(sample_weights={"a": 1.0}))
    assert "no weight for group 'b'" in msg
    msg = one_line_error(fit(train_file={**spec, "c": []}))
    assert "train_file.c" in msg and "empty group" in msg
    empty = write_tiny_file(tmp_path / "empty.h5", 0)
    msg = one_line_error(fit(train_file={**spec, "c": str(empty)}))
    assert "train_file.c" in msg and "no rows" in msg
    msg = one_line_error(fit(train_file=str(groups["a1"]), sample_weights={"a": 1.0}))
    assert "sample_weights" in msg and "groups" in msg
    msg = one_line_error(fit(train_file={"a": spec["a"], "b": spec["a"][:1]}))
    assert "a1.h5" in msg and "groups 'a' and 'b'" in msg
    msg = one_line_error(fit(sample_weights={"a": 1.0, "b": 3.0}, num_train=300))
    assert "num_train=300" in msg and "266" in msg and "'b'" in msg
    msg = one_line_error(fit(num_train=601))
    assert "num_train=601" in msg and "600 rows" in msg
    msg = one_line_error(fit(train_file={"a": str(tmp_path / "zz_*.h5")}), FileNotFoundError)
    assert "train_file.a" in msg and "matches no file" in msg


def test_missing_weight_field_names_file_dataset_and_field(groups):
    add_weights(groups["a1"], np.ones(300))
    for missing in ("a2", "b1"):  # every file is checked, not only the first of a group
        dm = make_dm(groups, ab(groups), weight_field="weight")
        msg = one_line_error(partial(dm.setup, "fit"), KeyError)
        assert f"{missing}.h5" in msg and "weight field 'weight'" in msg and "'jets'" in msg
        assert "data.weight_field" in msg
        add_weights(groups[missing], np.full(FILES[missing][1], np.nan))
    dm = make_dm(groups, ab(groups), weight_field="weight")
    dm.setup("fit")
    msg = one_line_error(lambda: list(dm.train_dataloader()))
    assert "non-finite weight" in msg and "jets.weight" in msg


# -- S3 ----------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAS_MOTO, reason="moto not installed")
def test_groups_on_s3_are_downloaded_and_saved_group_by_group(s3):
    from salt.s3.cli import S3Session, download_data

    for name in ("ttbar_1.h5", "ttbar_2.h5", "zprime.h5"):
        s3.put(f"procs/{name}", name.encode())
    remote = {"ttbar": f"s3://{s3.bucket}/procs/ttbar_*.h5", "zprime": "procs/zprime.h5"}
    data = {"train_file": remote, "config_S3": s3.server.config(s3.bucket)}
    local, _ = download_data({"data": data})
    cache = s3.tmp / "cache" / s3.bucket / "procs"
    assert local["data"]["train_file"] == {
        "ttbar": [str(cache / "ttbar_1.h5"), str(cache / "ttbar_2.h5")],
        "zprime": str(cache / "zprime.h5"),
    }
    assert (cache / "ttbar_2.h5").read_bytes() == b"ttbar_2.h5"
    # a saved config points at the URLs again, group by group
    session = S3Session(s3.settings())
    items, values = session.plan_data({"train_file": remote}, ["train_file"])
    session.download(items)
    saved = {"data": {"train_file": values["train_file"]}, "model": {}, "trainer": {}}
    session.restore_saved(saved)
    assert saved["data"]["train_file"] == {
        "ttbar": [f"s3://{s3.bucket}/procs/ttbar_1.h5", f"s3://{s3.bucket}/procs/ttbar_2.h5"],
        "zprime": f"s3://{s3.bucket}/procs/zprime.h5",
    }


# -- salt fit ---------------------------------------------------------------------------------
def test_fit_with_the_sample_mixing_fragment(tmp_path: Path):
    from salt.cli.main import main
    from salt.data.demo import generate_demo_data
    from salt.data.demo_processes import write_process_files

    demo = tmp_path / "demo"
    generate_demo_data(demo, n_train=500, n_val=300, n_test=100, seed=3, block_size=500)
    write_process_files(demo)
    train = {p: str(demo / f"train_{p}.h5") for p in ("ttbar", "zprime")}
    val = {p: str(demo / f"val_{p}.h5") for p in ("ttbar", "zprime")}
    args = [
        "fit",
        "--config",
        str(ROOT / "configs" / "GN2.yaml"),
        "--config",
        str(ROOT / "configs" / "GN2_demo.yaml"),
        "--config",
        str(ROOT / "configs" / "toolbox" / "sample_mixing.yaml"),
        f"--data.train_file={train}",
        f"--data.val_file={val}",
        f"--data.test_file={demo / 'test.h5'}",
        f"--data.norm_dict={demo / 'norm_dict.yaml'}",
        f"--data.class_dict={demo / 'class_dict.yaml'}",
        "--data.num_inputs={tracks: 8}",
        "--data.batch_size=100",
        "--data.num_workers=0",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path / 'runs'}",
        "--log_suffix=mix",
        "-n",
        "mixing",
    ]
    assert main(args) == 0
    run = tmp_path / "runs" / "mixing_mix"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["train_file"] == {p: str(Path(f).resolve()) for p, f in train.items()}
    assert saved["data"]["sample_weights"] == {"ttbar": 0.7, "zprime": 0.3}
    metadata = yaml.safe_load((run / "metadata.yaml").read_text())
    assert set(metadata["data"]["train_file"]) == {"ttbar", "zprime"}
    with h5py.File(train["zprime"]) as h5:
        zprime_rows = len(h5["jets"])
    assert metadata["num_rows"]["train"] == int(zprime_rows / 0.3)  # zprime runs out first
    assert list((run / "ckpts").glob("epoch=000-*.ckpt"))
