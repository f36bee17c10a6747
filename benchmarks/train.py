"""Training throughput: jets/s of forward + backward + optimizer step, and the data-wait share.

Measures the full GN2 config and the demo config, eager and (with --compile) torch.compile'd,
on the demo data, in one run so the figures compare directly.

    python benchmarks/train.py [--steps 30] [--batch_size 1000] [--compile [--backend eager]]
                              [--configs GN2 demo]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from salt.cli.salt_cli import SaltCLI

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "GN2": ["configs/GN2.yaml"],
    "GN2 (no aux)": ["configs/GN2.yaml", "configs/GN2_noaux.yaml"],
    "demo": ["configs/GN2.yaml", "configs/GN2_demo.yaml"],
}


def build(configs: list[str], batch_size: int, workers: int, data: Path):
    args: list[str] = []  # run=False: no subcommand
    for config in configs:
        args += ["--config", str(ROOT / config)]
    args += [
        f"--data.train_file={data / 'train.h5'}",
        f"--data.val_file={data / 'val.h5'}",
        f"--data.norm_dict={data / 'norm_dict.yaml'}",
        f"--data.class_dict={data / 'class_dict.yaml'}",
        f"--data.batch_size={batch_size}",
        f"--data.num_workers={workers}",
        f"--trainer.default_root_dir={tempfile.mkdtemp()}",
    ]
    cli = SaltCLI(args=args, run=False)
    cli.datamodule.setup("fit")
    return cli.model, cli.datamodule


def measure(model, datamodule, steps: int, warmup: int) -> tuple[float, float]:
    """(jets/s, share of wall time spent waiting for the next batch)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    loader = iter(datamodule.train_dataloader())
    jets = 0
    wait = 0.0
    start = None
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        inputs, masks, labels = next(loader)
        t1 = time.perf_counter()
        if step == warmup:
            start, jets, wait = t0, 0, 0.0
        _, losses = model(inputs, masks, labels)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        wait += t1 - t0
        jets += inputs["jets"].shape[0]
    total = time.perf_counter() - start
    return jets / total, wait / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "demo")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    parser.add_argument(
        "--backend",
        default="inductor",
        help="torch.compile backend (eager: dynamo's graph capture alone, no code generation)",
    )
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    if not (args.data / "train.h5").exists():
        raise SystemExit(f"no demo data in {args.data}: run `salt demo-data --out {args.data}`")
    rows = []
    for name in args.configs:
        model, datamodule = build(CONFIGS[name], args.batch_size, args.workers, args.data)
        modes = [("eager", model)]
        if args.compile:
            compiled, _ = build(CONFIGS[name], args.batch_size, args.workers, args.data)
            compiled.model.compile(backend=args.backend)
            modes.append(("compiled", compiled))
        for mode, module in modes:
            rate, wait = measure(module, datamodule, args.steps, args.warmup)
            rows.append((name, mode, rate, wait))
    baseline = rows[0][2]
    print(f"device: cpu, threads: {torch.get_num_threads()}, batch: {args.batch_size}")
    print(f"{'config':<16}{'mode':<10}{'jets/s':>10}{'vs first':>10}{'data wait':>11}")
    for name, mode, rate, wait in rows:
        print(f"{name:<16}{mode:<10}{rate:>10,.0f}{rate / baseline:>10.2f}{wait:>10.1%}")


if __name__ == "__main__":
    main()
