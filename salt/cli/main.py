"""The ``salt`` command: Lightning's subcommands plus the tools listed in :data:`COMMANDS`."""

from __future__ import annotations

import logging
import sys
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


# options every subcommand takes, shown by ``salt --help``
COMMON_OPTIONS = {
    "-h, --help": "the options of a subcommand (salt fit --help)",
    "--debug": "full tracebacks instead of one-line errors (or SALT_DEBUG=1)",
}
ENVIRONMENT = {
    "SALT_DEBUG=1": "as --debug",
    "SALT_VERBOSE=1": "keep the third-party console lines salt filters out",
}


def usage() -> str:
    """``salt --help``: every subcommand with its one-line help, and the common options."""
    rows = [*LIGHTNING_SUBCOMMANDS.items(), *((n, c.help) for n, c in COMMANDS.items())]
    width = max(len(name) for name in [*(n for n, _ in rows), *COMMON_OPTIONS, *ENVIRONMENT])
    lines = [
        "usage: salt <subcommand> [options]   (salt <subcommand> --help for its options)",
        "",
        "subcommands:",
        *(f"  {name:<{width}}  {text}" for name, text in rows),
        "",
        "options:",
        *(f"  {name:<{width}}  {text}" for name, text in COMMON_OPTIONS.items()),
        "",
        "environment:",
        *(f"  {name:<{width}}  {text}" for name, text in ENVIRONMENT.items()),
        "",
        "Shell completion: see 'Command line' in the docs (argcomplete).",
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
    from salt.cli.completion import completing

    if completing():  # the shell asks for completions (argcomplete)
        return complete()
    args = list(sys.argv[1:] if argv is None else argv)
    _configure_logging()
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name = ALIASES.get(args[0], args[0])
    if name.startswith("-") and name != "--debug":  # an option where the subcommand goes
        print(f"salt: error: no subcommand before '{name}'; see salt --help", file=sys.stderr)
        return 2
    if name in COMMANDS:
        return COMMANDS[name].load()(args[1:])
    from salt.cli.errors import run_cli

    return run_cli(lambda: run_lightning([a for a in args if a != "--debug"]), args)


def complete() -> int:
    """Completions for the line the shell is editing: subcommand names from the table above,
    the options of Lightning's subcommands from their parser (see :mod:`salt.cli.completion`)."""
    from importlib.util import find_spec

    from salt.cli.completion import complete_subcommand, typed_words, wants_subcommand

    words = typed_words()
    table = {**LIGHTNING_SUBCOMMANDS, **{name: c.help for name, c in COMMANDS.items()}}
    if wants_subcommand(words):
        return complete_subcommand(table)
    subcommand = next((w for w in words[1:] if not w.startswith("-")), "")
    if subcommand not in LIGHTNING_SUBCOMMANDS or find_spec("argcomplete") is None:
        return 1
    from salt.cli.completion import patch_for_jsonargparse
    from salt.cli.console import quiet_third_party

    quiet_third_party()
    patch_for_jsonargparse()
    from salt.cli.salt_cli import SaltCLI

    SaltCLI(args=[subcommand])  # jsonargparse hands its parser to argcomplete, which exits
    return 1


def run_lightning(cli_args: list[str]) -> None:
    """``salt fit|validate|test|predict``: the cheap checks first, then torch and Lightning."""
    from salt.cli.console import quiet_third_party
    from salt.cli.precheck import precheck
    from salt.compat.config_args import translate_config_args
    from salt.s3.cli import localize_config_args

    quiet_third_party()  # before Lightning is imported: its import-time lines are filtered too
    # --config s3://bucket/run/config.yaml is fetched first, then salt-ml configs are translated
    # to salt's syntax (a new file; salt's own pass unchanged)
    argv = localize_config_args(cli_args)
    check_config_text(argv)  # a binary file given as --config is named, not a decoding bug
    argv = translate_config_args(argv)
    precheck(argv)  # typos and missing files in a second, before the slow imports
    argv = without_empty_configs(argv)
    from salt.cli.salt_cli import SaltCLI

    quiet_third_party()  # again, for the console handler Lightning attached on import
    SaltCLI(args=argv)


def _config_values(argv: list[str]) -> list[tuple[int, int, str]]:
    """(first index, number of items, path) of each ``--config`` of a command line."""
    from salt.utils.argv import config_positions

    return [
        (index - 1, 2, value) if form == "sep" else (index, 1, value)
        for index, form, value in config_positions(argv)
    ]


def check_config_text(argv: list[str]) -> None:
    """Every local ``--config`` file that exists is UTF-8 text (YAML is)."""
    from pathlib import Path

    from salt.errors import ConfigError

    for _, _, value in _config_values(argv):
        path = Path(value)
        if not path.is_file():
            continue  # the pre-check says what it is
        try:
            path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"config file '{value}' is not text (byte {err.object[err.start]:#x} at offset "
                f"{err.start} is not UTF-8); expected a YAML file"
            ) from None
        except OSError as err:
            raise ConfigError(f"config file '{value}' cannot be read ({err.strerror})") from None


def without_empty_configs(argv: list[str]) -> list[str]:
    """Drop ``--config`` files that hold nothing (empty, or only comments): they set no option,
    and the parser would call them an 'Unexpected config'."""
    from pathlib import Path

    import yaml

    drop: set[int] = set()
    for index, count, value in _config_values(argv):
        path = Path(value)
        try:
            empty = path.is_file() and yaml.safe_load(path.read_text()) is None
        except (OSError, ValueError, yaml.YAMLError):
            empty = False
        if empty:
            drop.update(range(index, index + count))
    return [arg for i, arg in enumerate(argv) if i not in drop]


if __name__ == "__main__":
    sys.exit(main())
