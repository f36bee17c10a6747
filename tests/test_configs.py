"""Every shipped model configuration trains and evaluates (salt fit -> salt test) on tiny data."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from salt.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

COMBINATIONS = {
    "GN2": ["GN2.yaml"],
    "GATv2": ["GN2.yaml", "GATv2.yaml"],
    "GN2emu": ["GN2.yaml", "GN2emu.yaml"],
    "GN2emu_CA": ["GN2.yaml", "GN2emu.yaml", "GN2emu_CA.yaml"],
    "GN2_CA": ["GN2.yaml", "GN2_CA.yaml"],
    "GN2_edges": ["GN2.yaml", "GN2_edges.yaml"],
    "GN2_param": ["GN2.yaml", "GN2_param.yaml"],
    "GN2_noaux": ["GN2.yaml", "GN2_demo.yaml", "GN2_noaux.yaml"],
}


def tiny_args(demo: Path, root: Path, name: str) -> list[str]:
    return [
        f"--data.train_file={demo / 'train.h5'}",
        f"--data.val_file={demo / 'val.h5'}",
        f"--data.test_file={demo / 'test.h5'}",
        f"--data.norm_dict={demo / 'norm_dict.yaml'}",
        f"--data.class_dict={demo / 'class_dict.yaml'}",
        "--data.num_inputs={tracks: 8}",  # few tracks keep full-size models fast on a CPU
        "--data.num_train=300",
        "--data.num_val=100",
        "--data.num_test=200",
        "--data.batch_size=100",
        "--data.num_workers=0",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}",
        "--log_suffix=cfg",
        "-n",
        name,
    ]


@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_config_fits_and_tests(name: str, demo_dir: Path, tmp_path: Path):
    configs = [arg for f in COMBINATIONS[name] for arg in ("--config", str(CONFIGS / f))]
    assert main(["fit", *configs, *tiny_args(demo_dir, tmp_path, name)]) == 0
    run = tmp_path / f"{name}_cfg"
    assert (
        main(
            [
                "test",
                "--config",
                str(run / "config.yaml"),
                "--trainer.enable_progress_bar=false",
                "--evaluation.write_constituents=true",
            ]
        )
        == 0
    )
    (pred,) = (run / "ckpts").glob("*__test_test.h5")
    with h5py.File(pred) as h5:
        jets = h5["jets"][:]
        assert len(jets) == 200
        probs = np.stack([jets[f"{name}_p{x}"] for x in ("b", "c", "u", "tau")], 1)
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
        if name != "GN2_noaux":  # the auxiliary track outputs, row-aligned with the jets
            tracks = h5["tracks"][:]
            assert tracks.shape[0] == 200
            assert f"{name}_track_vertexing_vertex_index" in tracks.dtype.names
            origin = np.stack(
                [tracks[f"{name}_track_origin_p{c}"] for c in ("Pileup", "Primary", "FromB")], -1
            )
            valid = tracks["valid"]
            assert np.all(np.isfinite(origin[valid])) and np.all(np.isnan(origin[~valid]))
            assert np.all(tracks[f"{name}_track_vertexing_vertex_index"][~valid] == -1)
            np.testing.assert_array_equal(tracks["ftagTruthOriginLabel"][~valid], -1)
