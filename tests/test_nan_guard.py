"""The NaN guard names the cause of a non-finite loss from the batch where it appeared: missing
constituents, a non-finite or huge normalised input, and only otherwise the learning rate."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import h5py
import pytest
import torch

from salt.callbacks.nan_guard import NaNLossGuard, NonFiniteLossError
from salt.data.normalisation import Normaliser

NORM = {
    "jets": {"pt": {"mean": 50.0, "std": 10.0}, "eta": {"mean": 0.0, "std": 1.0}},
    "tracks": {"d0": {"mean": 0.0, "std": 0.5}, "z0": {"mean": 0.0, "std": 2.0}},
}
VARIABLES = {"jets": ["pt", "eta"], "tracks": ["d0", "z0"]}


def guarded(tmp_path: Path) -> tuple[NaNLossGuard, SimpleNamespace, SimpleNamespace]:
    train = tmp_path / "train.h5"
    h5py.File(train, "w").close()
    tasks = [
        SimpleNamespace(name="jets_classification", input_name="jets"),
        SimpleNamespace(name="track_origin", input_name="tracks"),
    ]
    module = SimpleNamespace(
        normaliser=Normaliser(NORM, VARIABLES, {"jets": "jets", "tracks": "tracks"}),
        model=SimpleNamespace(tasks=tasks),
    )
    datamodule = SimpleNamespace(
        variables=VARIABLES, dataset_name=lambda name: name, files={"train": str(train)}
    )
    trainer = SimpleNamespace(global_step=0, datamodule=datamodule)
    guard = NaNLossGuard(check_every_n_steps=2)
    guard.on_fit_start(trainer, module)  # type: ignore[arg-type]
    return guard, trainer, module


def batch(pt: float = 55.0, d0: float = 0.1, valid: bool = True) -> tuple:
    jets = torch.tensor([[pt, 0.5], [45.0, -0.5]])
    tracks = torch.tensor([[[d0, 1.0], [0.0, 0.0]], [[0.2, -1.0], [0.0, 0.0]]])
    padded = torch.tensor([[False, True], [False, True]]) | (not valid)
    return {"jets": jets, "tracks": tracks}, {"tracks": padded}, {}


def step(guard, trainer, module, data, nan_task: str | None = None) -> None:
    losses = {"jets_classification": torch.tensor(0.7), "track_origin": torch.tensor(1.1)}
    if nan_task is not None:
        losses[nan_task] = torch.tensor(float("nan"))
    trainer.global_step += 1
    guard.on_train_batch_end(trainer, module, {"task_losses": losses}, data, 0)


def message_for(tmp_path: Path, bad_batch: tuple, task: str) -> str:
    guard, trainer, module = guarded(tmp_path)
    step(guard, trainer, module, batch())
    step(guard, trainer, module, batch())  # checked: fine
    step(guard, trainer, module, bad_batch, nan_task=task)
    with pytest.raises(NonFiniteLossError) as error:
        step(guard, trainer, module, batch(), nan_task=task)  # still bad: the first one counts
    return str(error.value)


def test_a_batch_without_valid_tracks_is_named(tmp_path: Path):
    message = message_for(tmp_path, batch(valid=False), "track_origin")
    assert message.startswith(
        "non-finite loss in task 'track_origin' between steps 2 and 4 (first in the batch of "
        "step 2): the batch has no valid tracks (every 'tracks.valid' is False"
    )
    assert str(tmp_path / "train.h5") in message
    assert "learning rate" not in message


def test_an_input_that_overflows_once_normalised_is_named(tmp_path: Path):
    message = message_for(tmp_path, batch(d0=3e38), "jets_classification")
    assert "input 'tracks.d0' (input type 'tracks') is inf after normalisation" in message
    assert "norm dict mean 0, std 0.5" in message
    assert "learning rate" not in message


def test_a_huge_input_is_named_with_its_value(tmp_path: Path):
    message = message_for(tmp_path, batch(pt=1e9), "jets_classification")
    assert "input 'jets.pt' (input type 'jets') reaches 1e+08 standard deviations" in message
    assert "a value of about 1e+09" in message
    assert "learning rate" not in message


def test_fine_inputs_leave_the_learning_rate(tmp_path: Path):
    message = message_for(tmp_path, batch(), "jets_classification")
    assert "inputs of that batch are finite" in message
    assert "lower the learning rate" in message


def test_jets_without_tracks_do_not_blame_the_tracks(tmp_path: Path):
    """One jet of the batch without tracks is legal: the learning rate is still the suspect."""
    data = batch()
    data[1]["tracks"][0] = True  # the first jet has no valid track, the second one has
    message = message_for(tmp_path, data, "track_origin")
    assert "lower the learning rate" in message
