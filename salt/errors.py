"""What a user error is: the exception type every floor raises for bad input.

Raise :class:`UserError` where input enters (a config value, a file, a norm dict, a variable
name) with one line naming the file, key or variable and what was expected. The command line
(:mod:`salt.cli.errors`) prints such errors as one line; anything else is treated as a bug and
keeps its traceback. This module sits at the bottom of the package: it imports nothing of salt.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable
from typing import NoReturn


class UserError(ValueError):
    """Bad input from the user: shown as ``salt: error: <message>``, exit code 2.

    A ``ValueError`` so that code (and tests) written before it existed keep catching it.
    """


class ConfigError(UserError):
    """A config value that is missing, inconsistent or of the wrong kind."""


class InputFileError(UserError):
    """A data, norm-dict or class-dict file that does not match what the config asks for."""


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` for salt's tools: a usage mistake (a missing argument, a value of the wrong
    type) is one ``<prog>: error:`` line and exit code 2, like every user error, with a pointer
    to ``--help`` instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def suggest(unknown: str, known: Iterable[str]) -> str | None:
    """The closest known name for a misspelt one (a config key, a variable, a loss)."""
    matches = difflib.get_close_matches(unknown, list(known), n=1, cutoff=0.75)
    return matches[0] if matches else None


__all__ = ["ConfigError", "InputFileError", "OneLineParser", "UserError", "suggest"]
