"""The data layer: reading options, batch layout, sharding, normalisation and bad input."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from salt.data.datamodule import SaltDataModule
from salt.data.normalisation import Normaliser, load_norm_dict
from salt.data.plan import batches_per_rank, ordered_batches, plan_rank
from tests.helpers import CLASS_NAMES, TRACK_VARS, event_numbers, make_dm, write_tiny_file


def all_batches(dm: SaltDataModule, split: str = "train") -> list:
    dm.setup("fit" if split in ("train", "val") else "test")
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}
    return list(loader[split]())


def test_batch_layout_values_masks_and_labels(tiny_files):
    dm = make_dm(tiny_files)
    dm.request_labels(
        {"jets": ["eventNumber", "flavour_label"], "tracks": ["ftagTruthOriginLabel"]}
    )
    batches = all_batches(dm)
    inputs, masks, labels = batches[0]
    assert inputs["jets"].shape == (50, 2) and inputs["jets"].dtype == torch.float32
    assert inputs["tracks"].shape == (50, 6, 3) and inputs["tracks"].dtype == torch.float32
    assert masks["tracks"].dtype == torch.bool and set(masks) == {"tracks"}
    assert labels["jets"]["flavour_label"].dtype == torch.int64
    assert labels["tracks"]["ftagTruthOriginLabel"].dtype == torch.int64
    rows = labels["jets"]["eventNumber"].numpy()
    # values follow the hand-made encoding: pt = 10 * row, (row % 5) + 1 valid tracks
    np.testing.assert_allclose(inputs["jets"][:, 0].numpy(), 10.0 * rows)
    n_valid = (~masks["tracks"]).sum(1).numpy()
    np.testing.assert_array_equal(n_valid, rows % 5 + 1)
    d0 = inputs["tracks"][..., 0].numpy()
    np.testing.assert_allclose(d0[:, 0], rows, rtol=1e-6)
    # padded entries are zero in every variable
    assert torch.all(inputs["tracks"][masks["tracks"]] == 0)
    assert torch.all(labels["tracks"]["ftagTruthOriginLabel"][masks["tracks"]] == -1)


def test_variable_subset_input_map_and_num_inputs(tiny_files):
    dm = make_dm(
        tiny_files,
        variables={"jets": ["eta"], "trk": ["z0SinTheta"]},
        input_map={"trk": "tracks"},
        num_inputs={"trk": 3},
    )
    inputs, masks, _ = all_batches(dm)[0]
    assert inputs["jets"].shape == (50, 1)
    assert inputs["trk"].shape == (50, 3, 1) and masks["trk"].shape == (50, 3)
    assert set(inputs["trk"][~masks["trk"]].flatten().tolist()) == {2.0}


def test_global_and_parameters_groups_lowercase(tiny_files):
    dm = make_dm(
        tiny_files,
        variables={"jets": ["pt"], "tracks": ["d0"], "global": ["eta"], "parameters": ["mass"]},
    )
    inputs, _, _ = all_batches(dm)[0]
    assert inputs["GLOBAL"].shape == (50, 1) and inputs["PARAMETERS"].shape == (50, 1)
    assert torch.all(inputs["PARAMETERS"] == 1.0)


def test_num_rows_globs_and_several_files(tiny_files, tmp_path: Path):
    glob = str(tmp_path / "train_*.h5")
    dm = make_dm(tiny_files, train_file=glob, val_file=[str(tiny_files["train_b"])])
    dm.request_labels({"jets": ["eventNumber"]})
    seen = event_numbers(all_batches(dm))
    assert sorted(seen.tolist()) == list(range(500))  # both files, each row exactly once
    dm = make_dm(tiny_files, train_file=glob, num_train=321)
    dm.request_labels({"jets": ["eventNumber"]})
    assert sorted(event_numbers(all_batches(dm)).tolist()) == list(range(321))


def test_every_row_once_per_epoch_with_workers_and_new_order_each_epoch(tiny_files):
    dm = make_dm(tiny_files, num_workers=2, persistent_workers=True)
    dm.request_labels({"jets": ["eventNumber"]})
    dm.setup("fit")
    loader = dm.train_dataloader()
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == len(loader)
        seen = event_numbers(batches)
        assert sorted(seen.tolist()) == list(range(300))
        epochs.append(seen)
    assert not np.array_equal(epochs[0], epochs[1])
    # shuffled inside the chunk: a batch is not one contiguous run of rows
    assert np.any(np.diff(epochs[0][:50]) != 1)


@pytest.mark.parametrize("num_rows", [300, 301, 250, 99, 500])
def test_two_ranks_share_rows_exactly_once_with_equal_steps(tiny_files, tmp_path, num_rows):
    dm = make_dm(tiny_files, train_file=str(tmp_path / "train_*.h5"), num_train=num_rows)
    dm.request_labels({"jets": ["eventNumber"]})
    dm.setup("fit")
    dataset = dm.datasets["train"]
    seen, steps = [], []
    for rank in range(2):
        dataset.set_distributed(rank, 2)
        batches = list(iter(dataset))
        steps.append(len(batches))
        assert len(batches) == len(dataset)
        seen.append(event_numbers(batches))
    assert steps[0] == steps[1]
    assert sorted(np.concatenate(seen).tolist()) == list(range(num_rows))


def test_evaluation_order_is_file_order_with_workers(tiny_files):
    dm = make_dm(tiny_files, test_file=str(tiny_files["train_a"]), num_workers=2)
    dm.request_labels({"jets": ["eventNumber"]})
    assert event_numbers(all_batches(dm, "test")).tolist() == list(range(300))


def test_plan_invariants():
    for num_rows in (1, 7, 999, 1000, 1001, 4321):
        for world in (1, 2, 3):
            if num_rows < world:
                continue
            target = batches_per_rank(num_rows, world, 100)
            rows = []
            for rank in range(world):
                # every rank draws the same block order from the shared (seed, epoch)
                rng = np.random.default_rng([7, num_rows])
                loads = plan_rank(num_rows, 100, 300, 70, world, rank, rng)
                assert sum(len(load.batch_sizes) for load in loads) == target
                assert all(0 < s <= 100 for load in loads for s in load.batch_sizes)
                for load in loads:
                    assert sum(load.batch_sizes) == load.num_rows
                    rows += [r for a, b in load.segments for r in range(a, b)]
                assert len(ordered_batches(num_rows, 100, world, rank)) == target
            assert sorted(rows) == list(range(num_rows))


def test_class_names_from_attribute(tiny_files):
    assert make_dm(tiny_files).class_names("jets", "flavour_label") == CLASS_NAMES
    assert make_dm(tiny_files).class_names("jets", "eventNumber") is None


def test_normaliser_matches_hand_computation(tiny_files):
    norm = load_norm_dict(tiny_files["norm"])
    normaliser = Normaliser(
        norm, {"jets": ["pt", "eta"], "tracks": TRACK_VARS}, {"jets": "jets", "tracks": "tracks"}
    )
    jets = torch.tensor([[150.0, 0.25]])
    tracks = torch.tensor([[[3.0, 4.5, 4.0], [0.0, 0.0, 0.0]]])
    mask = torch.tensor([[False, True]])
    out = normaliser({"jets": jets, "tracks": tracks}, {"tracks": mask})
    torch.testing.assert_close(out["jets"], torch.tensor([[1.0, 0.5]]))
    torch.testing.assert_close(out["tracks"][0, 0], torch.tensor([1.0, 1.0, 1.0]))
    assert torch.all(out["tracks"][0, 1] == 0)  # padding stays zero
    assert "mean_tracks" in normaliser.state_dict()  # travels in checkpoints


def test_ftag_mock_file_reads_unchanged(tmp_path: Path):
    from ftag import get_mock_file

    path, handle = get_mock_file(num_jets=400, fname=str(tmp_path / "mock.h5"))
    handle.close()
    dm = SaltDataModule(
        train_file=path,
        val_file=path,
        norm_dict="unused.yaml",
        variables={"jets": ["pt_btagJes", "eta_btagJes"], "tracks": [*TRACK_VARS, "leptonID"]},
        batch_size=100,
    )
    dm.request_labels({"jets": ["HadronConeExclTruthLabelID"]})
    batches = all_batches(dm)
    assert sum(b[0]["jets"].shape[0] for b in batches) == 400
    inputs, masks, labels = batches[0]
    assert inputs["tracks"].shape == (100, 40, 4)
    assert torch.all(inputs["tracks"][masks["tracks"]] == 0)
    assert set(labels["jets"]["HadronConeExclTruthLabelID"].unique().tolist()) <= {0, 4, 5, 15}


# -- bad input: one line naming the file / dataset / variable -----------------------------------
def _error(dm_kwargs, files, split="train"):
    with pytest.raises((FileNotFoundError, KeyError, ValueError, TypeError)) as info:
        dm = make_dm(files, **dm_kwargs)
        dm.setup("fit")
    message = str(info.value).strip("'\"")
    assert "\n" not in message
    return message


def test_bad_input_messages(tiny_files, tmp_path: Path):
    msg = _error({"train_file": str(tmp_path / "nope.h5")}, tiny_files)
    assert "nope.h5" in msg and "does not exist" in msg
    msg = _error({"train_file": str(tmp_path / "zz_*.h5")}, tiny_files)
    assert "matches no file" in msg
    msg = _error({"variables": {"jets": ["pt"], "hits": ["x"]}}, tiny_files)
    assert "'hits' not found" in msg and "train_a.h5" in msg
    msg = _error({"variables": {"jets": ["pt", "bogus"], "tracks": ["d0"]}}, tiny_files)
    assert "'bogus'" in msg and "'jets'" in msg
    msg = _error({"num_inputs": {"electrons": 3}}, tiny_files)
    assert "num_inputs" in msg and "electrons" in msg
    msg = _error({"num_train": 10_000}, tiny_files)
    assert "num_train=10000" in msg and "300 rows" in msg
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"not an hdf5 file at all")
    msg = _error({"train_file": str(broken)}, tiny_files)
    assert "broken.h5" in msg and "HDF5" in msg


def test_norm_dict_errors(tiny_files, tmp_path: Path):
    norm = load_norm_dict(tiny_files["norm"])
    datasets = {"jets": "jets", "tracks": "tracks"}
    with pytest.raises(KeyError, match=r"jets\.mass"):
        Normaliser(norm, {"jets": ["mass"]}, datasets)
    norm["tracks"]["d0"]["std"] = 0.0
    with pytest.raises(ValueError, match=r"tracks.d0.*std > 0"):
        Normaliser(norm, {"tracks": ["d0"]}, datasets)
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        load_norm_dict(tmp_path / "missing.yaml")


def test_non_finite_input_names_row_and_variable(tmp_path: Path, tiny_files):
    path = write_tiny_file(tmp_path / "nan.h5", 120)
    with h5py.File(path, "r+") as h5:
        jets = h5["jets"][:]
        jets["eta"][77] = np.nan
        h5["jets"][...] = jets
    dm = make_dm(tiny_files, train_file=str(path))
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"jets\.eta' at row 77"):
        list(dm.train_dataloader())


def test_string_field_as_input_is_refused(tmp_path: Path, tiny_files):
    path = tmp_path / "str.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("jets", data=np.zeros(10, dtype=[("pt", "f4"), ("name", "S4")]))
        h5.create_dataset("tracks", data=np.zeros((10, 2), dtype=[("d0", "f4"), ("valid", "?")]))
    msg = _error(
        {"train_file": str(path), "variables": {"jets": ["name"], "tracks": ["d0"]}}, tiny_files
    )
    assert "jets.name" in msg and "numeric" in msg


def test_norm_dict_yaml_roundtrip(tmp_path: Path):
    path = tmp_path / "n.yaml"
    path.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ValueError, match="must map"):
        load_norm_dict(path)
