"""``to_onnx`` and ``get_onnx_metadata``: the command-line faces of :mod:`salt.export`.

Exit codes: 0 success, 1 the model cannot be exported or fails the parity check (or a bug,
shown with its traceback), 2 a usage error (missing file, existing output without
--overwrite, unknown task, ...). Errors are reported by salt's shared
:func:`salt.cli.errors.run_cli`; ``--debug`` shows every traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from salt.cli.errors import USER_ERRORS, one_line, run_cli
from salt.errors import OneLineParser

EXPORT_FAILED = 1
USAGE_ERROR = 2


def _setup_logging() -> None:
    salt_log = logging.getLogger("salt")
    if not salt_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        salt_log.addHandler(handler)
        salt_log.setLevel(logging.INFO)


def to_onnx_main(argv: list[str] | None = None) -> int:
    """``to_onnx --ckpt_path RUN/ckpts/X.ckpt``: write ``RUN/network.onnx`` after a parity check."""
    from salt.cli.console import quiet_third_party

    quiet_third_party()  # before Lightning is imported: its banner lines are filtered too
    from salt.export.onnx_export import (
        DEFAULT_OPSET,
        DEFAULT_PARITY_JETS,
        DEFAULT_TOLERANCE,
        ExportError,
    )

    parser = OneLineParser(
        prog="to_onnx",
        description="Export a trained salt run to ONNX (RUN/network.onnx), checked against "
        "PyTorch before it is written.",
    )
    parser.add_argument("--ckpt_path", required=True, help="RUN/ckpts/<checkpoint>.ckpt")
    parser.add_argument("--config", default=None, help="run config (default RUN/config.yaml)")
    parser.add_argument("--name", default=None, help="output name prefix (default: run name)")
    parser.add_argument("--tasks", nargs="+", default=None, help="tasks to export (default all)")
    parser.add_argument("--output", default=None, help="ONNX file (default RUN/network.onnx)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 17)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="largest accepted ONNX vs PyTorch difference (absolute on probabilities)",
    )
    parser.add_argument(
        "--parity_jets",
        type=int,
        default=DEFAULT_PARITY_JETS,
        help="validation jets in the parity check (0: generated jets only)",
    )
    parser.add_argument(
        "--athena",
        action="store_true",
        help="write RUN/network_athena.onnx for Athena's GNN tool (one jet per call, "
        "gnn_config metadata) instead of the batched graph",
    )
    parser.add_argument(
        "--track_selection",
        default="r22default",
        help="with --athena: the Athena track selection named in gnn_config",
    )
    parser.add_argument("--debug", action="store_true", help="show every traceback")
    args = parser.parse_args(argv)
    _setup_logging()
    quiet_third_party()  # again, for the console handler Lightning attached on import
    failed = False

    def export() -> None:
        """Export; a model that cannot be exported (or fails parity) is reported here."""
        nonlocal failed
        try:
            _export(args)
        except ExportError as err:  # includes ParityError
            print(f"to_onnx: error: {err} (nothing written)", file=sys.stderr)
            failed = True

    code = run_cli(export, list(sys.argv[1:] if argv is None else argv), prog="to_onnx")
    return code or (EXPORT_FAILED if failed else 0)


def _export(args: argparse.Namespace) -> None:
    """The batched export (or, with ``--athena``, Athena's), with a line on what was written."""
    from salt.export.onnx_export import export_onnx

    if args.athena:
        from salt.export.athena import athena_main

        athena_main(args)
        return
    result = export_onnx(
        args.ckpt_path,
        config=args.config,
        output=args.output,
        name=args.name,
        tasks=args.tasks,
        overwrite=args.overwrite,
        opset=args.opset,
        tolerance=args.tolerance,
        parity_jets=args.parity_jets,
    )
    parity = result.parity
    print(
        f"{result.path}: {len(result.metadata['outputs'])} outputs, parity max discrepancy "
        f"{parity.max_diff:.2g} (tolerance {parity.tolerance:g}) on {parity.num_jets} jets"
    )


def metadata_main(argv: list[str] | None = None) -> int:
    """``get_onnx_metadata FILE [--key K]``: print the metadata of an exported network as JSON."""
    from salt.export.metadata import METADATA_KEY, lookup, metadata_props

    parser = OneLineParser(
        prog="get_onnx_metadata",
        description="Print the salt metadata embedded in an ONNX file.",
    )
    parser.add_argument("file", help="the ONNX file")
    parser.add_argument(
        "--key",
        default=None,
        help="print only this entry: a dotted path such as 'inputs.0.variables', or another "
        "metadata_props key",
    )
    args = parser.parse_args(argv)
    try:
        props = metadata_props(args.file)
        if args.key is not None and args.key in props and args.key != METADATA_KEY:
            print(props[args.key])
            return 0
        if METADATA_KEY not in props:
            raise KeyError(
                f"'{args.file}' has no '{METADATA_KEY}' metadata "
                f"(keys: {', '.join(props) or 'none'})"
            )
        value = json.loads(props[METADATA_KEY])
        if args.key is not None:
            value = lookup(value, args.key)
    except USER_ERRORS as err:
        print(f"get_onnx_metadata: error: {one_line(err)}", file=sys.stderr)
        return USAGE_ERROR
    print(value if isinstance(value, str) else json.dumps(value, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(to_onnx_main())
