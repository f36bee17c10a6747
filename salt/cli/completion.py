"""Tab completion of the ``salt`` command with argcomplete (``pip install salt-hep[completion]``,
then ``eval "$(register-python-argcomplete salt)"`` in the shell's startup file).

The shell runs ``salt`` with ``_ARGCOMPLETE`` set and the line typed so far in ``COMP_LINE``.
The subcommand names complete from salt's own table at once; the options of ``fit``,
``validate``, ``test`` and ``predict`` come from the full parser (jsonargparse hands it to
argcomplete while parsing), so they take as long as the parser takes to build.
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Mapping

COMPLETING_ENV = "_ARGCOMPLETE"


def completing() -> bool:
    """Whether the shell asked for completions rather than running a command."""
    return COMPLETING_ENV in os.environ


def typed_words() -> list[str]:
    """The words typed before the cursor, ``salt`` first (the last may be partial)."""
    line = os.environ.get("COMP_LINE", "")
    point = int(os.environ.get("COMP_POINT", len(line)))
    typed = line[:point]
    try:
        words = shlex.split(typed)
    except ValueError:  # an open quote
        words = typed.split()
    if typed.endswith(" "):
        words.append("")
    return words


def subcommand_parser(subcommands: Mapping[str, str]) -> argparse.ArgumentParser:
    """A parser that knows only the subcommand names (and their one-line help)."""
    parser = argparse.ArgumentParser(prog="salt")
    parser.add_argument("--debug", action="store_true")
    sub = parser.add_subparsers(dest="subcommand")
    for name, text in subcommands.items():
        sub.add_parser(name, help=text)
    return parser


def complete_subcommand(subcommands: Mapping[str, str]) -> int:
    """Print the matching subcommand names for the shell (argcomplete exits when done)."""
    try:
        import argcomplete
    except ImportError:
        return 1
    argcomplete.autocomplete(subcommand_parser(subcommands))
    return 0


def wants_subcommand(words: list[str]) -> bool:
    """Whether the cursor is on the subcommand (the first word after ``salt`` and its flags)."""
    after = [w for w in words[1:-1] if w != "--debug"]
    return not after


def patch_for_jsonargparse() -> None:
    """jsonargparse replaces argcomplete's introspective parsing, which is where argcomplete
    records mutually exclusive options and the options being parsed; without the records its
    listing of option names fails. No salt option is mutually exclusive."""
    from argcomplete.packages._argparse import IntrospectiveArgumentParser

    defaults: dict[str, object] = {"_action_conflicts": {}, "active_actions": []}
    for name, value in defaults.items():  # per-parse records; the process ends after completing
        if not hasattr(IntrospectiveArgumentParser, name):
            setattr(IntrospectiveArgumentParser, name, value)
