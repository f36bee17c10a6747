"""Secrets never leave the process: config dumps show a placeholder instead of a key.

A Comet API key or an S3 secret may be given in a config (better: in the environment). Anything
salt prints or writes from a config (``--print_config``, a run's ``config.yaml``) goes through
:func:`redact_yaml`, which replaces the value of every secret-looking key.
"""

from __future__ import annotations

import re

SECRET_KEYS = (
    "api_key",
    "apikey",
    "secKey",
    "secret",
    "secret_key",
    "access_key",
    "password",
    "api_token",
    "access_token",
    "auth_token",
    "refresh_token",
)
# keys named exactly like this (``token: ...``), not as a suffix: ``global_token`` or
# ``use_cls_token`` are network options
EXACT_SECRET_KEYS = ("token",)
PLACEHOLDER = "<redacted>"

_SECRET_LINE = re.compile(
    r"^(?P<lead>\s*(?:- )?(?P<key>(?:[\w.]*(?:"
    + "|".join(re.escape(k) for k in SECRET_KEYS)
    + r")|(?:[\w]*\.)?(?:"
    + "|".join(re.escape(k) for k in EXACT_SECRET_KEYS)
    + r"))):[ \t]+)(?P<value>\S.*)$",
    re.IGNORECASE | re.MULTILINE,
)
# values that are never secrets: unset, booleans
_KEEP = ("null", "~", "''", '""', "true", "false", PLACEHOLDER)


def _replace(match: re.Match[str]) -> str:
    value = match.group("value").strip()
    if value in _KEEP or value.startswith(("${", "'${", '"${')):
        return match.group(0)  # unset, or an environment placeholder: nothing secret
    return f"{match.group('lead')}{PLACEHOLDER}"


def redact_yaml(text: str) -> str:
    """``text`` (a YAML dump) with the values of secret-looking keys replaced."""
    return _SECRET_LINE.sub(_replace, text)
