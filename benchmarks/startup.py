"""How long the ``salt`` command takes to answer when it has little to do.

Times, as a new process each (median of ``--repeat`` runs): ``salt --help``, ``salt inspect`` on
a small demo file and a one-line config error (a misspelt trainer key). These must not pay for
importing torch and Lightning; ``--with-lightning`` adds ``salt test --help`` (which builds the
full parser, so it does) as the baseline for comparison.

    python benchmarks/startup.py [--repeat 5] [--with-lightning]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SALT = [sys.executable, "-m", "salt"]


def seconds(argv: list[str], expect: int) -> float:
    """Wall-clock seconds of one run of ``argv``, which must exit with ``expect``."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != expect:
        raise SystemExit(
            f"{' '.join(argv)}: exit code {done.returncode}, expected {expect}\n{done.stderr}"
        )
    return elapsed


def commands(work: Path, with_lightning: bool) -> dict[str, tuple[list[str], int]]:
    """The measured commands, by label, with the exit code each must end with."""
    sizes = ["--train", "2000", "--val", "10", "--test", "10"]
    subprocess.run(
        [*SALT, "demo-data", "--out", str(work / "demo"), *sizes], check=True, capture_output=True
    )
    typo = work / "typo.yaml"
    typo.write_text("trainer:\n  max_epoch: 3\n")
    measured = {
        "salt --help": ([*SALT, "--help"], 0),
        "salt inspect train.h5": ([*SALT, "inspect", str(work / "demo" / "train.h5")], 0),
        "config error (salt fit, misspelt key)": ([*SALT, "fit", "--config", str(typo)], 2),
    }
    if with_lightning:
        measured["salt test --help (builds the parser)"] = ([*SALT, "test", "--help"], 0)
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (median)")
    parser.add_argument(
        "--with-lightning", action="store_true", help="add salt test --help as a baseline"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="salt-startup-"))
    try:
        rows = []
        for label, (command, expect) in commands(work, args.with_lightning).items():
            times = [seconds(command, expect) for _ in range(args.repeat)]
            rows.append((label, statistics.median(times), min(times), max(times)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(label) for label, *_ in rows)
    print(f"| {'command':<{width}} | median s | min s | max s |")
    print(f"| {'-' * width} | --- | --- | --- |")
    for label, median, low, high in rows:
        print(f"| {label:<{width}} | {median:.2f} | {low:.2f} | {high:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
