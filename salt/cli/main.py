"""The ``salt`` command: Lightning's subcommands plus the tools listed in :data:`COMMANDS`."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from importlib import import_module
from typing import NamedTuple

LIGHTNING_SUBCOMMANDS = {
    "fit": "train a model (writes a run directory)",
    "validate": "compute the validation losses of a checkpoint",
    "test": "write the predictions file of a checkpoint and evaluate it",
    "predict": "write the predictions file of a checkpoint for a file without labels",
}


class Command(NamedTuple):
    """A ``salt`` tool: where its entry point lives (``module:function``) and what it does."""

    target: str
    help: str

    def load(self) -> Callable[[list[str]], int]:
        module, _, function = self.target.partition(":")
        return getattr(import_module(module), function)


# The tools beside Lightning's subcommands: name -> (module:function taking argv, one-line help).
# Entry points are imported only when called, so ``salt --help`` stays fast.
COMMANDS: dict[str, Command] = {
    "demo-data": Command("salt.data.demo:demo_data_main", "generate the demo training files"),
    "inspect": Command("salt.data.inspect_file:inspect_main", "summarise a training file"),
    "calculate_quantiles": Command(
        "salt.models.zoo.quantiles:calculate_quantiles_main",
        "quantile bin edges of the input variables (for binned embeddings)",
    ),
    "download_S3": Command(
        "salt.s3.cli:download_s3_main", "download a config's data files from S3"
    ),
    "setup_muP": Command("salt.mup.cli:setup_mup_main", "write the muP base shapes of a config"),
    "profile": Command(
        "salt.cli.profile:profile_main", "parameters, MACs and time per module of a config"
    ),
    "evaluate": Command(
        "salt.evaluation.cli:evaluate_main", "metrics and plots from a predictions file"
    ),
    "compare": Command(
        "salt.evaluation.cli:compare_main", "one table and overlaid plots for several runs"
    ),
    "migrate": Command(
        "salt.compat.migrate:migrate_main", "rewrite a salt-ml config in salt's own syntax"
    ),
    "norm-dict": Command(
        "salt.data.norm_stats:norm_dict_main", "norm dict and class dict of a config's files"
    ),
}
ALIASES = {"download-s3": "download_S3"}


def usage() -> str:
    """``salt --help``: every subcommand with its one-line help."""
    rows = [*LIGHTNING_SUBCOMMANDS.items(), *((n, c.help) for n, c in COMMANDS.items())]
    width = max(len(name) for name, _ in rows)
    lines = [
        "usage: salt <subcommand> [options]   (salt <subcommand> --help for its options)",
        "",
        "subcommands:",
        *(f"  {name:<{width}}  {text}" for name, text in rows),
    ]
    return "\n".join(lines)


def _configure_logging() -> None:
    salt_log = logging.getLogger("salt")
    if not salt_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        salt_log.addHandler(handler)
        salt_log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    _configure_logging()
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name = ALIASES.get(args[0], args[0])
    if name in COMMANDS:
        return COMMANDS[name].load()(args[1:])
    from salt.cli.errors import run_cli
    from salt.cli.salt_cli import SaltCLI
    from salt.s3.cli import localize_config_args

    # salt strips its own flags before handing the rest to LightningCLI, which would otherwise
    # warn that the arguments differ from sys.argv
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    cli_args = [a for a in args if a != "--debug"]
    # --config s3://bucket/run/config.yaml is fetched first (inside run_cli: errors are one line)
    from salt.compat.config_args import translate_config_args

    # salt-ml configs are translated to salt's syntax (a new file; salt's own pass unchanged)
    return run_cli(
        lambda: SaltCLI(args=translate_config_args(localize_config_args(cli_args))), args
    )


if __name__ == "__main__":
    sys.exit(main())
