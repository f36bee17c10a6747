"""Mass sculpting with and without DisCo: the demo GN2 trained twice on the same jets, once with
``configs/GN2_disco.yaml`` (DisCo against the jet mass), and the light-jet mass compared before
and after the b-tagging cut (:mod:`salt.evaluation.sculpting`).

Prints, per model and working point: light rejection, KS distance (and its p-value), JS
divergence (and its value for a random subset of the same size) and the light jets passing.
The predictions of the test and validation files are pooled (``--samples``) for statistics.

    python benchmarks/disco_sculpting.py [--num_train 100000] [--epochs 2] [--strength 10]
                                        [--batch_size 100] [--in_process]
    python benchmarks/disco_sculpting.py --runs logs/<run without> logs/<run with DisCo>
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from salt.evaluation.sculpting import mass_sculpting

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
JET_FIELDS = "[pt, eta, mass, HadronConeExclTruthLabelID, flavour_label]"


def salt(args: list[str], in_process: bool = False) -> None:
    """``salt ARGS`` as a new process, or with ``in_process`` in this one (no start-up)."""
    if in_process:
        from salt.cli.main import main

        if main(args):
            raise SystemExit(f"salt {' '.join(args[:1])} failed (its error is above)")
        return
    done = subprocess.run([sys.executable, "-m", "salt", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"salt {' '.join(args[:1])} failed:\n{done.stderr[-2000:]}")


def disco_fragment(strength: float | None, out: Path) -> tuple[Path, float]:
    """``GN2_disco.yaml``, with its DisCo strength replaced when one is given."""
    config = yaml.safe_load((CONFIGS / "GN2_disco.yaml").read_text())
    disco = config["model"]["regularisers"][0]["init_args"]
    if strength is None:
        return CONFIGS / "GN2_disco.yaml", float(disco["strength"])
    disco["strength"] = strength
    out.write_text(yaml.safe_dump(config))
    return out, strength


def train(name: str, fragments: list[Path], args: argparse.Namespace, root: Path) -> Path:
    """Fit the demo GN2 plus ``fragments`` on the demo data; returns the run directory."""
    data = args.data
    configs = [CONFIGS / "GN2.yaml", CONFIGS / "GN2_demo.yaml", *fragments]
    salt(
        [
            "fit",
            *(a for c in configs for a in ("--config", str(c))),
            f"--data.train_file={data / 'train.h5'}",
            f"--data.val_file={data / 'val.h5'}",
            f"--data.test_file={data / 'test.h5'}",
            f"--data.norm_dict={data / 'norm_dict.yaml'}",
            f"--data.class_dict={data / 'class_dict.yaml'}",
            f"--data.num_train={args.num_train}",
            f"--data.num_val={args.num_val}",
            f"--trainer.max_epochs={args.epochs}",
            *([f"--data.batch_size={args.batch_size}"] if args.batch_size else []),
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={root}",
            "--log_suffix=sculpting",
            "--force",
            "-n",
            name,
        ],
        args.in_process,
    )
    return root / f"{name}_sculpting"


def predictions(run: Path, data: Path, sample: str, in_process: bool = False) -> Path:
    """The predictions of ``run`` on ``data/<sample>.h5`` with the jet mass (written once)."""
    suffix = f"sculpting_{sample}"
    pattern = f"*__test_{suffix}.h5"
    found = sorted((run / "ckpts").glob(pattern), key=lambda p: p.stat().st_mtime)
    if not found:
        salt(
            [
                "test",
                "--config",
                str(run / "config.yaml"),
                f"--data.test_file={data / f'{sample}.h5'}",
                "--data.num_test=-1",
                f"--evaluation.jet_fields={JET_FIELDS}",
                "--evaluation.run_evaluation=false",
                "--trainer.enable_progress_bar=false",
                f"--test_suffix={suffix}",
            ],
            in_process,
        )
        found = sorted((run / "ckpts").glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1]  # the newest: that of the checkpoint salt test chose last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "demo")
    parser.add_argument("--num_train", type=int, default=100_000)
    parser.add_argument("--num_val", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=None, help="default: the configs'")
    parser.add_argument("--strength", type=float, default=None, help="default: GN2_disco.yaml's")
    parser.add_argument("--samples", nargs="+", default=["test", "val"], help="pooled files")
    parser.add_argument("--working_points", type=float, nargs="+", default=[0.70, 0.85])
    parser.add_argument("--runs", type=Path, nargs=2, metavar=("WITHOUT", "WITH"),
                        help="evaluate these run directories instead of training")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    parser.add_argument("--in_process", action="store_true",
                        help="run salt's fits and tests in this process, not a new one each "
                        "(no start-up in the fit times)")  # fmt: skip
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp())
    root.mkdir(parents=True, exist_ok=True)
    fragment, strength = disco_fragment(args.strength, root / "GN2_disco_strength.yaml")
    seconds: dict[str, float] = {}
    if args.runs:
        runs = dict(zip(("without DisCo", "with DisCo"), args.runs))
        print(f"runs: {args.runs[0]} (without DisCo), {args.runs[1]} (with DisCo)")
    else:
        runs = {}
        for label, name, fragments in [
            ("without DisCo", "GN2_nodisco", []),
            ("with DisCo", "GN2_disco", [fragment]),
        ]:
            start = time.perf_counter()
            runs[label] = train(name, fragments, args, root)
            seconds[label] = time.perf_counter() - start
        print(f"demo data: {args.num_train} training jets, {args.epochs} epochs, DisCo strength "
              f"{strength:g}; fit time without / with DisCo: "
              f"{' / '.join(f'{s:.0f} s' for s in seconds.values())}; runs in {root}")  # fmt: skip
    print(f"light jets of the pooled samples {args.samples}; JS in bits; 'JS random': the JS "
          "of a random subset of the passing size (a cut independent of mass)")  # fmt: skip
    print("| model | WP | light rej. | KS | KS p-value | JS | JS random | light jets passing |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, run in runs.items():
        files = [predictions(run, args.data, s, args.in_process) for s in args.samples]
        for wp in args.working_points:
            f = mass_sculpting(files, working_point=wp)
            print(f"| {label} | {wp:.0%} | {f.light_rejection:.1f} | {f.ks:.3f} | "
                  f"{f.ks_pvalue:.2g} | {f.js:.3f} | {f.js_null:.3f} | "
                  f"{f.n_light_pass} / {f.n_light} |")  # fmt: skip


if __name__ == "__main__":
    main()
