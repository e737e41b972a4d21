"""History events and actions as plain JSON objects, for golden histories and debugging dumps.

``{"type": "TaskScheduled", "event_id": 1, "timestamp": "2024-01-01T00:00:00+00:00", ...}``:
the dataclass name under ``type``, then its fields; datetimes as ISO 8601 text, nested records
(FailureDetails, carried-over EventRaised) as nested objects. Not a wire format: Kafka records
use the Avro codec.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime
from functools import cache
from typing import Any, Union

from durable_kafka.errors import InvalidArgumentError
from durable_kafka.streams import events as ev

from . import actions as act

_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (*ev.HISTORY_EVENT_TYPES, ev.FailureDetails, *act.SCHEDULING_ACTIONS, act.CompleteOrchestration)
}


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(ev) | vars(act))


def to_json(obj: Any) -> Any:
    """A dataclass (event, action, failure details) as a JSON-ready dict with its ``type``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {"type": type(obj).__name__}
        for f in dataclasses.fields(obj):
            out[f.name] = to_json(getattr(obj, f.name))
        return out
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, (list, tuple)):
        return [to_json(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    return obj


def from_json(data: dict[str, Any]) -> Any:
    """The dataclass named by ``data["type"]``, fields converted by their annotations."""
    name = data.get("type")
    cls = _TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InvalidArgumentError(f"unknown record type {name!r} in history JSON")
    hints = _hints(cls)
    kwargs = {k: _convert(hints[k], v) for k, v in data.items() if k != "type"}
    unknown = set(kwargs) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise InvalidArgumentError(f"{name}: unknown fields {sorted(unknown)}")
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if hint is datetime:
        return datetime.fromisoformat(value)
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_convert(item, x) for x in value]
    if origin is tuple:
        return tuple(_convert(typing.get_args(hint)[0], x) for x in value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_json({"type": hint.__name__, **value} if "type" not in value else value)
    return value
