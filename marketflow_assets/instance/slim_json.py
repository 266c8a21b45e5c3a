"""Serialized events without the fields that only restate their class's defaults.

Why: after a 10-year backfill the instance holds one stored copy of an event per asset and
session (the session materializations) and per check and session (the covering verdict each
session's execution row keeps): ~100,000 rows of ~1.2-1.3 KB of Dagster's JSON, a third of it
`"pid": null`, `"logging_tags": {}`, `"step_handle": null`, ... and the spaces after `:` and `,`.
Dagster's deserializer fills an absent field with its constructor's default, so the same object
reads back without them.

`slim(text)` drops, in every serialized object, each field whose value is null, `{}` or `[]`
and whose constructor parameter defaults to it (or to None), and each legacy field the
constructor ignores, and writes the JSON without spaces. It returns the
slim text only if it deserializes to an object equal to what `text` deserializes to (else
`text` unchanged): a class whose default is not what the dropped value meant is never changed.
"""

from __future__ import annotations

import functools
import inspect
import json
from typing import Any

from dagster._serdes import deserialize_value
from dagster_shared.serdes.serdes import _WHITELIST_MAP

_EMPTY: tuple[Any, ...] = (None, {}, [])
_PRIMITIVES = (type(None), bool, int, float, str)


@functools.cache
def _fields(class_name: str) -> tuple[frozenset[str], dict[str, Any]] | None:
    """(storage names its constructor reads, {storage name: default} of those with a JSON
    primitive default) of a serialized class; None for a class this process does not know."""
    serializer = _WHITELIST_MAP.object_deserializers.get(class_name)
    if serializer is None:
        return None
    try:
        parameters = inspect.signature(serializer.klass.__new__).parameters
    except (TypeError, ValueError):
        return None
    names = serializer.storage_field_names
    read = frozenset(names.get(n, n) for n in serializer.constructor_param_names)
    defaults = {
        names.get(n, n): p.default
        for n, p in parameters.items()
        if p.default is not inspect.Parameter.empty and isinstance(p.default, _PRIMITIVES)
    }
    return read, defaults


def _droppable(key: str, value: Any, fields: tuple[frozenset[str], dict[str, Any]]) -> bool:
    read, defaults = fields
    if key == "__class__":
        return False
    if key not in read:  # a legacy field the constructor ignores (EventLogEntry's "message")
        return True
    if key not in defaults:
        return False
    default = defaults[key]
    # None stands for an empty mapping or list in Dagster's constructors (`opt_mapping_param`);
    # the read-back comparison in `slim` proves it per class.
    return (value in _EMPTY and default is None) or (
        type(value) is type(default) and value == default
    )


def _drop_defaults(value: Any) -> Any:
    if isinstance(value, dict):
        fields = _fields(value["__class__"]) if "__class__" in value else None
        return {
            key: _drop_defaults(item)
            for key, item in value.items()
            if fields is None or not _droppable(key, item, fields)
        }
    if isinstance(value, list):
        return [_drop_defaults(item) for item in value]
    return value


def slim(text: str) -> str:
    """`text` (a `serialize_value` result) without default-valued fields and spaces, if it reads
    back equal; else `text`."""
    slimmed = json.dumps(_drop_defaults(json.loads(text)), separators=(",", ":"))
    try:
        same = deserialize_value(slimmed) == deserialize_value(text)
    except Exception:  # a class that needs a dropped field after all: keep the full text
        same = False
    return slimmed if same else text
