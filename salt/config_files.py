"""Read a config file strictly: a key written twice in one mapping is an error, not "the later
one wins" (YAML's default, which hides a typo or a forgotten edit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from salt.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, naming both lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<: *anchor``: explicit keys may override merged ones
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"config file '{self.name}': key '{key}' is given twice (lines {seen[key]} "
                    f"and {line}); keep one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_config_file(path: str | Path) -> Any:
    """The content of a YAML config file, refusing duplicate keys."""
    path = Path(path)
    loader = _StrictLoader(path.read_text())
    loader.name = str(path)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
