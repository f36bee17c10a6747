"""Training control: start from weights (init_weights + freeze), memory logging, bf16 on CPU,
save_top_k."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from salt.training.finetune import InitWeights, freeze_modules, select_weights
from tests.helpers import demo_fit_args as fit_args
from tests.helpers import last_epoch_ckpt

ROOT = Path(__file__).resolve().parents[1]
TOOLBOX = ROOT / "configs" / "toolbox"


class Tiny(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(3, width), nn.LayerNorm(width))
        self.head = nn.Linear(width, 2)


def save(module: nn.Module, path: Path, wrap: bool) -> Path:
    state = module.state_dict()
    torch.save({"state_dict": state, "epoch": 3} if wrap else state, path)
    return path


@pytest.mark.parametrize("wrap", [False, True])
def test_select_weights_include_exclude_rename(tmp_path: Path, wrap: bool):
    source = Tiny()
    path = save(source, tmp_path / "w.pt", wrap)
    target = Tiny()
    chosen = select_weights(InitWeights(str(path), exclude=["head.*"]), target)
    assert sorted(chosen) == [
        "encoder.0.bias",
        "encoder.0.weight",
        "encoder.1.bias",
        "encoder.1.weight",
    ]
    target.load_state_dict(chosen, strict=False)
    assert torch.equal(target.encoder[0].weight, source.encoder[0].weight)
    assert not torch.equal(target.head.weight, source.head.weight)

    class Renamed(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = Tiny()

    renamed = select_weights(
        InitWeights(str(path), include=["encoder.*"], rename={"encoder.": "backbone.encoder."}),
        Renamed(),
    )
    assert sorted(renamed)[0] == "backbone.encoder.0.bias"


def test_select_weights_errors_name_the_key(tmp_path: Path, caplog):
    path = save(Tiny(width=4), tmp_path / "w.pt", wrap=True)
    with pytest.raises(
        ValueError, match=r"'encoder.0.bias' .* shape \(4,\) in the file, \(8,\) in this"
    ):
        select_weights(InitWeights(str(path)), Tiny(width=8))
    with caplog.at_level(logging.WARNING, logger="salt.training.finetune"):
        loose = select_weights(InitWeights(str(path), strict=False), Tiny(width=8))
    assert loose == {} or "head.bias" in loose  # head.bias (2,) still fits
    assert "another shape" in caplog.text
    with pytest.raises(ValueError, match=r"no key of .* matches include \['nothing\*'\]"):
        select_weights(InitWeights(str(path), include=["nothing*"]), Tiny())
    with pytest.raises(FileNotFoundError, match=r"absent\.pt"):
        select_weights(InitWeights(str(tmp_path / "absent.pt")), Tiny())
    (tmp_path / "junk.pt").write_text("not torch")
    with pytest.raises(ValueError, match="cannot read"):
        select_weights(InitWeights(str(tmp_path / "junk.pt")), Tiny())


def test_freeze_modules():
    model = Tiny()
    assert freeze_modules(model, ["encoder"]) == 3 * 4 + 4 + 4 + 4
    assert [p.requires_grad for p in model.parameters()] == [False] * 4 + [True] * 2
    with pytest.raises(ValueError, match=r"no module matches 'decoder'"):
        freeze_modules(model, ["decoder"])


def test_start_from_weights_with_frozen_encoder_and_memory_log(demo_dir: Path, tmp_path: Path):
    from salt.cli.main import main

    off = "--trainer.logger=false"
    assert main([*fit_args(demo_dir, tmp_path, "pre", off), "--trainer.max_epochs=1"]) == 0
    pre = last_epoch_ckpt(tmp_path / "pre_run")
    (pre_path,) = (tmp_path / "pre_run" / "ckpts").glob("epoch=*.ckpt")

    fragment = tmp_path / "finetune.yaml"
    fragment.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "init_weights": {"path": str(pre_path), "exclude": ["model.tasks.*"]},
                    "freeze": ["model.init_nets.*", "model.encoder"],
                }
            }
        )
    )
    args = fit_args(demo_dir, tmp_path, "tune", off, "--config", str(fragment))
    assert main([*args, "--log_train_memory"]) == 0
    tuned = last_epoch_ckpt(tmp_path / "tune_run")
    assert tuned["global_step"] == 6  # a fresh count: 2 epochs x 3 steps, not 3 + 6
    before, after = pre["state_dict"], tuned["state_dict"]
    encoder = [k for k in before if k.startswith(("model.encoder.", "model.init_nets."))]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)  # loaded, frozen
    heads = [k for k in before if k.startswith("model.tasks.") and k.endswith("net.0.weight")]
    assert heads and not any(torch.equal(before[k], after[k]) for k in heads)
    # the optimizer only steps what is trainable: no state for the frozen tensors
    assert 0 < len(tuned["optimizer_states"][0]["state"]) <= len(after) - len(encoder)
    with open(tmp_path / "tune_run" / "metrics.csv") as f:
        rss = [
            float(r["memory/host_rss_gb"]) for r in csv.DictReader(f) if r.get("memory/host_rss_gb")
        ]
    assert rss and all(0.05 < v < 64 for v in rss)
    meta = yaml.safe_load((tmp_path / "tune_run" / "metadata.yaml").read_text())
    assert meta["trainable_parameters"] < sum(v.numel() for v in after.values())


def test_bad_init_weights_is_a_one_line_error_before_the_run_dir(demo_dir, tmp_path, capsys):
    from salt.cli.main import main

    args = fit_args(
        demo_dir,
        tmp_path,
        "bad",
        "--trainer.logger=false",
        f"--model.init_weights.path={tmp_path / 'missing.ckpt'}",
    )
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("salt: error: model.init_weights") and "missing.ckpt" in err
    assert not (tmp_path / "bad_run").exists()


def test_bf16_mixed_on_cpu_keeps_the_best_checkpoint_and_last(demo_dir: Path, tmp_path: Path):
    from salt.cli.main import main

    args = fit_args(demo_dir, tmp_path, "bf16", "--trainer.logger=false")
    extra = ["--trainer.precision=bf16-mixed", "--save_top_k=1", "--trainer.max_epochs=3"]
    assert main([*args, *extra, "--trainer.gradient_clip_val=1.0"]) == 0
    run = tmp_path / "bf16_run"
    kept = list((run / "ckpts").glob("epoch=*.ckpt"))
    assert len(kept) == 1 and (run / "ckpts" / "last.ckpt").is_file()
    with open(run / "metrics.csv") as f:
        losses = [float(r["val/loss"]) for r in csv.DictReader(f) if r.get("val/loss")]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    best = min(losses)
    assert f"val_loss={best:.5f}" in kept[0].name  # the best epoch is the one kept
    weights = last_epoch_ckpt(run)["state_dict"]
    assert all(v.dtype != torch.bfloat16 for v in weights.values())  # fp32 master weights
