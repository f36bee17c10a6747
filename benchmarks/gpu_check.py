"""GN2 training speed and memory on an accelerator: eager / compiled x fp32 / bf16.

Builds the network and the training loader exactly as ``salt fit`` does, moves them to the
device and times forward + backward + optimizer steps (after warm-up, with a device
synchronisation at both ends), printing jets/s and the peak device memory of each mode.

    python benchmarks/gpu_check.py --data data/gpu_check [--configs configs/GN2.yaml] [--steps 30]

``--device cpu`` runs the same code on the CPU (peak memory then reads as n/a): the tests use
it on tiny data so that this script cannot rot between GPU sessions.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from salt.cli.salt_cli import build

ROOT = Path(__file__).resolve().parents[1]


def data_args(data: Path, batch_size: int, workers: int, run_root: Path) -> list[str]:
    return [
        f"--data.train_file={data / 'train.h5'}",
        f"--data.val_file={data / 'val.h5'}",
        f"--data.norm_dict={data / 'norm_dict.yaml'}",
        f"--data.class_dict={data / 'class_dict.yaml'}",
        f"--data.batch_size={batch_size}",
        f"--data.num_workers={workers}",
        f"--trainer.default_root_dir={run_root}",
    ]


def batches(loader: torch.utils.data.DataLoader, device: torch.device) -> Iterator:
    """Endless batches on ``device`` (pinned host memory makes the copies asynchronous)."""
    while True:
        for inputs, masks, labels in loader:
            yield (
                {k: v.to(device, non_blocking=True) for k, v in inputs.items()},
                {k: v.to(device, non_blocking=True) for k, v in masks.items()},
                {
                    k: {f: t.to(device, non_blocking=True) for f, t in d.items()}
                    for k, d in labels.items()
                },
            )


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    module: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    bf16: bool,
    steps: int,
    warmup: int,
) -> tuple[float, float | None]:
    """(jets/s, peak device memory in GiB or None off CUDA)."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    module.train()
    feed = batches(loader, device)
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if bf16
        else contextlib.nullcontext()
    )
    jets, start = 0, 0.0
    for step in range(warmup + steps):
        if step == warmup:
            synchronise(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            jets, start = 0, time.perf_counter()
        inputs, masks, labels = next(feed)
        with autocast:
            _, losses = module(inputs, masks, labels)
            loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        optimizer.step()
        jets += next(iter(inputs.values())).shape[0]
    synchronise(device)
    rate = jets / (time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return rate, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "demo")
    parser.add_argument("--configs", nargs="+", default=[str(ROOT / "configs" / "GN2.yaml")])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--modes", nargs="+", default=["eager", "compiled"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    run_root = tempfile.TemporaryDirectory()  # nothing is written there: build() runs nothing
    for mode in args.modes:
        for precision in args.precisions:
            options = data_args(args.data, args.batch_size, args.workers, Path(run_root.name))
            built = build(args.configs, "fit", options)
            module = built.module.to(device)
            built.datamodule.setup("fit")
            if mode == "compiled":
                module.model.compile()
            params = sum(p.numel() for p in module.parameters())
            rate, peak = measure(
                module,
                built.datamodule.train_dataloader(),
                device,
                precision == "bf16",
                args.steps,
                args.warmup,
            )
            rows.append((mode, precision, rate, peak, params))
    run_root.cleanup()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}, batch: {args.batch_size}, parameters: {rows[0][4]:,}")
    print(f"{'mode':<10}{'precision':<11}{'jets/s':>10}{'peak memory':>14}")
    for mode, precision, rate, peak, _ in rows:
        memory = "n/a" if peak is None else f"{peak:.2f} GiB"
        print(f"{mode:<10}{precision:<11}{rate:>10,.0f}{memory:>14}")


if __name__ == "__main__":
    main()
