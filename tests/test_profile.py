"""``salt profile``: parameters and multiply-accumulates against hand computations, the profiler's
outputs written and read back, and an existing output directory left alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from salt.cli.profile import count_parameters, module_costs, split_args
from salt.models.attention import MultiheadAttention

ROOT = Path(__file__).resolve().parents[1]
TRACKS = 8  # padded track length of the demo batches (data.num_inputs)
BATCH = 20


# -- counting, on modules small enough to do by hand ---------------------------------------------
def test_linear_macs_and_parameters():
    layer = nn.Linear(8, 16)
    x = torch.randn(3, 5, 8)  # 3 jets of 5 constituents
    report = module_costs(layer, lambda: layer(x), batch_size=3)
    assert report.total.macs_per_jet == 5 * 8 * 16  # one multiply-add per weight per row
    assert report.total.parameters == 8 * 16 + 16 == sum(p.numel() for p in layer.parameters())


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = MultiheadAttention(16, num_heads=4)
        self.head = nn.Sequential(nn.Linear(16, 4), nn.ReLU())
        self.frozen = nn.Linear(16, 16).requires_grad_(False)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(x, pad_mask=pad_mask))


def test_attention_macs_count_padded_positions():
    block, length, dim = Block(), 5, 16
    x = torch.randn(2, length, dim)
    pad_mask = torch.tensor([[False] * 5, [False, False, True, True, True]])
    report = module_costs(block, lambda: block(x, pad_mask), batch_size=2, depth=2)
    rows = {r.name: r for r in report.modules}
    projection = length * dim * dim
    scores_and_sum = 2 * length * length * dim  # q k^T and (weights) v, over all heads
    assert rows["attn.q_proj"].macs_per_jet == projection
    assert rows["attn.attention"].macs_per_jet == scores_and_sum
    assert rows["attn"].macs_per_jet == 4 * projection + scores_and_sum
    assert rows["head"].macs_per_jet == length * dim * 4
    assert report.total.macs_per_jet == 4 * projection + scores_and_sum + length * dim * 4
    assert "frozen" not in rows  # neither trainable parameters nor MACs
    assert "head.1" not in rows
    trainable = sum(p.numel() for p in block.parameters() if p.requires_grad)
    assert report.total.parameters == count_parameters(block) == trainable
    assert rows["attn"].parameters == 4 * (dim * dim + dim)


def test_options_are_split_from_salt_arguments():
    options, salt_args = split_args(
        ["--config", "a.yaml", "--steps", "3", "--data.num_train=10", "--batch_size", "7"]
    )
    assert (options.steps, options.batch_size, options.depth) == (3, 7, 3)
    assert salt_args == ["--config", "a.yaml", "--data.num_train=10", "--data.batch_size=7"]
    with pytest.raises(ValueError, match="--depth"):
        split_args(["--depth", "0"])


# -- salt profile on the demo data ---------------------------------------------------------------
def profile_args(demo: Path, *extra: str) -> list[str]:
    return [
        "profile",
        "--config",
        str(ROOT / "configs" / "GN2.yaml"),
        "--config",
        str(ROOT / "configs" / "GN2_demo.yaml"),
        f"--data.train_file={demo / 'train.h5'}",
        f"--data.val_file={demo / 'val.h5'}",
        f"--data.test_file={demo / 'test.h5'}",
        f"--data.norm_dict={demo / 'norm_dict.yaml'}",
        f"--data.class_dict={demo / 'class_dict.yaml'}",
        f"--data.num_inputs={{tracks: {TRACKS}}}",
        "--data.num_train=100",
        "--data.num_val=20",
        "--data.num_workers=0",
        "--batch_size",
        str(BATCH),
        *extra,
    ]


@pytest.fixture(scope="module")
def profiled(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from salt.cli.main import main

    out = tmp_path_factory.mktemp("profile") / "out"
    args = profile_args(demo_dir, "--out", str(out), "--wait", "0", "--warmup", "1", "--steps", "1")
    assert main(args) == 0
    return out


def test_profile_writes_valid_outputs(profiled: Path):
    trace = json.loads((profiled / "trace.json").read_text())
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    names = {e.get("name") for e in events}
    assert "aten::addmm" in names and "model.encoder" in names  # operators and module ranges
    summary = (profiled / "summary.txt").read_text()
    for name in ("model.init_nets.0", "model.encoder", "model.tasks.0", "Self CPU"):
        assert name in summary
    report = json.loads((profiled / "modules.json").read_text())
    assert report["batch_size"] == BATCH and report["profiled_steps"] == 1
    assert report["step_ms"] > 0
    tracks = report["constituents"]["tracks"]
    assert tracks["padded_length"] == TRACKS and 0 < tracks["mean_valid"] <= TRACKS


def test_profile_counts_match_the_network(profiled: Path):
    from salt.training.module import SaltModule

    report = json.loads((profiled / "modules.json").read_text())
    rows = {r["name"]: r for r in report["modules"]}
    # GN2_demo's encoder: 2 layers of width 64, 4 heads, feed-forward 64 -> 128 -> 64, one
    # register; it computes on the real tracks (plus the register) only, and attention on a
    # layout as long as the longest jet of the batch
    tracks = report["constituents"]["tracks"]
    tokens, longest = tracks["mean_valid"] + 1, tracks["max_valid"] + 1
    dim, hidden = 64, 128
    layer = 4 * tokens * dim * dim + 2 * longest * longest * dim + 2 * tokens * dim * hidden
    assert rows["model.encoder.layers"]["macs_per_jet"] == pytest.approx(2 * layer)
    out_proj = tokens * dim * dim
    assert rows["model.encoder"]["macs_per_jet"] == pytest.approx(2 * layer + out_proj)
    padded = 4 * TRACKS * dim * dim + 2 * TRACKS * TRACKS * dim + 2 * TRACKS * dim * hidden
    assert tracks["mean_valid"] < TRACKS and 2 * layer < 2 * padded
    parts = ("model.init_nets", "model.encoder", "model.pool_net", "model.tasks")
    assert sum(rows[p]["parameters"] for p in parts) == rows["model"]["parameters"]
    assert sum(rows[p]["macs_per_jet"] for p in parts) == report["total"]["macs_per_jet"]
    assert report["total"]["type"] == SaltModule.__name__


def test_profile_total_parameters(demo_dir: Path, tmp_path: Path, monkeypatch):
    """The totals are those of the module salt fit would train, built with the same overrides."""
    import salt.cli.profile
    from salt.cli.main import main

    built = {}
    original = salt.cli.profile.batch_costs

    def keep(module, batch, depth):
        built["module"], built["batch"] = module, batch
        return original(module, batch, depth)

    monkeypatch.setattr(salt.cli.profile, "batch_costs", keep)
    args = profile_args(demo_dir, "--out", str(tmp_path / "p"), "--steps", "0")
    assert main([*args, "--model.model.init_args.encoder.init_args.num_layers=1"]) == 0
    module = built["module"]
    assert len(module.model.encoder.layers) == 1
    assert next(iter(built["batch"][0].values())).shape[0] == BATCH
    report = json.loads((tmp_path / "p" / "modules.json").read_text())
    assert report["total"]["parameters"] == sum(p.numel() for p in module.parameters())
    assert not (tmp_path / "p" / "trace.json").exists()  # --steps 0: counting only


def test_profile_refuses_to_overwrite(demo_dir: Path, tmp_path: Path, capsys):
    from salt.cli.main import main

    out = tmp_path / "taken"
    out.mkdir()
    (out / "summary.txt").write_text("an earlier profile")
    assert main(profile_args(demo_dir, "--out", str(out), "--steps", "0")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("salt: error: --out:") and "--overwrite" in err
    assert len(err.splitlines()) == 1
    assert (out / "summary.txt").read_text() == "an earlier profile"
    assert main(profile_args(demo_dir, "--out", str(out), "--steps", "0", "--overwrite")) == 0
    assert "model.encoder" in (out / "summary.txt").read_text()


def test_profile_default_directory(demo_dir: Path, tmp_path: Path, capsys):
    from salt.cli.main import main

    args = profile_args(
        demo_dir, f"--trainer.default_root_dir={tmp_path}", "--log_suffix=x", "--steps", "0"
    )
    assert main(args) == 0
    assert (tmp_path / "profile_GN2_demo_x" / "modules.json").is_file()
    assert "model.encoder" in capsys.readouterr().out  # the table is printed
    assert main(args) == 2  # the same directory again
    assert "already exists" in capsys.readouterr().err
