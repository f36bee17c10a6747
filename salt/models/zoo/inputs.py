"""What every backbone checks first: the input variables salt fills in from ``data``."""

from __future__ import annotations

from salt.data.batch import SPECIAL_GROUPS


def require_variables(
    variables: dict[str, list[str]] | None, global_object: str, owner: str
) -> dict[str, list[str]]:
    """Fail at construction, naming the key, when salt has not filled in the input variables."""
    if variables is None:
        raise ValueError(
            f"{owner}.variables: not set; salt fills it from data.variables (pass "
            "{'jets': [...], 'tracks': [...]} when building the backbone in Python)"
        )
    if not isinstance(variables, dict) or not all(
        isinstance(v, list | tuple) for v in variables.values()
    ):
        raise ValueError(f"{owner}.variables: expected {{input type: [variables]}}")
    if not isinstance(global_object, str) or not global_object:
        raise ValueError(f"{owner}.global_object: expected an input type, got {global_object!r}")
    return {k: list(v) for k, v in variables.items()}


def check_variables(
    variables: dict[str, list[str]] | None, input_name: str, owner: str
) -> dict[str, list[str]]:
    """As :func:`require_variables`, for backbones reading one constituent type."""
    variables = require_variables(variables, "jets", owner)
    if not variables.get(input_name):
        raise ValueError(
            f"{owner}.input_name: '{input_name}' has no variables in data.variables "
            f"(which has {sorted(variables)})"
        )
    return variables


__all__ = ["SPECIAL_GROUPS", "check_variables", "require_variables"]
