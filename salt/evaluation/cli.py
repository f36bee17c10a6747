"""``salt evaluate`` and ``salt compare``: evaluation from predictions files, without the network.

    salt evaluate PRED.h5 [--fc 0.1] [--reference TAGGER] [--out DIR] [--overwrite]
    salt compare RUN_OR_PRED [RUN_OR_PRED ...] [--reference LABEL] [--out DIR] [--overwrite]

Heavy modules (h5py, matplotlib, yaml) are imported only once the arguments are parsed, so
``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from salt.errors import OneLineParser
from salt.evaluation.metrics import DEFAULT_WORKING_POINTS
from salt.evaluation.pt_bins import DEFAULT_PT_BINS

USER_ERROR_EXIT = 2


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fc", type=float, default=0.2, help="c-jet fraction of the b-tagging discriminant"
    )
    parser.add_argument("--ftau", type=float, default=0.0, help="tau-jet fraction")
    parser.add_argument(
        "--working_points",
        type=float,
        nargs="+",
        default=list(DEFAULT_WORKING_POINTS),
        help="b-jet efficiencies of the table (default: %(default)s)",
    )
    parser.add_argument(
        "--pt_working_point",
        type=float,
        default=0.70,
        help="b-jet efficiency whose inclusive cut the plots versus pT apply",
    )
    parser.add_argument(
        "--pt_bins",
        type=float,
        nargs="+",
        default=list(DEFAULT_PT_BINS),
        help="pT bin edges in GeV",
    )
    parser.add_argument(
        "--tag",
        default=None,
        help="bold first line of the plots' information box, e.g. 'ATLAS Simulation Internal'",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def evaluate_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="salt evaluate",
        description="Recompute metrics.json and the plots of a 'salt test' predictions file "
        "without running the network (e.g. with another --fc).",
    )
    parser.add_argument(
        "pred_file", help="predictions file of 'salt test' (PRED.h5, or PRED.h5:TAGGER)"
    )
    parser.add_argument(
        "--tagger", help="tagger to evaluate (default: the run's model, or the file's only one)"
    )
    parser.add_argument(
        "--reference",
        help="another tagger in the file (e.g. carried from the test file) to compare with",
    )
    parser.add_argument(
        "--label_field",
        help="truth field (default: flavour_label with the file's class names, else "
        "HadronConeExclTruthLabelID)",
    )
    parser.add_argument("--test_file", type=Path, help="test file for the IP baseline")
    parser.add_argument(
        "--out",
        type=Path,
        help="output directory (default: <run>/evaluation/<predictions name>__fc<fc>)",
    )
    _common_options(parser)
    return parser


def compare_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="salt compare",
        description="Compare runs or taggers: one table (Markdown and JSON) and overlaid plots "
        "(rejection with ratio to a reference, discriminants, efficiency and rejection "
        "versus pT).",
    )
    parser.add_argument(
        "sources",
        nargs="+",
        help="run directories, predictions files, or PRED.h5:TAGGER for one tagger of a file",
    )
    parser.add_argument(
        "--reference", help="tagger label the ratios divide by (default: the first source)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("comparison"),
        help="output directory (default: %(default)s)",
    )
    _common_options(parser)
    return parser


def _setup_logging() -> None:
    """Messages of salt's evaluation on stderr, once, whoever calls first."""
    log = logging.getLogger("salt")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _run(prog: str, debug: bool, work: Callable[[], object]) -> int:
    """User errors (bad file, key, value, existing output) as one line and exit code 2."""
    if debug:
        work()
        return 0
    try:
        work()
    except (FileNotFoundError, FileExistsError, KeyError, ValueError, OSError) as err:
        from salt.cli.errors import user_message

        print(f"{prog}: error: {user_message(err)}", file=sys.stderr)  # one line, file named
        return USER_ERROR_EXIT
    return 0


def check_fractions(fc: float, ftau: float | None) -> None:
    """``--fc``/``--ftau`` are fractions of a discriminant's denominator."""
    tau = ftau or 0.0
    if not (0 <= fc <= 1 and 0 <= tau <= 1 and fc + tau <= 1):
        raise ValueError(
            f"--fc {fc}, --ftau {tau}: expected non-negative fractions with fc+ftau <= 1"
        )


def _check_hdf5(path: Path) -> None:
    """A predictions file that is not HDF5 is named (HDF5's own message names no file)."""
    if path.is_file():
        with path.open("rb") as handle:
            head = handle.read(8)
        if head != b"\x89HDF\r\n\x1a\n":
            raise ValueError(f"{path}: not an HDF5 file (expected a predictions file of salt test)")


def default_evaluate_dir(pred_file: Path, fc: float) -> Path:
    """Beside ``salt test``'s own evaluation: ``<run>/evaluation/<predictions stem>__fc<fc>``."""
    parent = pred_file.parent
    base = parent.parent if parent.name == "ckpts" else parent
    return base / "evaluation" / f"{pred_file.stem}__fc{fc:g}"


def evaluate_main(argv: Sequence[str]) -> int:
    """``salt evaluate``: metrics.json and plots from a predictions file."""
    args = evaluate_parser().parse_args(list(argv))
    _setup_logging()

    def work() -> None:
        from salt.evaluation.compare import resolve_source
        from salt.evaluation.evaluate import evaluate_predictions

        check_fractions(args.fc, args.ftau)  # before the file is read (and logged about)
        if Path(args.pred_file).is_dir():
            raise ValueError(f"{args.pred_file}: expected a predictions file, not a directory")
        pred = Path(args.pred_file)
        if not pred.exists() and ":" in args.pred_file:  # PRED.h5:TAGGER
            pred = Path(args.pred_file.rsplit(":", 1)[0])
        _check_hdf5(pred)
        spec = args.pred_file if args.tagger is None else f"{args.pred_file}:{args.tagger}"
        source = resolve_source(spec)
        out = args.out or default_evaluate_dir(source.pred_file, args.fc)
        evaluate_predictions(
            source.pred_file,
            out,
            source.tagger,
            label_field=args.label_field,
            fc=args.fc,
            working_points=args.working_points,
            test_file=args.test_file,
            overwrite=args.overwrite,
            ftau=args.ftau,
            reference=args.reference,
            pt_working_point=args.pt_working_point,
            pt_bins=args.pt_bins,
            tag=args.tag,
        )

    return _run("salt evaluate", args.debug, work)


def compare_main(argv: Sequence[str]) -> int:
    """``salt compare``: one table and overlaid plots for several runs or taggers."""
    args = compare_parser().parse_args(list(argv))
    _setup_logging()

    def work() -> None:
        from salt.evaluation.compare import compare

        check_fractions(args.fc, args.ftau)
        compare(
            args.sources,
            args.out,
            reference=args.reference,
            fc=args.fc,
            ftau=args.ftau,
            working_points=args.working_points,
            pt_working_point=args.pt_working_point,
            pt_bins=args.pt_bins,
            overwrite=args.overwrite,
            tag=args.tag,
        )

    return _run("salt compare", args.debug, work)
