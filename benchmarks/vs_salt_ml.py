"""salt against salt-ml on the same network and files, in one run.

Two comparisons (salt-ml installed in its own virtual environment, ``--salt-ml-venv``; its GN2
config written by a generator such as ``salt_ml_gn2.py`` and passed as ``--salt-ml-config``):

``physics``: trains the small GN2 with both frameworks for the same epochs on the same jets,
evaluates both on the same test jets and prints the b-tagging rejection tables (light and c
rejection at 60/70/77/85 % b-efficiency, f_c = 0.2, binomial uncertainties)::

    python benchmarks/vs_salt_ml.py physics --salt-ml-config small.yaml --epochs 3

``test``: trains both GN2s for a few steps (the checkpoint size is what matters), then times
``salt test`` on the same test jets with each, as whole commands (start-up included), and their
peak resident memory::

    python benchmarks/vs_salt_ml.py test --salt-ml-config gn2.yaml --num-test 10000

Both need ``/usr/bin/time`` for the peak memory.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import yaml

from salt.evaluation.metrics import b_discriminant, efficiency_cut, rejection

ROOT = Path(__file__).resolve().parents[1]
EFFICIENCIES = (0.60, 0.70, 0.77, 0.85)
FLAVOURS = ("b", "c", "u", "tau")


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run a command under /usr/bin/time; returns (wall seconds, peak RSS GiB)."""
    timing = log.with_suffix(".time")
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(
            ["/usr/bin/time", "-v", "-o", str(timing), *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}; see {log}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", timing.read_text())
    return wall, (int(rss[1]) / 2**20 if rss else float("nan"))


def newest(pattern: str, where: Path) -> Path:
    found = sorted(where.glob(pattern), key=lambda p: p.stat().st_mtime)
    if not found:
        sys.exit(f"nothing matches {pattern} under {where}")
    return found[-1]


def data_args(data: Path, ours: bool) -> list[str]:
    """The same five data files for both frameworks."""
    files = {
        "train_file": data / "train.h5",
        "val_file": data / "val.h5",
        "test_file": data / "test.h5",
        "norm_dict": data / "norm_dict.yaml",
        "class_dict": data / "class_dict.yaml",
    }
    if ours:
        return [a for key, value in files.items() for a in (f"--data.{key}", str(value))]
    return [f"--data.{key}={value}" for key, value in files.items()]


def ours_salt() -> str:
    return str(Path(sys.executable).parent / "salt")


def peer_salt(args: argparse.Namespace) -> str:
    return str(args.salt_ml_venv / "bin" / "salt")


def peer_config(args: argparse.Namespace, out: Path) -> Path:
    """The salt-ml config with only salt-ml's and Lightning's own callbacks (a generator may
    add timing callbacks from its own directory)."""
    config = yaml.safe_load(args.salt_ml_config.read_text())
    callbacks = config.get("trainer", {}).get("callbacks") or []
    config["trainer"]["callbacks"] = [
        c for c in callbacks if str(c.get("class_path", "")).startswith(("salt.", "lightning."))
    ]
    path = out / "salt_ml_config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def fit_both(args: argparse.Namespace, out: Path, ours_configs: list[str], extra: dict) -> dict:
    """Fit with salt-ml, then with salt; returns {framework: (wall, rss, run dir)}."""
    peer_dir, ours_dir = out / "salt_ml_logs", out / "ours_logs"
    common = {"data.batch_size": args.batch, "data.num_workers": args.workers, **extra}
    peer_cmd = [peer_salt(args), "fit", "--config", str(peer_config(args, out)), "--force"]
    peer_cmd += ["-ls", "vs", f"--trainer.default_root_dir={peer_dir}"]
    peer_cmd += data_args(args.data, ours=False) + [f"--{k}={v}" for k, v in common.items()]
    wall, rss = run(peer_cmd, out / "salt_ml_fit.log", {"COMET_MODE": "offline"})
    results = {"salt-ml": (wall, rss, newest("*", peer_dir))}
    ours_cmd = [ours_salt(), "fit", *(a for c in ours_configs for a in ("--config", c))]
    ours_cmd += ["-n", "vs", "--trainer.default_root_dir", str(ours_dir)]
    ours_cmd += ["--trainer.logger", "false", *data_args(args.data, ours=True)]
    ours_cmd += [a for k, v in common.items() for a in (f"--{k}", str(v))]
    wall, rss = run(ours_cmd, out / "ours_fit.log")
    results["salt"] = (wall, rss, newest("vs_*", ours_dir))
    return results


def test_both(args: argparse.Namespace, out: Path, fits: dict, evaluate: bool = True) -> dict:
    """``salt test`` with both; returns {framework: (wall, rss, predictions file)}. Without
    ``evaluate`` salt writes only the predictions file (no metrics and plots), as salt-ml."""
    common = {
        "data.test_file": args.data / "test.h5",
        "data.num_test": args.num_test,
        "data.batch_size": args.batch,
        "data.num_workers": args.workers,
    }
    peer_run, ours_run = fits["salt-ml"][2], fits["salt"][2]
    peer_cmd = [peer_salt(args), "test", "--config", str(peer_run / "config.yaml")]
    peer_cmd += [f"--{k}={v}" for k, v in common.items()]
    wall, rss = run(peer_cmd, out / "salt_ml_test.log", {"COMET_MODE": "offline"})
    results = {"salt-ml": (wall, rss, newest("**/*test*.h5", peer_run))}
    ours_cmd = [ours_salt(), "test", "--config", str(ours_run / "config.yaml")]
    ours_cmd += [a for k, v in common.items() for a in (f"--{k}", str(v))]
    if not evaluate:  # the same work as salt-ml's test: the predictions file only
        ours_cmd += ["--evaluation.run_evaluation", "false"]
    wall, rss = run(ours_cmd, out / "ours_test.log")
    results["salt"] = (wall, rss, newest("ckpts/*__test_*.h5", ours_run))
    return results


def rejection_table(pred_file: Path, test_file: Path, fc: float) -> dict:
    """Light and c rejections (with binomial uncertainties) at the b-efficiency points."""
    with contextlib.suppress(ImportError):  # salt-ml compresses with HDF5 filter plugins
        import hdf5plugin  # noqa: F401
    with h5py.File(pred_file) as f:
        jets = f["jets"]
        names = jets.dtype.names or ()
        tagger = next(n[: -len("_pb")] for n in names if n.endswith("_pb"))
        probs = {fl: jets[f"{tagger}_p{fl}"].astype(np.float64) for fl in FLAVOURS}
    with h5py.File(test_file) as f:
        labels = f["jets"].fields("flavour_label")[: len(probs["b"])]
    disc = b_discriminant(probs, fc=fc)
    table = {}
    for eff in EFFICIENCIES:
        cut = efficiency_cut(disc[labels == 0], eff)
        row = {}
        for name, label in (("light", 2), ("c", 1)):
            bkg = disc[labels == label]
            rej = rejection(bkg, cut)
            passed = max(int((bkg > cut).sum()), 1)
            row[name] = (rej, rej / np.sqrt(passed))  # binomial, small efficiency
        table[eff] = row
    return table


def print_tables(tables: dict[str, dict]) -> None:
    print(f"{'b-eff':>6} " + " ".join(f"{n + ' light-rej':>22}{n + ' c-rej':>18}" for n in tables))
    for eff in EFFICIENCIES:
        cells = []
        for table in tables.values():
            light, charm = table[eff]["light"], table[eff]["c"]
            cells.append(
                f"{light[0]:>14.2f} ± {light[1]:<5.2f}{charm[0]:>11.2f} ± {charm[1]:<5.2f}"
            )
        print(f"{eff:>6.2f} " + " ".join(cells))


def physics(args: argparse.Namespace, out: Path) -> None:
    extra = {"data.num_train": args.num_train, "trainer.max_epochs": args.epochs}
    extra["data.num_val"] = 20_000
    fits = fit_both(args, out, ["configs/GN2.yaml", "configs/GN2_small.yaml"], extra)
    tests = test_both(args, out, fits)
    tables = {
        name: rejection_table(tests[name][2], args.data / "test.h5", args.fc)
        for name in ("salt-ml", "salt")
    }
    for name, (wall, rss, run_dir) in fits.items():
        print(f"{name:8s} fit {wall:7.1f} s  peak RSS {rss:.2f} GiB  ({run_dir})")
    print(
        f"small GN2, {args.num_train} training jets, {args.epochs} epochs, "
        f"{args.num_test} test jets, f_c={args.fc}"
    )
    print_tables(tables)


def test_speed(args: argparse.Namespace, out: Path) -> None:
    extra = {
        "trainer.limit_train_batches": 2,
        "trainer.limit_val_batches": 1,
        "trainer.max_epochs": 1,
    }
    fits = fit_both(args, out, ["configs/GN2.yaml"], extra)
    tests = test_both(args, out, fits, evaluate=False)
    rates = {}
    for name, (wall, rss, pred) in tests.items():
        rates[name] = args.num_test / wall
        print(
            f"{name:8s} salt test {args.num_test} jets: {wall:6.1f} s  {rates[name]:7.1f} jets/s"
            f"  peak RSS {rss:.2f} GiB  ({pred.name})"
        )
    ratio_rss = tests["salt"][1] / tests["salt-ml"][1]
    print(
        f"ratio salt / salt-ml: {rates['salt'] / rates['salt-ml']:.2f}x jets/s, "
        f"{ratio_rss:.2f}x peak memory"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["physics", "test"])
    parser.add_argument("--salt-ml-config", type=Path, required=True)
    parser.add_argument("--salt-ml-venv", type=Path, default=Path("/tmp/vs-salt-ml/venv"))
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "demo")
    parser.add_argument("--out", type=Path, default=Path("/tmp/salt_vs_salt_ml"))
    parser.add_argument("--num-train", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--num-test", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--fc", type=float, default=0.2)
    args = parser.parse_args()
    args.data = args.data.resolve()
    args.salt_ml_config = args.salt_ml_config.resolve()
    out = args.out / args.mode
    out.mkdir(parents=True, exist_ok=True)
    (physics if args.mode == "physics" else test_speed)(args, out)


if __name__ == "__main__":
    main()
