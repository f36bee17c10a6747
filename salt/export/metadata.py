"""The JSON metadata embedded in every exported ONNX file, and reading it back.

The file must be usable without the run directory (in C++ inference, or years later), so the
metadata says everything a caller needs: which variables go into which input, in which order,
how they are normalised inside the graph, what every output means, and how the model was
trained. It is stored as one JSON string under ``metadata_props[METADATA_KEY]``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import onnx

from salt.utils.versions import versions as package_versions

METADATA_KEY = "salt_metadata"
FORMAT_VERSION = 1
"""Bumped when the layout of the metadata or the input/output conventions change."""


def versions() -> dict[str, str]:
    """Versions of the packages that made the file."""
    return package_versions(("salt", "torch", "onnx", "onnxruntime"), python=False)


def _finite(value: Any) -> Any:
    """Non-finite floats as strings: strict JSON (as C++ parsers read it) has no NaN or inf."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def embed_metadata(proto: onnx.ModelProto, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` as JSON under :data:`METADATA_KEY`, replacing an earlier entry."""
    text = json.dumps(_finite(metadata), allow_nan=False)
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = text
            return
    proto.metadata_props.add(key=METADATA_KEY, value=text)


def metadata_props(path: str | Path) -> dict[str, str]:
    """All ``metadata_props`` of an ONNX file (the weights are not loaded)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file '{path}' does not exist")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf raises its own DecodeError
        raise ValueError(f"'{path}' is not a readable ONNX file ({err})") from None
    return {prop.key: prop.value for prop in proto.metadata_props}


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The salt metadata of an exported file, as a dict."""
    props = metadata_props(path)
    if METADATA_KEY not in props:
        keys = ", ".join(props) or "none"
        raise KeyError(f"'{path}' has no '{METADATA_KEY}' metadata (keys: {keys})")
    return json.loads(props[METADATA_KEY])


def lookup(metadata: dict[str, Any], key: str) -> Any:
    """A value by dotted path, e.g. ``inputs.0.variables`` or ``outputs``; list items by index."""
    value: Any = metadata
    walked: list[str] = []
    for part in key.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif (
            isinstance(value, list)
            and part.lstrip("-").isdigit()
            and -len(value) <= int(part) < len(value)
        ):
            value = value[int(part)]
        else:
            where = ".".join(walked) or "the metadata"
            if isinstance(value, dict):
                hint = f" (available: {', '.join(value)})"
            elif isinstance(value, list):
                hint = f" (a list: use an index 0..{len(value) - 1})"
            else:
                hint = f" (it is a {type(value).__name__})"
            raise KeyError(f"no '{part}' in {where}{hint}")
        walked.append(part)
    return value


__all__ = [
    "FORMAT_VERSION",
    "METADATA_KEY",
    "embed_metadata",
    "lookup",
    "metadata_props",
    "read_metadata",
    "versions",
]
