"""Model comparison at equal epochs on the demo data: GN2, ParT, PET2-small, Deep Sets and the
Set Transformer (and any other shipped fragment), trained and evaluated with the same data,
tasks and evaluation.

Prints light and c rejection at 70 % b-efficiency, trainable parameters and training jets/s, and
writes ``salt compare``'s table and overlaid plots of all runs to ``<out>/comparison/``.

    python benchmarks/compare_models.py [--num_train 50000] [--epochs 2] [--models GN2 ParT ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# every model gets the jet task only, so the comparison is about the networks themselves
MODELS = {
    "GN2": ["GN2.yaml", "GN2_demo.yaml", "GN2_noaux.yaml"],
    "ParT": ["GN2.yaml", "ParT_small.yaml"],
    "PET2-small": ["GN2.yaml", "PET2.yaml"],
    "DeepSets": ["GN2.yaml", "DeepSets.yaml"],
    "SetTransformer": ["GN2.yaml", "SetTransformer.yaml"],
}


def run(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "salt", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"salt {' '.join(args[:1])} failed:\n{done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "demo")
    parser.add_argument("--num_train", type=int, default=50_000)
    parser.add_argument("--num_val", type=int, default=10_000)
    parser.add_argument("--num_test", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=500)
    parser.add_argument("--tracks", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp())
    data = args.data
    rows = []
    run_dirs = []
    for name in args.models:
        configs = [a for f in MODELS[name] for a in ("--config", str(ROOT / "configs" / f))]
        common = [
            f"--data.train_file={data / 'train.h5'}",
            f"--data.val_file={data / 'val.h5'}",
            f"--data.test_file={data / 'test.h5'}",
            f"--data.norm_dict={data / 'norm_dict.yaml'}",
            f"--data.class_dict={data / 'class_dict.yaml'}",
            f"--data.num_train={args.num_train}",
            f"--data.num_val={args.num_val}",
            f"--data.num_test={args.num_test}",
            f"--data.batch_size={args.batch_size}",
            f"--data.num_inputs={{tracks: {args.tracks}}}",
            f"--trainer.max_epochs={args.epochs}",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={root}",
            "--log_suffix=compare",
            "--force",
            "-n",
            name,
        ]
        start = time.perf_counter()
        run(["fit", *configs, *common])
        seconds = time.perf_counter() - start
        run_dir = root / f"{name}_compare"
        run_dirs.append(str(run_dir))
        run(["test", "--config", str(run_dir / "config.yaml"), "--overwrite",
             "--trainer.enable_progress_bar=false"])  # fmt: skip
        meta = yaml.safe_load((run_dir / "metadata.yaml").read_text())
        (metrics_file,) = (run_dir / "evaluation").glob("*/metrics.json")
        metrics = json.loads(metrics_file.read_text())
        wp = metrics["working_points"]["0.70"]
        jets = args.num_train * args.epochs
        rows.append((name, wp["u_rejection"], wp["c_rejection"], meta["trainable_parameters"],
                     jets / seconds))  # fmt: skip
    print(f"demo data: {args.num_train} training jets, {args.epochs} epochs, batch "
          f"{args.batch_size}, {args.tracks} tracks; rejections at 70 % b-efficiency on "
          f"{args.num_test} test jets (jets/s include validation and start-up)")  # fmt: skip
    print("| model | light rej. | c rej. | parameters | training jets/s |")
    print("| --- | --- | --- | --- | --- |")
    for name, u_rej, c_rej, params, rate in rows:
        print(f"| {name} | {u_rej:.1f} | {c_rej:.2f} | {params:,} | {rate:,.0f} |")
    comparison = root / "comparison"
    run(["compare", *run_dirs, "--out", str(comparison), "--overwrite"])
    print(f"table and overlaid plots of all runs: {comparison}")


if __name__ == "__main__":
    main()
