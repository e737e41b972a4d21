"""Trigger routes without a broker: templates, callables, decoders, validation, commands."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from typing import Any

import fastavro
import pytest

from durable_kafka import triggers
from durable_kafka._trigger_fields import compile_field
from durable_kafka.errors import (
    InvalidRouteError,
    RouteCallableError,
    TemplateFieldMissingError,
    TriggerDecodeError,
    TriggerRecordError,
)
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import schema_fingerprint

NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)
REC = triggers.TriggerRecord("shop.orders", 2, 17, NOW, "k-1",
                             {"order_id": 7, "customer": {"id": "c9", "tags": ["a", "b"]}, "ok": True}, {})


class Msg:
    """The part of confluent_kafka.Message a route reads."""

    def __init__(self, value: bytes | None, key: bytes | None = b"k-1", topic: str = "shop.orders",
                 partition: int = 2, offset: int = 17) -> None:
        self._v, self._k, self._t, self._p, self._o = value, key, topic, partition, offset

    def value(self) -> bytes | None:
        return self._v

    def key(self) -> bytes | None:
        return self._k

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def headers(self) -> Any:
        return [("h", b"v")]


@pytest.mark.parametrize(("template", "expected"), [
    ("{key}", "k-1"),
    ("{value.order_id}", 7),  # one placeholder: the JSON type is kept
    ("{value}", REC.value),
    ("{value.customer.tags.1}", "b"),
    ("{value.ok}", True),
    ("order-{value.order_id}", "order-7"),  # anything else: text
    ("{topic}/{partition}/{offset}", "shop.orders/2/17"),
    ("{value.customer}!", '{"id":"c9","tags":["a","b"]}!'),
    ("literal {{braces}}", "literal {braces}"),
    ("no placeholders", "no placeholders"),
])
def test_templates(template: str, expected: Any) -> None:
    assert compile_field(template, "f").resolve(REC) == expected


@pytest.mark.parametrize("template", ["{value.missing}", "{value.customer.nope}", "x-{value.customer.tags.5}",
                                      "{value.order_id.x}"])
def test_a_missing_field_names_the_path(template: str) -> None:
    with pytest.raises(TemplateFieldMissingError):
        compile_field(template, "input").resolve(REC)


@pytest.mark.parametrize("template", ["{nope}", "{key.x}", "{value..a}", "{", "a}b", "{}"])
def test_bad_templates_fail_when_declared(template: str) -> None:
    with pytest.raises(InvalidRouteError):
        compile_field(template, "input")


def test_callables_and_constants() -> None:
    assert compile_field(lambda r: r.value["order_id"] * 2, "f").resolve(REC) == 14
    assert compile_field({"a": 1}, "f").resolve(REC) == {"a": 1}
    with pytest.raises(RouteCallableError, match="ZeroDivisionError"):
        compile_field(lambda r: 1 / 0, "f").resolve(REC)
    with pytest.raises(InvalidRouteError, match="JSON"):
        compile_field(object(), "f")


def test_decoders(tmp_path: Any) -> None:
    assert triggers.JsonDecoder().decode(b'{"a": 1}') == {"a": 1}
    assert triggers.TextDecoder().decode("é".encode()) == "é"
    assert triggers.BytesDecoder().decode(b"\x00") == b"\x00"
    for bad, decoder in ((b"{", triggers.JsonDecoder()), (None, triggers.JsonDecoder()),
                         (b"\xff", triggers.TextDecoder())):
        with pytest.raises(TriggerDecodeError):
            decoder.decode(bad)
    schema = {"type": "record", "name": "P", "fields": [{"name": "n", "type": "long"}]}
    (tmp_path / "p.avsc").write_text(json.dumps(schema))
    avro = triggers.AvroDecoder(str(tmp_path / "p.avsc"))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), {"n": 3})
    header = b"\xc3\x01" + schema_fingerprint(schema).to_bytes(8, "little")
    assert avro.decode(header + buf.getvalue()) == {"n": 3}
    with pytest.raises(TriggerDecodeError, match="fingerprint"):
        avro.decode(b"\xc3\x01" + b"\x00" * 8 + buf.getvalue())
    with pytest.raises(TriggerDecodeError, match="marker"):
        avro.decode(buf.getvalue())
    with pytest.raises(TriggerDecodeError):
        avro.decode(header + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")
    with pytest.raises(InvalidRouteError, match="does not exist"):
        triggers.AvroDecoder(str(tmp_path / "none.avsc"))
    with pytest.raises(InvalidRouteError, match="not a valid Avro schema"):
        triggers.AvroDecoder({"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]})


@pytest.mark.parametrize(("make", "match"), [
    (lambda: triggers.Start("", "o", instance_id="{key}"), "topic"),
    (lambda: triggers.Start("t", lambda c, i: None, instance_id="{key}"), "orchestrator"),
    (lambda: triggers.Start("t", "o", instance_id=None), "instance_id is required"),
    (lambda: triggers.Start("t", "o", instance_id="{key}", reuse="sometimes"), "reuse"),
    (lambda: triggers.Start("t", "o", instance_id="{key}", decoder="xml"), "decoder"),
    (lambda: triggers.Start("t", "o", instance_id="{key}", filter="yes"), "filter"),
    (lambda: triggers.Raise("t", instance_id="{key}", event_name=None), "event_name"),
    (lambda: triggers.Signal("t", entity_id="counter", operation="add"), "entity_id"),
    (lambda: triggers.Terminate("t", instance_id="{valu.id}"), "instance_id"),
    (lambda: triggers.Suspend("t", instance_id="{key}", name=""), "name"),
])
def test_route_arguments_are_checked_when_declared(make: Any, match: str) -> None:
    with pytest.raises(InvalidRouteError, match=match):
        make()


def test_start_command_carries_reuse_a_derived_id_and_its_source() -> None:
    def process_order(ctx: Any, _: Any) -> Any:
        return None

    route = triggers.Start("shop.orders", process_order, instance_id="order-{value.order_id}", input="{value}",
                           reuse="fail")
    kind, key, msg = route.command(Msg(b'{"order_id": 7}'), NOW)  # type: ignore[arg-type,misc]
    assert (kind, key) == ("orchestrator", "order-7")
    assert isinstance(msg.body, ev.StartOrchestration)
    assert msg.body.name == "process_order" and json.loads(msg.body.input) == {"order_id": 7}
    assert (msg.body.if_exists, msg.body.source) == ("fail", "start:shop.orders|shop.orders|2|17")
    again = route.command(Msg(b'{"order_id": 7}'), NOW)  # type: ignore[arg-type]
    other = route.command(Msg(b'{"order_id": 7}', offset=18), NOW)  # type: ignore[arg-type]
    assert again is not None and other is not None
    assert again[2].id == msg.id and other[2].id != msg.id  # the id is the record's coordinates


def test_filters_signals_and_bad_ids() -> None:
    sig = triggers.Signal("t", entity_id="@counter@{key}", operation="add", input="{value.n}",
                          filter=lambda r: r.value["n"] > 0)
    assert sig.command(Msg(b'{"n": 0}'), NOW) is None  # type: ignore[arg-type]
    kind, key, msg = sig.command(Msg(b'{"n": 2}'), NOW)  # type: ignore[arg-type,misc]
    assert (kind, key, msg.body.operation, msg.body.input) == ("entity", "@counter@k-1", "add", "2")
    with pytest.raises(TriggerRecordError):
        triggers.Raise("t", instance_id="{value.id}", event_name="e").command(Msg(b'{"id": ""}'), NOW)  # type: ignore[arg-type]
    with pytest.raises(RouteCallableError):
        triggers.Resume("t", instance_id="{key}", filter=lambda r: 1 / 0).command(Msg(b"{}"), NOW)  # type: ignore[arg-type]


def test_command_ids_are_the_uuid5_of_the_record_position() -> None:
    """Ids derive from (route, topic, partition, offset) and must stay what uuid.uuid5 gives:
    a source replayed after an upgrade must map to the commands already recorded."""
    import uuid

    namespace = uuid.UUID("4a3c1e52-9a57-4d7e-b1f1-6f3f0c2d8e11")
    for name in ("", "start:orders|orders|0|0", "r|ünïcødé-topic|11|9007199254740993", "x" * 500):
        assert triggers._uuid5_hex(name) == uuid.uuid5(namespace, name).hex
        assert triggers._uuid5_text(name) == str(uuid.uuid5(namespace, name))
