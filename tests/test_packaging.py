"""Installation fits real machines: torch is a lower bound (the exact pin is the Makefile's),
the optional tools are extras, and the README's install lines name what pyproject declares."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirement(name: str, requirements: list[str]) -> str | None:
    pattern = re.compile(rf"^{re.escape(name)}\s*(\[|[<>=!~;]|$)", re.I)
    return next((r for r in requirements if pattern.match(r)), None)


def test_torch_is_a_lower_bound_and_the_pin_lives_in_the_makefile() -> None:
    torch = requirement("torch", PROJECT["dependencies"])
    assert torch is not None and "==" not in torch and ">=" in torch, torch
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*torch==\d+\.\d+\.\d+", makefile)


def test_tensorboard_is_an_extra_and_mup_drags_nothing() -> None:
    extras = PROJECT["optional-dependencies"]
    assert requirement("tensorboard", extras["tensorboard"])
    # mup's declared requirements would install torchvision (and another torch): never a
    # dependency or an extra, only installed alone
    everything = [*PROJECT["dependencies"], *(r for reqs in extras.values() for r in reqs)]
    assert requirement("mup", everything) is None
    assert requirement("torchvision", everything) is None
    assert re.search(r"pip install .*--no-deps mup==", (ROOT / "Makefile").read_text())


def test_readme_install_lines_use_declared_extras() -> None:
    readme = (ROOT / "README.md").read_text()
    used = set(re.findall(r'pip install -e "\.\[([\w,]+)\]"', readme))
    names = {name for group in used for name in group.split(",")}
    assert names >= {"dev", "tensorboard"}
    assert names <= set(PROJECT["optional-dependencies"])
    assert "pip install --no-deps mup==1.0.0" in readme
