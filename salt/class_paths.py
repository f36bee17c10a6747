"""Check every ``class_path`` of a config before the config parser imports or calls it.

The parser resolves ``class_path: pkg.mod.Name`` by importing ``pkg.mod`` and, for a callable
type such as the optimizer factory, calls whatever it finds: ``model.optimizer: {class_path:
os.system, init_args: {command: ...}}`` ran a shell command, and importing an unknown module runs
its top-level code. A shared config (or a run's saved ``config.yaml``) must not be able to do
either. So, before parsing:

- a class path must lie in a package salt builds runs from (:data:`TRUSTED_PACKAGES`) or one the
  user names in ``SALT_ALLOW_MODULES`` (comma-separated, e.g. ``my_models``): nothing else is
  imported;
- it must name a class, and a class of the kind its place declares (an ``Optimizer`` under
  ``model.optimizer``, a ``Callback`` under ``trainer.callbacks``, an ``nn.Module`` in the
  model, ...), checked before anything is instantiated.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterator
from typing import Any

import yaml

from salt.config_files import load_config_file

ALLOW_ENV = "SALT_ALLOW_MODULES"
TRUSTED_PACKAGES = (
    "salt",
    "torch",
    "lightning",
    "pytorch_lightning",
    "lightning_fabric",
    "torchmetrics",
    "pytorch_optimizer",
    "mup",
    "jsonargparse",
)

# (dotted key pattern, "module:Class" of the kind required there); first match wins
KINDS: tuple[tuple[str, str], ...] = (
    (r"model\.optimizer$", "torch.optim:Optimizer"),
    (r"model\.lr_scheduler$", "torch.optim.lr_scheduler:LRScheduler|ReduceLROnPlateau"),
    (r"trainer\.callbacks(\.\d+)?$", "lightning.pytorch:Callback"),
    (r"trainer\.logger(\.\d+)?$", "lightning.pytorch.loggers:Logger"),
    (r"trainer\.plugins(\.\d+)?$", "builtins:object"),
    (r"trainer\.strategy$", "lightning.pytorch.strategies:Strategy"),
    (r"model\.model$", "torch.nn:Module"),
    (r"model\..*\.loss$", "torch.nn:Module"),
)

_IDENTIFIER = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")


class ClassPathError(ValueError):
    """A class_path that salt will not import or instantiate (a user error: one line)."""


def allowed_packages() -> tuple[str, ...]:
    extra = [p.strip() for p in os.environ.get(ALLOW_ENV, "").split(",") if p.strip()]
    return (*TRUSTED_PACKAGES, *extra)


def required_kind(key: str) -> tuple[type, ...] | None:
    """The classes a ``class_path`` at ``key`` must derive from (None: any class)."""
    for pattern, spec in KINDS:
        if re.match(pattern, key):
            module_name, names = spec.split(":")
            module = importlib.import_module(module_name)
            return tuple(getattr(module, n) for n in names.split("|"))
    return None


def check_class_path(key: str, class_path: str) -> None:
    """Refuse ``class_path`` at ``key`` unless it is a class of the declared kind in an allowed
    package; only allowed packages are imported."""
    if not isinstance(class_path, str) or "." not in class_path:
        return  # short names are resolved by the parser among the declared kind's subclasses
    where = f"{key}: class_path '{class_path}'"
    top = class_path.split(".", 1)[0]
    allowed = allowed_packages()
    if top not in allowed:
        raise ClassPathError(
            f"{where} is outside the packages salt imports ({', '.join(allowed)}); "
            f"to allow it, set {ALLOW_ENV}={top}"
        )
    module_name, _, name = class_path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        return  # the parser reports a class that does not exist, with suggestions
    if not isinstance(found, type):
        raise ClassPathError(f"{where} is a {type(found).__name__}, not a class")
    kinds = required_kind(key)
    if kinds is not None and not issubclass(found, kinds):
        expected = " or ".join(f"{k.__module__}.{k.__qualname__}" for k in kinds)
        raise ClassPathError(f"{where} is not a subclass of {expected}")


def class_paths(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted key, class_path)`` for every class_path in a loaded config."""
    if isinstance(node, dict):
        if isinstance(node.get("class_path"), str):
            yield key, node["class_path"]
        for name, value in node.items():
            if name != "class_path":
                yield from class_paths(value, f"{key}.{name}" if key else str(name))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from class_paths(value, f"{key}.{index}")


def _argument_values(argv: list[str]) -> Iterator[tuple[str, str]]:
    """``(key, value)`` of the ``--key value`` and ``--key=value`` arguments."""
    for index, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        if "=" in arg:
            name, value = arg[2:].split("=", 1)
        elif index + 1 < len(argv) and not argv[index + 1].startswith("--"):
            name, value = arg[2:], argv[index + 1]
        else:
            continue
        yield name.removesuffix("+"), value


def check_command_line(argv: list[str]) -> None:
    """Check the class paths of every ``--config`` file (read strictly: no duplicate keys) and
    of the command line itself."""
    for key, value in _argument_values(argv):
        if key in ("config", "c") or key.endswith(".config"):
            try:
                content = load_config_file(value)  # duplicate keys refused here
            except (OSError, yaml.YAMLError, UnicodeDecodeError):
                continue  # the parser reports unreadable files
            for sub_key, class_path in class_paths(content):
                check_class_path(sub_key, class_path)
            continue
        if key.endswith(".class_path"):
            check_class_path(key.removesuffix(".class_path"), value)
            continue
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            continue
        if isinstance(parsed, dict | list):
            for sub_key, class_path in class_paths(parsed, key):
                check_class_path(sub_key, class_path)
        elif isinstance(parsed, str) and _IDENTIFIER.match(parsed) and required_kind(key):
            check_class_path(key, parsed)
