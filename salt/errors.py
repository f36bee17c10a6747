"""Turn user mistakes into one line on stderr (exit code 2) instead of a traceback."""

from __future__ import annotations

import difflib
import os
import re
import sys
from argparse import ArgumentError
from collections.abc import Callable, Iterable

import yaml

USER_ERROR_EXIT = 2
DEBUG_ENV = "SALT_DEBUG"

# errors salt raises for bad input (config, files, variables, values); anything else is a bug
USER_ERRORS: tuple[type[BaseException], ...] = (
    ArgumentError,
    FileNotFoundError,
    FileExistsError,
    KeyError,
    ValueError,
    TypeError,
    yaml.YAMLError,
    IsADirectoryError,
    PermissionError,
)

_SPECIFIC = (
    "has no attribute",
    "No module named",
    "does not exist",
    "is required",
    "not expected",
    "Expected a",
    "unrecognized",
    "not a valid",
    "Unable to",
)


def debug_requested(argv: Iterable[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0", "false")


def one_line(err: BaseException) -> str:
    """Condense an error message (often multi-line from the config parser) to one line."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    head = lines[0]
    detail = [
        line
        for line in lines[1:]
        if any(key in line for key in _SPECIFIC) and "NoneType" not in line
    ]
    message = head if not detail else f"{head.rstrip(':')}: {detail[-1].lstrip('- ')}"
    return re.sub(r"\s+", " ", message)


def suggest(unknown: str, known: Iterable[str]) -> str | None:
    """The closest known config key for a misspelt one."""
    matches = difflib.get_close_matches(unknown, list(known), n=1, cutoff=0.75)
    return matches[0] if matches else None


def unknown_keys(message: str) -> list[str]:
    """Keys the parser did not recognise, from its message."""
    keys = re.findall(r"--([A-Za-z_][\w.]*)", message)
    keys += re.findall(r"Key \"([\w.]+)\" is not expected", message)
    keys += re.findall(r"[Uu]nexpected keys?[^']*'([\w.]+)'", message)
    return keys


def run_cli(fn: Callable[[], object], argv: list[str]) -> int:
    """Run ``fn``; user errors become ``salt: error: <one line>`` and exit code 2."""
    if debug_requested(argv):
        fn()
        return 0
    try:
        fn()
    except USER_ERRORS as err:
        print(f"salt: error: {one_line(err)}", file=sys.stderr)
        return USER_ERROR_EXIT
    except OSError as err:  # h5py and the file system: name the file when we can
        name = getattr(err, "filename", None)
        where = f"{name}: " if name else ""
        print(f"salt: error: {where}{one_line(err)}", file=sys.stderr)
        return USER_ERROR_EXIT
    return 0


__all__ = ["USER_ERRORS", "USER_ERROR_EXIT", "one_line", "run_cli", "suggest"]
