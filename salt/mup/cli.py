"""``setup_muP``: write the muP base shapes of a config, and check them.

    setup_muP -c configs/GN2.yaml -c configs/GN2_muP.yaml [--overwrite]
    setup_muP -c configs/GN2.yaml -c configs/GN2_muP.yaml --check [--widths 32 64 128 256]
        [--steps 5] [--lr 0.002] [--parametrisations muP SP]

Other arguments are passed on to salt's config parser, e.g. ``--data.train_file=...``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

from salt.cli.errors import run_cli

log = logging.getLogger(__name__)
PROG = "setup_muP"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Build the muP base and delta models of a salt config (model.muP_config) and write "
            "their storeshapes file, models and configs to shape_path; --check also runs a "
            "coordinate check. Unknown arguments (e.g. --data.train_file=...) go to salt's "
            "config parser."
        ),
    )
    parser.add_argument(
        "-c",
        "--config",
        "-config",
        dest="configs",
        action="append",
        required=True,
        metavar="CONFIG",
        help="salt config file; repeat to merge several, as with salt fit --config",
    )
    parser.add_argument(
        "--overwrite", "--force", action="store_true", help="replace existing outputs"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="run a coordinate check (needs the storeshapes; written first when missing)",
    )
    parser.add_argument(
        "--widths",
        type=int,
        nargs="+",
        default=[32, 64, 128, 256],
        help="widths of the scanned parameter for --check (default: 32 64 128 256)",
    )
    parser.add_argument("--steps", type=int, default=5, help="training steps per width")
    parser.add_argument(
        "--lr", type=float, default=None, help="learning rate for --check (default lrs_config.max)"
    )
    parser.add_argument(
        "--parameter",
        default=None,
        help="width block of muP_config scanned by --check (default embed_dim)",
    )
    parser.add_argument(
        "--parametrisations",
        nargs="+",
        choices=["muP", "SP"],
        default=["muP", "SP"],
        help="parametrisations compared by --check (default: muP SP)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def run(argv: list[str]) -> list[Path]:
    """Parse ``argv`` and do the work; returns the written paths. Errors propagate."""
    from salt.mup.config import storeshapes_path
    from salt.mup.setup import config_args, config_mup, setup_mup

    options, extra = _parser().parse_known_args(argv)
    extra = [a for a in extra if a != "--debug"]
    if options.steps < 1:
        raise ValueError(f"--steps: expected a positive int, got {options.steps}")
    if any(w <= 0 for w in options.widths):
        raise ValueError(f"--widths: expected positive ints, got {options.widths}")
    written: list[Path] = []
    if not options.check:
        written.append(setup_mup(options.configs, extra, overwrite=options.overwrite))
        return written
    config_args(options.configs)  # missing files fail before anything is built
    if "muP" in options.parametrisations:
        path = storeshapes_path(config_mup(options.configs, extra))
        if not path.is_file():
            written.append(setup_mup(options.configs, extra, overwrite=options.overwrite))
    from salt.mup.coord_check import coord_check_from_config

    written += coord_check_from_config(
        options.configs,
        extra,
        widths=options.widths,
        steps=options.steps,
        lr=options.lr,
        parameter=options.parameter,
        parametrisations=options.parametrisations,
        overwrite=options.overwrite,
    )
    return written


def setup_mup_main(argv: list[str] | None = None) -> int:
    """The ``setup_muP`` command: 0 on success, 2 (one line on stderr) on a user error, 1 with
    the traceback on a bug (:func:`salt.cli.errors.run_cli`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    salt_log = logging.getLogger("salt")
    if not salt_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        salt_log.addHandler(handler)
        salt_log.setLevel(logging.INFO)
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")

    def setup() -> None:
        for path in run(args):
            log.info("wrote %s", path)

    try:
        return run_cli(setup, args, prog=PROG)
    except SystemExit as err:  # argparse: usage errors (2) and --help (0)
        return int(err.code or 0)


__all__ = ["run", "setup_mup_main"]
