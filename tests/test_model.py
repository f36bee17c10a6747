"""The assembled network, its tasks and the wiring that derives sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from jsonargparse import Namespace

from salt.callbacks.checkpoint_io import AtomicCheckpointIO
from salt.cli.run_dir import best_checkpoint
from salt.models import (
    ClassificationTask,
    GlobalAttentionPooling,
    InitNet,
    SaltModel,
    TransformerEncoder,
)


def build_model(n_track_vars: int = 3, n_jet_vars: int = 2, n_global: int = 0) -> SaltModel:
    torch.manual_seed(0)
    init = InitNet("tracks", {"input_size": n_track_vars + n_jet_vars, "output_size": 16})
    encoder = TransformerEncoder(embed_dim=16, num_layers=2, mha_config={"num_heads": 2}, out_dim=8)
    task = ClassificationTask(
        name="jets_classification",
        input_name="jets",
        label="flavour_label",
        dense_config={"input_size": 8 + n_global, "hidden_layers": [8]},
        class_names=["bjets", "cjets", "ujets"],
    )
    return SaltModel([init], [task], GlobalAttentionPooling(8), encoder)


def batch(num_jets: int = 4, num_tracks: int = 5):
    torch.manual_seed(1)
    inputs = {"jets": torch.randn(num_jets, 2), "tracks": torch.randn(num_jets, num_tracks, 3)}
    mask = torch.zeros(num_jets, num_tracks, dtype=torch.bool)
    mask[:, 3:] = True
    mask[0, 1:] = True
    labels = {"jets": {"flavour_label": torch.tensor([0, 1, 2, 0])[:num_jets]}}
    return inputs, {"tracks": mask}, labels


def test_output_shapes_and_loss():
    model = build_model()
    inputs, masks, labels = batch()
    outputs, losses = model(inputs, masks, labels)
    assert outputs["jets_classification"].shape == (4, 3)
    assert losses["jets_classification"].ndim == 0 and losses["jets_classification"] > 0
    assert model.label_fields() == {"jets": ["flavour_label"]}


def test_padded_tracks_change_nothing():
    model = build_model().eval()
    inputs, masks, _ = batch()
    reference, _ = model(inputs, masks)
    noisy = dict(inputs)
    noisy["tracks"] = inputs["tracks"].clone()
    noisy["tracks"][masks["tracks"]] = 1e4 * torch.randn(int(masks["tracks"].sum()), 3)
    changed, _ = model(noisy, masks)
    torch.testing.assert_close(changed["jets_classification"], reference["jets_classification"])
    # appending further padded tracks changes nothing either
    longer = {
        "jets": inputs["jets"],
        "tracks": torch.cat([inputs["tracks"], torch.randn(4, 3, 3)], 1),
    }
    longer_mask = torch.cat([masks["tracks"], torch.ones(4, 3, dtype=torch.bool)], 1)
    out, _ = model(longer, {"tracks": longer_mask})
    torch.testing.assert_close(out["jets_classification"], reference["jets_classification"])


def test_global_features_are_concatenated_after_pooling():
    model = build_model(n_global=1)
    inputs, masks, labels = batch()
    inputs["GLOBAL"] = torch.randn(4, 1)
    outputs, _ = model(inputs, masks, labels)
    assert outputs["jets_classification"].shape == (4, 3)


def test_label_map_and_class_weights():
    task = ClassificationTask(
        name="t",
        input_name="jets",
        label="HadronConeExclTruthLabelID",
        dense_config={"input_size": 4},
        class_names=["ujets", "cjets", "bjets"],
        label_map={0: 0, 4: 1, 5: 2},
    )
    labels = {"jets": {"HadronConeExclTruthLabelID": torch.tensor([5, 4, 0, 15])}}
    assert task.targets(labels).tolist() == [2, 1, 0, -1]  # 15 is not mapped: left out
    task.set_class_weights([1.0, 2.0, 3.0])
    logits, loss = task(torch.zeros(4, 4), labels)
    # zero inputs still give some logits; check the weighted loss by hand
    target = torch.tensor([2, 1, 0])
    expected = torch.nn.functional.cross_entropy(
        logits[:3], target, weight=torch.tensor([1.0, 2.0, 3.0])
    )
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="2 weights, expected 3"):
        task.set_class_weights([1.0, 2.0])


def test_task_config_errors():
    with pytest.raises(ValueError, match="label_map needs class_names"):
        ClassificationTask("t", "jets", "x", {"input_size": 4}, label_map={0: 0})
    with pytest.raises(ValueError, match="outside"):
        ClassificationTask("t", "jets", "x", {"input_size": 4}, class_names=["a"], label_map={5: 3})


def test_wiring_derives_sizes_and_rejects_contradictions():
    from salt.cli.wiring import derive_config

    def cfg(pool_size=None):
        return Namespace(
            data=Namespace(
                variables={"jets": ["a", "b"], "tracks": ["x", "y", "z"], "global": ["c"]},
                global_object="jets",
                input_map=None,
                norm_dict="n.yaml",
                train_file=None,
                test_file=None,
            ),
            model=Namespace(
                model=Namespace(
                    class_path="salt.models.SaltModel",
                    init_args=Namespace(
                        init_nets=[
                            Namespace(
                                class_path="salt.models.InitNet",
                                init_args=Namespace(
                                    input_name="tracks", dense_config={"output_size": 16}
                                ),
                            )
                        ],
                        encoder=Namespace(
                            class_path="salt.models.TransformerEncoder",
                            init_args=Namespace(embed_dim=16, out_dim=8),
                        ),
                        pool_net=Namespace(
                            class_path="salt.models.GlobalAttentionPooling",
                            init_args=Namespace(input_size=pool_size),
                        ),
                        tasks=[
                            Namespace(
                                class_path="salt.models.ClassificationTask",
                                init_args=Namespace(
                                    name="j",
                                    input_name="jets",
                                    label="l",
                                    dense_config={},
                                    class_names=["a", "b"],
                                ),
                            )
                        ],
                    ),
                )
            ),
        )

    config = cfg()
    derive_config(config)
    net = config.model.model.init_args
    assert net.init_nets[0].init_args.dense_config["input_size"] == 3 + 2
    assert net.pool_net.init_args.input_size == 8
    assert net.tasks[0].init_args.dense_config["input_size"] == 8 + 1  # pooled + GLOBAL
    with pytest.raises(ValueError, match=r"pool_net.input_size=7"):
        derive_config(cfg(pool_size=7))


def test_atomic_checkpoint_keeps_previous_file_on_failure(tmp_path: Path):
    io = AtomicCheckpointIO()
    path = tmp_path / "ckpts" / "a.ckpt"
    io.save_checkpoint({"x": torch.ones(2)}, path)
    assert torch.load(path)["x"].sum() == 2

    class Unpicklable:
        def __reduce__(self):
            raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"x": Unpicklable()}, path)
    assert torch.load(path)["x"].sum() == 2  # previous checkpoint intact
    assert [p.name for p in path.parent.iterdir()] == ["a.ckpt"]  # no temporary left behind


def test_best_checkpoint_picks_lowest_validation_loss(tmp_path: Path):
    for name in (
        "epoch=000-val_loss=0.90000",
        "epoch=001-val_loss=0.51000",
        "epoch=002-val_loss=0.70000",
    ):
        (tmp_path / f"{name}.ckpt").write_bytes(b"")
    assert best_checkpoint(tmp_path).name == "epoch=001-val_loss=0.51000.ckpt"
    with pytest.raises(FileNotFoundError, match="--ckpt_path"):
        best_checkpoint(tmp_path / "none")


@pytest.mark.parametrize("steps", [1, 2, 3, 10, 20, 1000])
def test_one_cycle_schedule_runs_for_any_number_of_steps(steps: int):
    from salt.training.optim import one_cycle

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    schedule = one_cycle(optimizer, {"pct_start": 0.1, "max": 1e-3}, steps)
    rates = []
    for _ in range(steps):
        optimizer.step()
        schedule.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert all(r > 0 for r in rates)
    if steps >= 10:
        assert max(rates) == pytest.approx(1e-3, rel=0.3)
