"""Resume (--ckpt_path) restores everything: an interrupted fit ends where an uninterrupted one
does, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import TOOLBOX, event_numbers, last_epoch_ckpt, make_dm
from tests.helpers import demo_fit_args as fit_args


def assert_same_training_state(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    first, second = a["optimizer_states"][0], b["optimizer_states"][0]
    assert first["param_groups"] == second["param_groups"]
    for index, state in first["state"].items():
        for name, value in state.items():
            assert torch.equal(
                torch.as_tensor(value), torch.as_tensor(second["state"][index][name])
            )
    assert a["lr_schedulers"] == b["lr_schedulers"]


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("skip", [0, 1, 3, 5])
def test_loader_resumes_at_the_batch_it_stopped(tiny_files, num_workers: int, skip: int):
    """A restored loader state gives exactly the rest of the interrupted epoch, then the next
    epoch as an uninterrupted loader would."""
    dm = make_dm(tiny_files, num_workers=num_workers, persistent_workers=False)
    dm.request_labels({"jets": ["eventNumber"]})
    dm.setup("fit")
    full = dm.train_dataloader()
    epochs = [[event_numbers([b]) for b in full] for _ in range(2)]
    resumed = dm.train_dataloader()
    resumed.load_state_dict({"epoch": 0, "batches_done": skip})
    rest = [event_numbers([b]) for b in resumed]
    assert len(rest) == len(epochs[0]) - skip
    for got, want in zip(rest, epochs[0][skip:]):
        np.testing.assert_array_equal(got, want)
    assert resumed.state_dict()["batches_done"] == len(epochs[0])
    following = [event_numbers([b]) for b in resumed]
    for got, want in zip(following, epochs[1]):
        np.testing.assert_array_equal(got, want)
    # a state saved at the end of an epoch resumes with the next one
    at_end = dm.train_dataloader()
    at_end.load_state_dict({"epoch": 0, "batches_done": len(epochs[0])})
    np.testing.assert_array_equal(event_numbers(list(at_end)), np.concatenate(epochs[1]))


def test_resume_continues_with_the_same_state(demo_dir: Path, tmp_path: Path):
    """1 epoch + resume to 2 epochs ends bit-identical to 2 epochs straight: same global step,
    weights, optimizer moments and scheduler state."""
    from salt.cli.main import main

    schedule = ["--config", str(TOOLBOX / "warmup_attention.yaml"), "--trainer.logger=false"]
    warm = "--model.lr_scheduler.init_args.warmup_steps=4"
    assert main(fit_args(demo_dir, tmp_path, "straight", *schedule, warm)) == 0
    split_args = fit_args(demo_dir, tmp_path, "split", *schedule, warm)
    assert main([*split_args, "--trainer.max_epochs=1"]) == 0
    run = tmp_path / "split_run"
    (first,) = (run / "ckpts").glob("epoch=000*.ckpt")
    resume = ["fit", "--config", str(run / "config.yaml"), f"--ckpt_path={first}"]
    assert main([*resume, "--trainer.max_epochs=2"]) == 0
    straight, split = last_epoch_ckpt(tmp_path / "straight_run"), last_epoch_ckpt(run)
    assert split["global_step"] == straight["global_step"] == 6
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, split["state_dict"][key]), key
    assert_same_training_state(straight, split)


def test_mid_epoch_resume_continues_with_the_same_batches(demo_dir: Path, tmp_path: Path):
    """Stopped after 4 of 6 steps of the first epoch and resumed from last.ckpt, the run ends
    bit-identical to an uninterrupted one: the loader skips exactly the batches already used."""
    from salt.cli.main import main

    common = [
        "--config",
        str(TOOLBOX / "warmup_attention.yaml"),
        "--trainer.logger=false",
        "--model.lr_scheduler.init_args.warmup_steps=4",
        "--last_ckpt_every_n_steps=4",
    ]
    small = ["--data.batch_size=50"]
    assert main([*fit_args(demo_dir, tmp_path, "whole", *common), *small]) == 0
    cut = fit_args(demo_dir, tmp_path, "cut", *common)
    assert main([*cut, *small, "--trainer.max_steps=4"]) == 0
    run = tmp_path / "cut_run"
    stopped = torch.load(run / "ckpts" / "last.ckpt", map_location="cpu", weights_only=False)
    assert stopped["global_step"] == 4
    resume = ["fit", "--config", str(run / "config.yaml"), "--ckpt_path=last"]
    assert main([*resume, "--trainer.max_steps=-1"]) == 0
    whole, cut_run = last_epoch_ckpt(tmp_path / "whole_run"), last_epoch_ckpt(run)
    assert whole["global_step"] == 12  # 2 epochs x 300 / 50
    assert_same_training_state(whole, cut_run)
