"""Where a command line names its config files (read before any parser exists)."""

from __future__ import annotations

from collections.abc import Sequence


def config_positions(argv: Sequence[str]) -> list[tuple[int, str, str]]:
    """``(index, form, value)`` of every ``--config``/``-c`` value in ``argv``.

    ``form`` is ``sep`` for ``--config FILE`` (``index`` points at FILE) and ``eq`` for
    ``--config=FILE`` (``index`` points at the whole argument), so a caller can replace the
    value in place.
    """
    found = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config", "-c") and i + 1 < len(argv):
            found.append((i + 1, "sep", argv[i + 1]))
            i += 2
            continue
        if arg.startswith("--config="):
            found.append((i, "eq", arg.split("=", 1)[1]))
        i += 1
    return found
