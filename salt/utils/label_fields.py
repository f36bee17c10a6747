"""Label fields: which fields of which input type a consumer needs from the data layer.

Tasks, regularisers and the predictions file each name theirs; they are merged here, in one
way (order kept, each field once), before the data module is asked for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

LabelFields = dict[str, list[str]]
"""``{input type: [field, ...]}``, e.g. ``{"jets": ["flavour_label"], "tracks": [...]}``."""


class LabelSource(Protocol):
    """What the data module asks for the labels to read: the model (its tasks and
    regularisers) names them."""

    def label_fields(self) -> LabelFields: ...


def merge_label_fields(*sources: Mapping[str, Iterable[str]]) -> LabelFields:
    """The union of ``sources``, input type by input type, in first-seen order."""
    merged: LabelFields = {}
    for source in sources:
        for name, fields in source.items():
            current = merged.setdefault(name, [])
            current.extend(f for f in fields if f not in current)
    return merged
