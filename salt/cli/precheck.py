"""Mistakes found before torch and Lightning are imported, so they cost a second, not the ten
that importing them takes: an unknown subcommand, a missing or unreadable ``--config`` file, and
a misspelt key of the ``trainer``, ``model`` or ``data`` section (in a file or on the command
line).

The keys a section accepts are read from the ``__init__`` signature in the source of its class
(no import). Anything this check cannot decide is left to the full parser, which checks
everything again: the pre-check only ever rejects what the parser would reject too.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path

import yaml

from salt.data.paths import not_a_file
from salt.errors import ConfigError, suggest

SUBCOMMANDS = ("fit", "validate", "test", "predict")
SALT_ROOT = Path(__file__).resolve().parents[1]

# section -> (top-level package, source file inside it, class whose __init__ the section fills)
SECTIONS: dict[str, tuple[str, str, str]] = {
    "trainer": ("lightning", "pytorch/trainer/trainer.py", "Trainer"),
    "model": ("salt", "training/module.py", "SaltModule"),
    "data": ("salt", "data/datamodule.py", "SaltDataModule"),
}


def _package_dir(package: str) -> Path | None:
    if package == "salt":
        return SALT_ROOT
    spec = importlib.util.find_spec(package)  # a top-level package: nothing is imported
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def section_keys(section: str) -> frozenset[str] | None:
    """The keyword arguments of a section's class, or None when they cannot be known without
    importing it (class not found, ``**kwargs``)."""
    if section not in SECTIONS:
        return None
    package, relative, class_name = SECTIONS[section]
    root = _package_dir(package)
    if root is None or not (root / relative).is_file():
        return None
    try:
        tree = ast.parse((root / relative).read_text())
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    args = item.args
                    if args.kwarg is not None:
                        return None
                    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
                    return frozenset(names[1:] if names[:1] == ["self"] else names)
    return None


def _config_files(argv: Sequence[str]) -> Iterator[str]:
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            yield argv[i + 1]
        elif arg.startswith("--config="):
            yield arg.split("=", 1)[1]


def _unknown(section: str, key: str, where: str, dashes: str = "") -> str | None:
    """``<where>: data.batch_sise is not an option (did you mean 'data.batch_size'?)``."""
    known = section_keys(section)
    if known is None or key in known:
        return None
    hint = suggest(key, sorted(known))
    guess = f" (did you mean '{dashes}{section}.{hint}'?)" if hint else ""
    return f"{where}{dashes}{section}.{key} is not an option of {section}{guess}"


def check_config_file(path: str) -> None:
    """Existence, YAML syntax, a mapping of sections, known keys in the checked sections."""
    if "://" in path:  # fetched later (s3://): the full parser sees the local copy
        return
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--config: file '{path}' {not_a_file(file)}")
    try:
        content = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise ConfigError(f"config file '{path}' is not valid YAML: {problem}{where}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file '{path}' cannot be read: {err}") from None
    if content is None:
        return
    if not isinstance(content, dict):
        raise ConfigError(f"config file '{path}' is not a mapping of config sections")
    for section in ("data", "trainer", "model"):
        body = content.get(section)
        if body is not None and not isinstance(body, dict):
            raise ConfigError(
                f"config file '{path}': '{section}' is a {type(body).__name__}, expected a "
                "mapping of its options"
            )
    for section in SECTIONS:
        body = content.get(section)
        if not isinstance(body, dict) or "class_path" in body or "init_args" in body:
            continue
        for key in body:
            # "callbacks+:" appends to the list of an earlier config
            problem = _unknown(section, str(key).rstrip("+"), f"config file '{path}': ")
            if problem:
                raise ConfigError(problem)


def check_flag(arg: str) -> None:
    """``--trainer.max_epoch=3``: a section option the section's class does not take."""
    if not arg.startswith("--") or "." not in arg:
        return
    section, _, rest = arg[2:].partition("=")[0].partition(".")
    key = rest.split(".", 1)[0].rstrip("+")
    if section in SECTIONS and key and key != "help":
        problem = _unknown(section, key, "", dashes="--")
        if problem:
            raise ConfigError(problem)


def precheck(argv: Sequence[str]) -> None:
    """Raise :class:`~salt.errors.ConfigError` for the mistakes of the module doc; ``argv`` is
    the command line after ``salt`` (subcommand first)."""
    if not argv or argv[0].startswith("-"):
        return  # options before the subcommand: the full parser explains
    if argv[0] not in SUBCOMMANDS:
        # short names: a transposition (fti) is far in ratio, so a lower bar than for keys
        close = difflib.get_close_matches(argv[0], list(SUBCOMMANDS), n=1, cutoff=0.6)
        hint = close[0] if close else None
        guess = f" (did you mean '{hint}'?)" if hint else ""
        raise ConfigError(f"unknown subcommand '{argv[0]}'{guess}; see salt --help")
    if any(a in ("-h", "--help") for a in argv):
        return
    for path in _config_files(argv):
        check_config_file(path)
    for arg in argv[1:]:
        check_flag(arg)
