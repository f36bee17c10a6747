"""Parameterised networks: parameter sampling in training, the test hypothesis, FiLM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salt.data.datamodule import SaltDataModule
from salt.data.parameters import ParameterSampler
from salt.models import ClassificationTask, GlobalAttentionPooling, InitNet, SaltModel

SPEC = {"mass": {"train": [5.0, 16.0, 55.0], "test": 40.0, "prob": [0.2, 0.3, 0.5]}}


def test_background_draws_follow_the_probabilities_and_signal_is_kept():
    sampler = ParameterSampler(SPEC, ["mass"])
    params = np.zeros((100_000, 1), dtype=np.float32)  # all background
    params[:10, 0] = 16.0  # signal jets keep their value
    drawn = sampler.for_training(params, np.random.default_rng(0))
    assert np.all(drawn[:10, 0] == 16.0)
    values, counts = np.unique(drawn[10:, 0], return_counts=True)
    assert values.tolist() == [5.0, 16.0, 55.0]
    np.testing.assert_allclose(counts / counts.sum(), [0.2, 0.3, 0.5], atol=0.01)
    assert np.all(sampler.for_testing(drawn) == 40.0)


def test_uniform_without_prob_and_spec_errors():
    sampler = ParameterSampler({"m": {"train": [1.0, 2.0], "test": 1.5}}, ["m"])
    drawn = sampler.for_training(np.zeros((20_000, 1), np.float32), np.random.default_rng(1))
    assert abs((drawn == 1.0).mean() - 0.5) < 0.02
    with pytest.raises(ValueError, match="prob"):
        ParameterSampler({"m": {"train": [1.0, 2.0], "test": 1.0, "prob": [0.9, 0.3]}}, ["m"])
    with pytest.raises(ValueError, match="same order"):
        ParameterSampler(SPEC, ["other"])


def test_datamodule_applies_train_and_test_values(tiny_files):
    dm = SaltDataModule(
        train_file=str(tiny_files["train_a"]),
        val_file=str(tiny_files["train_a"]),
        test_file=str(tiny_files["train_a"]),
        norm_dict=str(tiny_files["norm"]),
        variables={"jets": ["pt"], "tracks": ["d0"], "PARAMETERS": ["mass"]},
        batch_size=100,
        PARAMETERS=SPEC,
    )
    dm.setup("fit")
    train_values = torch.cat([b[0]["PARAMETERS"] for b in dm.train_dataloader()])
    assert set(train_values.flatten().tolist()) == {5.0, 16.0, 55.0}  # file has 1.0: background
    dm.setup("test")
    test_values = torch.cat([b[0]["PARAMETERS"] for b in dm.test_dataloader()])
    assert torch.all(test_values == 40.0)


def test_film_conditioning_changes_the_output_with_the_parameter():
    torch.manual_seed(0)
    init = InitNet("tracks", {"input_size": 2, "output_size": 8}, attach_global=False)
    task = ClassificationTask(
        "j", "jets", "flavour_label", {"input_size": 8}, class_names=["a", "b"]
    )
    model = SaltModel(
        [init], [task], GlobalAttentionPooling(8), parameter_conditioning="film", num_parameters=1
    )
    with torch.no_grad():
        model.film.weight.normal_()  # type: ignore[union-attr]
    tracks = torch.randn(3, 4, 2)
    masks = {"tracks": torch.zeros(3, 4, dtype=torch.bool)}
    out_a, _ = model({"tracks": tracks, "PARAMETERS": torch.full((3, 1), 5.0)}, masks)
    out_b, _ = model({"tracks": tracks, "PARAMETERS": torch.full((3, 1), 55.0)}, masks)
    assert not torch.allclose(out_a["j"], out_b["j"])
    with pytest.raises(ValueError, match="parameter_conditioning"):
        SaltModel([init], [task], GlobalAttentionPooling(8), parameter_conditioning="add")
