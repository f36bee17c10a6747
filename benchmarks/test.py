"""``salt test`` throughput: jets/s of evaluation (forward pass + predictions file), measured
as the wall time of the real command on a trained run, and of the bare forward pass alone.

    python benchmarks/test.py --run logs/GN2_demo_<time> [--num_test 50000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from salt.cli.salt_cli import SaltCLI


def forward_only(run: Path, num_test: int, batch_size: int) -> float:
    """jets/s of the model's forward pass over the test loader (no file writing)."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    for key in ("ckpt_path", "weights_only"):  # subcommand options, unknown without one
        config.pop(key, None)
    copy = Path(tempfile.mkdtemp()) / "config.yaml"
    copy.write_text(yaml.safe_dump(config))
    args = [
        "--config",
        str(copy),
        f"--data.num_test={num_test}",
        f"--data.batch_size={batch_size}",
        f"--trainer.default_root_dir={tempfile.mkdtemp()}",
    ]
    cli = SaltCLI(args=args, run=False)
    cli.datamodule.setup("test")
    model = cli.model.eval()
    jets = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for inputs, masks, _ in cli.datamodule.test_dataloader():
            model(inputs, masks)
            jets += inputs["jets"].shape[0]
    return jets / (time.perf_counter() - start)


def full_command(run: Path, num_test: int, batch_size: int) -> float:
    """jets/s of the whole ``salt test`` command, start-up and evaluation plots included."""
    command = [
        sys.executable,
        "-m",
        "salt",
        "test",
        "--config",
        str(run / "config.yaml"),
        f"--data.num_test={num_test}",
        f"--data.batch_size={batch_size}",
        "--test_suffix=benchmark",
        "--overwrite",
        "--trainer.enable_progress_bar=false",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return num_test / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a run directory of salt fit")
    parser.add_argument("--num_test", type=int, default=50_000)
    parser.add_argument("--batch_size", type=int, default=1000)
    args = parser.parse_args()
    forward = forward_only(args.run, args.num_test, args.batch_size)
    command = full_command(args.run, args.num_test, args.batch_size)
    print(f"run: {args.run}  jets: {args.num_test}  batch: {args.batch_size}")
    print(f"{'measure':<36}{'jets/s':>10}{'ratio':>8}")
    print(f"{'forward pass only':<36}{forward:>10,.0f}{1.0:>8.2f}")
    print(f"{'salt test (whole command)':<36}{command:>10,.0f}{command / forward:>8.2f}")


if __name__ == "__main__":
    main()
