"""The package versions recorded with every run and exported model."""

from __future__ import annotations

import platform
from importlib import import_module

DEFAULT_PACKAGES = ("salt", "torch", "lightning")


def versions(packages: tuple[str, ...] = DEFAULT_PACKAGES, python: bool = True) -> dict[str, str]:
    """``{package: version}`` for ``packages`` (imported here), plus Python's own version."""
    found = {name: str(getattr(import_module(name), "__version__", "unknown")) for name in packages}
    if python:
        found["python"] = platform.python_version()
    return found
