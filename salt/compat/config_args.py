"""Let ``salt fit|test --config`` read salt-ml configs: translate each file before parsing.

A config in salt-ml's syntax is rewritten by :func:`salt.compat.rewrite.translate_config` into
a file in this project's syntax (in a per-user temporary folder), and the command line points
at that file instead; what was changed is logged once per file. Configs already in salt's
syntax are left exactly as they are (same path, nothing written).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from salt.compat.rewrite import translate_config
from salt.utils.argv import config_positions

log = logging.getLogger(__name__)


def translated_dir() -> Path:
    """Where translated configs are written (private to the user)."""
    folder = Path(tempfile.gettempdir()) / f"salt-translated-configs-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def translate_file(path: Path) -> Path:
    """``path`` itself when it is in salt's syntax, else a translated copy."""
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return path  # the parser reports unreadable files with its own message
    translation = translate_config(content, str(path))
    if not translation.changed:
        return path
    text = yaml.safe_dump(translation.config, sort_keys=False)
    digest = hashlib.sha256(f"{path.resolve()}\n{text}".encode()).hexdigest()[:12]
    out = translated_dir() / f"{path.stem}-{digest}.yaml"
    if not out.is_file():
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(f"# salt's reading of {path.resolve()}\n{text}")
        tmp.replace(out)
    log.info(
        "%s: salt-ml syntax read as salt's (%s) -> %s",
        path,
        "; ".join(translation.changes),
        out,
    )
    return out


def translate_config_args(argv: Sequence[str]) -> list[str]:
    """``argv`` with every salt-ml ``--config`` file replaced by its translation."""
    argv = list(argv)
    for index, form, value in config_positions(argv):
        path = Path(value)
        if not path.is_file():
            continue
        out = translate_file(path)
        if out != path:
            argv[index] = str(out) if form == "sep" else f"--config={out}"
    return argv


__all__ = ["translate_config_args", "translate_file"]
