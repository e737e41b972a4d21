"""The committed ``schemas/*.avsc`` and the dataclasses of ``streams/events.py`` cannot drift apart.

The expected Avro type of every field is derived here from the type hints by the mapping in the
events module docstring; the .avsc files must say exactly that (names, order, types,
nullability, defaults). A failure names the record and field to fix.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from datetime import datetime
from importlib import resources

import pytest

from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import NAMESPACE, load_shipped_schemas

SCHEMAS = {s["name"]: s for s in load_shipped_schemas()}
_PRIMITIVE = {str: "string", int: "long", bool: "boolean", bytes: "bytes"}


def expected_type(hint: object) -> object:
    if isinstance(hint, type) and issubclass(hint, enum.Enum) and issubclass(hint, str):
        return "string"  # a str enum travels as its member's value
    if hint in _PRIMITIVE:
        return _PRIMITIVE[hint]
    if hint is datetime:
        return {"type": "long", "logicalType": "timestamp-millis"}
    if dataclasses.is_dataclass(hint):
        return f"{NAMESPACE}.{hint.__name__}"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args:
            (inner,) = [a for a in args if a is not type(None)]
            return ["null", expected_type(inner)]
        return [expected_type(a) for a in args]
    if origin is dict and args[0] is str:
        return {"type": "map", "values": expected_type(args[1])}
    if origin is list:
        return {"type": "array", "items": expected_type(args[0])}
    raise AssertionError(f"no Avro mapping for {hint!r}")


def expected_fields(cls: type) -> list[dict]:
    hints = typing.get_type_hints(cls, vars(ev))
    out = []
    for f in dataclasses.fields(cls):
        field: dict = {"name": f.name, "type": expected_type(hints[f.name])}
        if f.default_factory is not dataclasses.MISSING:
            field["default"] = f.default_factory()
        elif f.default is not dataclasses.MISSING:
            field["default"] = f.default
        out.append(field)
    return out


def test_one_schema_file_per_record_type() -> None:
    assert sorted(SCHEMAS) == sorted(cls.__name__ for cls in ev.RECORD_TYPES)
    files = {p.name for p in resources.files("durable_kafka.schemas").iterdir() if p.name.endswith(".avsc")}
    assert files == {f"{cls.__name__}.avsc" for cls in ev.RECORD_TYPES}


@pytest.mark.parametrize("cls", ev.RECORD_TYPES, ids=lambda c: c.__name__)
def test_schema_matches_dataclass(cls: type) -> None:
    schema = SCHEMAS[cls.__name__]
    assert schema["type"] == "record"
    assert schema["namespace"] == NAMESPACE
    assert schema.get("doc", "").strip(), f"{cls.__name__}.avsc needs a doc saying what the record is for"
    actual = [{k: v for k, v in f.items() if k in ("name", "type", "default")} for f in schema["fields"]]
    assert [f["name"] for f in actual] == [f.name for f in dataclasses.fields(cls)], "field names/order"
    for want, got in zip(expected_fields(cls), actual):
        assert got == want, f"{cls.__name__}.{want['name']}"


@pytest.mark.parametrize("cls", ev.RECORD_TYPES, ids=lambda c: c.__name__)
def test_nullable_fields_default_to_null_and_dataclass_agrees(cls: type) -> None:
    for f in SCHEMAS[cls.__name__]["fields"]:
        if isinstance(f["type"], list) and "null" in f["type"]:
            assert f["type"][0] == "null" and f.get("default", "missing") is None, f"{cls.__name__}.{f['name']}"


def test_history_event_union_lists_every_history_event_in_order() -> None:
    union = next(f for f in SCHEMAS["HistoryRecord"]["fields"] if f["name"] == "event")["type"]
    assert union == [f"{NAMESPACE}.{c.__name__}" for c in ev.HISTORY_EVENT_TYPES]
