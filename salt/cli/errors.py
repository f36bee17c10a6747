"""How errors reach the terminal: user errors as one line on stderr (exit code 2), bugs with
their traceback and a request to report them.

A user error is a :class:`salt.errors.UserError`, a parser or file-system error, or a
``ValueError``/``KeyError``/``TypeError`` that salt raised on purpose where it validates input
(a ``raise`` statement in salt's own code). The same types raised anywhere else (inside torch,
numpy, or by a failing operation in salt) are bugs: hiding their traceback would hide the bug.
"""

from __future__ import annotations

import importlib
import inspect
import linecache
import os
import re
import sys
import traceback
from argparse import ArgumentError
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from salt.errors import UserError, suggest

USER_ERROR_EXIT = 2
BUG_EXIT = 1
DEBUG_ENV = "SALT_DEBUG"
SALT_ROOT = Path(__file__).resolve().parents[1]
BUG_HINT = (
    "this looks like a bug in salt, not in your input: please report it with the traceback "
    "above and the command line"
)

# always a user error: the input is wrong, whoever noticed it
_ALWAYS_USER: tuple[type[BaseException], ...] = (
    UserError,
    ArgumentError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    PermissionError,
    yaml.YAMLError,
)
# a user error when salt raised it on purpose while validating input, a bug otherwise
_USER_WHEN_RAISED: tuple[type[BaseException], ...] = (KeyError, ValueError, TypeError)
# Lightning's word for a trainer setting that cannot work: looked up only once Lightning is
# loaded (it cannot have raised one before), so a one-line error costs no Lightning import
_LIGHTNING_ERRORS = ("lightning.fabric.utilities.exceptions", "MisconfigurationException")


def _lightning_errors() -> tuple[type[BaseException], ...]:
    module = sys.modules.get(_LIGHTNING_ERRORS[0])
    return (getattr(module, _LIGHTNING_ERRORS[1]),) if module is not None else ()


def _always_user() -> tuple[type[BaseException], ...]:
    return (*_ALWAYS_USER, *_lightning_errors())


def _user_errors() -> tuple[type[BaseException], ...]:
    return (*_always_user(), *_USER_WHEN_RAISED)


def __getattr__(name: str) -> Any:
    """``USER_ERRORS``: every type that may be a user error (use :func:`is_user_error` to decide
    for one exception); Lightning's included, which imports it."""
    if name == "USER_ERRORS":
        importlib.import_module(_LIGHTNING_ERRORS[0])
        return _user_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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

# lines of jsonargparse's nested messages that describe the parser, not the mistake
_PARSER_NOISE = (
    "Subtypes:",
    "Given value type:",
    "Errors:",
    "Does not validate against any of the Union subtypes",
    "Expected a <class 'NoneType'>",
)
_PARSER_KEY = re.compile(r'Parser key "([^"]+)":?\s*(.*)$')
_CLASS_PATH = re.compile(r"Problem with given class_path '([^']+)':?\s*(.*)$")
_GIVEN = re.compile(r"Given value:\s*(.*)$")
_GIVEN_CLASS = re.compile(r"class_path='([^']+)'")
_OPTION = re.compile(r"Option '([\w.]+)' is not accepted")
# the last line of a traceback: "ValueError: message" at column 0
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*: ")


def _in_salt(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(SALT_ROOT)
    except (OSError, ValueError):
        return False


def _raised_on_purpose(filename: str, lineno: int) -> bool:
    """Whether this line of salt's own code is a ``raise`` statement (a validation site)."""
    if not _in_salt(filename):
        return False
    line = linecache.getline(filename, lineno).strip()
    if line.startswith("raise"):
        return True
    # a raise spread over lines: look back to the statement that opens it
    for back in range(1, 6):
        previous = linecache.getline(filename, lineno - back).strip()
        if previous.startswith("raise"):
            return True
        if not previous or previous.endswith(":"):
            return False
    return False


_WORKER_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is the user's to fix (one line) rather than a bug (traceback)."""
    if isinstance(err, _always_user()):
        return True
    if not isinstance(err, _USER_WHEN_RAISED):
        return isinstance(err, OSError)  # h5py and the file system: the file is at fault
    text = str(err)
    if text.startswith("Caught ") and "Original Traceback" in text:  # from a DataLoader worker
        frames = _WORKER_FRAME.findall(text)
        return bool(frames) and _raised_on_purpose(frames[-1][0], int(frames[-1][1]))
    # a library (jsonargparse building a class, Lightning calling a hook) may wrap salt's own
    # validation error: the chain tells whether one of its links was raised on purpose
    seen: set[int] = set()
    link: BaseException | None = err
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        tb = link.__traceback__
        if tb is None:  # constructed, not raised: treat as deliberate
            return True
        while tb.tb_next is not None:
            tb = tb.tb_next
        if _raised_on_purpose(tb.tb_frame.f_code.co_filename, tb.tb_lineno):
            return True
        link = link.__cause__ or link.__context__
    return False


def debug_requested(argv: Iterable[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0", "false")


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _worker_message(text: str) -> str:
    """The original message of an error re-raised from a DataLoader worker.

    torch re-raises it in the main process as ``Caught ValueError in DataLoader worker process
    0.`` followed by the worker's whole traceback; the user's message is its last part.
    """
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return text
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if _EXCEPTION_LINE.match(lines[i]):
            return "\n".join([lines[i].split(": ", 1)[1], *lines[i + 1 :]])
    return text


def _accepted_options(class_path: str) -> list[str]:
    """The ``__init__`` parameters of a class named by its import path (empty if unknown)."""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
        params = inspect.signature(cls.__init__).parameters
    except (ImportError, AttributeError, TypeError, ValueError):
        return []
    return [p for p in params if p != "self"]


def _condense_parser(lines: list[str]) -> str:
    """jsonargparse's nested message -> ``model.model.encoder.num_layers: <the problem>``.

    The message nests one level per config key and per ``class_path``, and lists every
    alternative of a Union (most of them "Expected a <class 'NoneType'>"). The first real problem
    is kept, with the dotted key path and the innermost class that lead to it.
    """
    keys: list[str] = []
    classes: list[str] = []
    leaf: str | None = None
    given: str | None = None
    for line in lines:
        body = line.strip()
        if body.startswith("- "):
            body = body[2:]
        match = _GIVEN.match(body)
        if match:
            value = match.group(1)
            named = _GIVEN_CLASS.search(value)
            if named and not classes:
                classes.append(named.group(1))
            elif given is None and len(value) <= 40 and "(" not in value:
                given = value
            continue
        if leaf is not None:
            continue  # later lines belong to other alternatives
        match = _PARSER_KEY.match(body)
        if match:
            keys.append(match.group(1))
            leaf = match.group(2) or None
            continue
        match = _CLASS_PATH.match(body)
        if match:
            classes.append(match.group(1))
            leaf = match.group(2) or None
            continue
        if body.startswith(_PARSER_NOISE):
            continue
        leaf = body
    if leaf is None:
        return _collapse(lines[0])
    notes = []
    cls = classes[-1] if classes else None
    if given is not None and leaf.startswith("Expected a") and given not in leaf:
        notes.append(f"got {given}")
    option = _OPTION.search(leaf)
    if option and cls:
        close = suggest(option.group(1), _accepted_options(cls))
        if close:
            notes.append(f"did you mean '{close}'?")
    if keys:
        path = ".".join(keys)
        if cls and cls not in leaf:
            notes.insert(0, f"class_path '{cls}'")
        message = f"{path}: {leaf}"
    else:
        message = f"{cls}: {leaf}" if cls and cls not in leaf else leaf
    if notes:
        message += f" ({'; '.join(notes)})"
    return _collapse(message)


def one_line(err: BaseException) -> str:
    """Condense an error message (often multi-line from the config parser) to one line."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    text = _worker_message(text)
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if any(
        _PARSER_KEY.match(line.strip()) or line.strip().startswith(_PARSER_NOISE) for line in lines
    ):
        return _condense_parser(lines)
    head = lines[0].strip()
    if head.count("(") > head.count(")"):  # a reason in parentheses that spans lines
        return _collapse(" ".join(lines))
    detail = [
        line.strip()
        for line in lines[1:]
        if any(key in line for key in _SPECIFIC) and "NoneType" not in line
    ]
    message = head if not detail else f"{head.rstrip(':')}: {detail[-1].lstrip('- ')}"
    return _collapse(message)


def unknown_keys(message: str) -> list[str]:
    """Keys the parser did not recognise, from its message."""
    keys = re.findall(r"--([A-Za-z_][\w.]*)", message)
    keys += re.findall(r"Key \"([\w.]+)\" is not expected", message)
    keys += re.findall(r"[Uu]nexpected keys?[^']*'([\w.]+)'", message)
    keys += re.findall(r"does not accept option '([\w.]+)'", message)  # from a --config file
    return keys


# -- what the command line tells about an error ---------------------------------------------------
def config_files(argv: Iterable[str]) -> list[Path]:
    """The ``--config``/``-c`` files of a command line, in order."""
    files: list[Path] = []
    args = list(argv)
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            files.append(Path(args[i + 1]))
        elif arg.startswith("--config="):
            files.append(Path(arg.split("=", 1)[1]))
    return files


def _has_key(node: object, parts: list[str]) -> bool:
    """Whether a loaded YAML document has the dotted key ``parts`` (at its top, or, for a single
    part, anywhere below, as nested class arguments are)."""
    if not isinstance(node, dict):
        if isinstance(node, list):
            return len(parts) == 1 and any(_has_key(item, parts) for item in node)
        return False
    if parts[0] in node and (len(parts) == 1 or _has_key(node[parts[0]], parts[1:])):
        return True
    return len(parts) == 1 and any(_has_key(value, parts) for value in node.values())


def _config_with_key(key: str, argv: list[str]) -> Path | None:
    """The last --config file that sets ``key`` when the command line itself does not."""
    # the command line sets it (a nested key is reported by its last parts only)
    if any(re.match(rf"--([\w.]+\.)?{re.escape(key)}(=|$)", arg) for arg in argv):
        return None
    found = None
    for path in config_files(argv):
        try:
            content = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        if _has_key(content, key.split(".")):
            found = path
    return found


def _broken_config(argv: list[str]) -> str | None:
    """``config file 'x.yaml' is not valid YAML: ...`` for the first --config file that is not."""
    for path in config_files(argv):
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or _collapse(str(err))
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            return f"config file '{path}' is not valid YAML: {problem}{where}"
        except (OSError, UnicodeDecodeError):
            continue
    return None


# Lightning's words for a trainer setting, which name neither the option nor the fix
_TRAINER_MESSAGES = (
    (
        re.compile(r"No supported (gpu|cuda|mps|tpu) backend found", re.IGNORECASE),
        "trainer.accelerator={0}: this machine has no {0} (torch finds none); use "
        "--trainer.accelerator=cpu or auto",
    ),
    (
        re.compile(r"`?(\w+)`? must be a (.*?)\. You passed in (.*?)\.?$"),
        "trainer.{0}: expected {1}, got {2}",
    ),
    (
        re.compile(r"`Trainer\((\w+)=(.*?)\)` value is not a valid input using (\w+) accelerator"),
        "trainer.{0}={1} is not valid with the {2} accelerator",
    ),
)


def _trainer_message(message: str) -> str:
    """Lightning's message about a trainer setting, rewritten to name the option to change."""
    for pattern, text in _TRAINER_MESSAGES:
        match = pattern.search(message)
        if match:
            return text.format(match.group(1).lower(), *match.groups()[1:])
    return message


def describe(err: BaseException, argv: list[str]) -> str:
    """One line for ``err``, naming the --config file at fault when the parser did not."""
    message = one_line(err)
    if isinstance(err, _lightning_errors()):
        return _trainer_message(message)
    if not isinstance(err, ArgumentError):
        return message
    if str(err).startswith("Problems parsing config"):
        return _broken_config(argv) or message
    keys = unknown_keys(message) + _OPTION.findall(message)
    for key in keys:
        path = _config_with_key(key, argv)
        if path is not None:
            return f"config file '{path}': {message}"
    return message


def user_message(err: BaseException, argv: Iterable[str] = ()) -> str:
    """The one line shown after ``salt: error:`` for a user error (or an OSError)."""
    if isinstance(err, _user_errors()):
        return describe(err, list(argv))
    message = one_line(err)
    name = getattr(err, "filename", None)  # h5py and the file system: name the file
    return f"{name}: {message}" if name and str(name) not in message else message


def run_cli(fn: Callable[[], object], argv: list[str], prog: str = "salt") -> int:
    """Run ``fn`` for the command ``prog``: 0 on success; a user error becomes ``<prog>: error:
    <one line>`` and exit code 2; a bug keeps its traceback, with a hint to report it (exit 1).
    ``--debug`` (or ``SALT_DEBUG=1``) lets every exception through untouched."""
    if debug_requested(argv):
        fn()
        return 0
    try:
        fn()
    except Exception as err:
        # what is reported in one line: user errors, and OSError from h5py and the file system
        if not isinstance(err, (*_user_errors(), OSError)):
            raise
        if not is_user_error(err):
            traceback.print_exc()
            print(f"{prog}: {BUG_HINT}", file=sys.stderr)
            return BUG_EXIT
        print(f"{prog}: error: {user_message(err, argv)}", file=sys.stderr)
        return USER_ERROR_EXIT
    return 0


__all__ = [
    "BUG_EXIT",
    "USER_ERRORS",  # noqa: F822  (module __getattr__: imports Lightning when asked for)
    "USER_ERROR_EXIT",
    "config_files",
    "describe",
    "is_user_error",
    "one_line",
    "run_cli",
    "suggest",
    "unknown_keys",
    "user_message",
]
