"""The ``salt`` command: LightningCLI subcommands plus data tools (demo-data, inspect)."""

from __future__ import annotations

import logging
import sys
import warnings


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    salt_log = logging.getLogger("salt")
    if not salt_log.handlers:
        salt_log.addHandler(handler)
        salt_log.setLevel(logging.INFO)
    if args and args[0] == "demo-data":
        from salt.data.demo import demo_data_main

        return demo_data_main(args[1:])
    if args and args[0] == "calculate_quantiles":
        from salt.models.zoo.quantiles import calculate_quantiles_main

        return calculate_quantiles_main(args[1:])
    if args and args[0] in ("download_S3", "download-s3"):
        from salt.s3.cli import download_s3_main

        return download_s3_main(args[1:])
    if args and args[0] == "setup_muP":
        from salt.mup.cli import setup_mup_main

        return setup_mup_main(args[1:])
    if args and args[0] == "inspect":
        from salt.data.inspect_file import inspect_main

        return inspect_main(args[1:])
    if args and args[0] == "profile":
        from salt.profile import profile_main

        return profile_main(args[1:])
    from salt.cli import SaltCLI
    from salt.errors import run_cli
    from salt.s3.cli import localize_config_args

    # salt strips its own flags before handing the rest to LightningCLI, which would otherwise
    # warn that the arguments differ from sys.argv
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    cli_args = [a for a in args if a != "--debug"]
    # --config s3://bucket/run/config.yaml is fetched first (inside run_cli: errors are one line)
    return run_cli(lambda: SaltCLI(args=localize_config_args(cli_args)), args)


if __name__ == "__main__":
    sys.exit(main())
