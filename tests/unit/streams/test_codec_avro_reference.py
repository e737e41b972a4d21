"""Our fastavro-based codec agrees with the reference ``avro`` package (and with Java's Avro).

Known deviation of the Python ``avro`` package (1.12): its Parsing Canonical Form keeps a
logical-typed primitive as ``{"type":"long"}`` where the spec ([PRIMITIVES]) and Java's
``SchemaNormalization`` write ``"long"``. The spec form is what goes on the wire (Java readers
must find our fingerprints), so for schemas with timestamps we compare against avro's form
with that one rule applied, and pin one golden fingerprint computed by Java's Avro 1.12.0.
"""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timezone

import avro.io
import avro.name
import avro.schema
import pytest
from fastavro.schema import to_parsing_canonical_form

from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import HEADER_LENGTH, MARKER, Codec, load_shipped_schemas, schema_fingerprint

T0 = datetime(2024, 2, 29, 23, 59, 59, 999_000, tzinfo=timezone.utc)
_WRAPPED_PRIMITIVE = re.compile(r'\{"type":"(null|boolean|int|long|float|double|bytes|string)"\}')

# A schema with the tricky parts (namespaces, timestamps bare and in a union, a nullable inline
# record, a map, an array of a named reference, a union of records, docs and defaults that
# canonical form strips). Its fingerprint was computed once with Java Avro 1.12.0:
# SchemaNormalization.parsingFingerprint64(new Schema.Parser().parse(GOLDEN)).
GOLDEN = {
    "type": "record", "name": "Golden", "namespace": "durable_kafka.test", "doc": "stripped",
    "fields": [
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "maybe_at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": None},
        {"name": "failure", "type": ["null", {"type": "record", "name": "Inner", "doc": "x", "fields": [
            {"name": "message", "type": "string"}, {"name": "count", "type": "long", "default": 1}]}],
         "default": None},
        {"name": "tags", "type": {"type": "map", "values": "string"}, "default": {}},
        {"name": "items", "type": {"type": "array", "items": "Inner"}, "default": []},
        {"name": "choice", "type": [
            {"type": "record", "name": "A", "fields": [{"name": "x", "type": "boolean", "default": True}]},
            "durable_kafka.test.Inner"]},
        {"name": "raw", "type": ["null", "bytes"], "default": None},
    ],
}
GOLDEN_JAVA_FINGERPRINT = 0xE53CB75716142CDE


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.default()


def avro_schema(schema: dict) -> avro.schema.Schema:
    return avro.schema.parse(json.dumps(schema))


def spec_canonical_form(parsed: avro.schema.Schema) -> str:
    """avro's canonical form with the spec's [PRIMITIVES] rule applied to logical types."""
    return _WRAPPED_PRIMITIVE.sub(r'"\1"', parsed.canonical_form)


def test_golden_fingerprint_matches_java() -> None:
    assert schema_fingerprint(GOLDEN) == GOLDEN_JAVA_FINGERPRINT
    assert schema_fingerprint(json.dumps(GOLDEN)) == GOLDEN_JAVA_FINGERPRINT


@pytest.mark.parametrize("cls", ev.RECORD_TYPES, ids=lambda c: c.__name__)
def test_fingerprint_matches_the_avro_package(codec: Codec, cls: type) -> None:
    parsed = avro_schema(codec.schema_of(cls))
    canonical = spec_canonical_form(parsed)
    assert canonical == to_parsing_canonical_form(codec.schema_of(cls))
    # avro's own CRC-64-AVRO over the spec canonical form (parsing it back is a fixed point).
    reference = avro.schema.parse(canonical).fingerprint("CRC-64-AVRO")
    assert codec.fingerprint(cls) == int.from_bytes(reference, "little")
    if canonical == parsed.canonical_form:  # no logical types: avro agrees without help
        assert codec.fingerprint(cls) == int.from_bytes(parsed.fingerprint("CRC-64-AVRO"), "little")


def test_avro_resolves_the_per_file_references_like_the_codec(codec: Codec) -> None:
    """Parsing the shipped files in dependency order with avro's shared Names gives the same schemas."""
    names = avro.name.Names()
    by_name = {s["name"]: s for s in load_shipped_schemas()}
    for cls in ev.RECORD_TYPES:
        parsed = avro.schema.make_avsc_object(by_name[cls.__name__], names)
        assert spec_canonical_form(parsed) == to_parsing_canonical_form(codec.schema_of(cls)), cls.__name__


def _avro_body(schema: dict, datum: dict) -> bytes:
    buf = io.BytesIO()
    avro.io.DatumWriter(avro_schema(schema)).write(datum, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def _avro_read(schema: dict, body: bytes) -> object:
    return avro.io.DatumReader(avro_schema(schema)).read(avro.io.BinaryDecoder(io.BytesIO(body)))


INTEROP = [
    (ev.InstanceStatus("i-1", "flow", "e-1", "FAILED", T0, T0, '{"n": 1}', None, '"3/4"',
                       ev.FailureDetails("boom", "KeyError", "tb"), "parent", {"team": "a"}, 12),
     {"instance_id": "i-1", "name": "flow", "execution_id": "e-1", "runtime_status": "FAILED", "created_at": T0,
      "last_updated_at": T0, "input": '{"n": 1}', "output": None, "custom_status": '"3/4"',
      "failure_details": {"message": "boom", "error_type": "KeyError", "stack_trace": "tb", "inner_failure": None},
      "parent_instance_id": "parent", "tags": {"team": "a"}, "history_length": 12, "version": None}),
    # ExecutionStarted / StartOrchestration are the first union members, the branch avro picks.
    (ev.HistoryRecord("i-1/e-1/0", "i-1", "e-1", 0,
                      ev.ExecutionStarted(-1, T0, "flow", "e-1", "[1, 2]", None, None, None, T0, {"k": "v"}, "2")),
     {"id": "i-1/e-1/0", "instance_id": "i-1", "execution_id": "e-1", "index": 0, "event": {
         "event_id": -1, "timestamp": T0, "name": "flow", "execution_id": "e-1", "input": "[1, 2]",
         "parent_instance_id": None, "parent_execution_id": None, "parent_task_id": None,
         "scheduled_start_at": T0, "tags": {"k": "v"}, "version": "2"}}),
    (ev.OrchestratorMessage("m-1", "i-1", T0, ev.StartOrchestration(
        "flow", "e-2", None, None, {}, None, None, None, [ev.EventRaised(-1, T0, "go", None)]), "client-1"),
     {"id": "m-1", "instance_id": "i-1", "sent_at": T0, "reply_to": "client-1", "body": {
         "name": "flow", "execution_id": "e-2", "input": None, "scheduled_start_at": None, "tags": {},
         "parent_instance_id": None, "parent_execution_id": None, "parent_task_id": None,
         "carried_events": [{"event_id": -1, "timestamp": T0, "name": "go", "input": None}],
         "if_exists": None, "source": None, "version": None}}),
    (ev.DeadLetter("d-1", "hub.history", 2, 99, b"\x00\xff", "bad", "CorruptRecordError", T0, None, None,
                   2, "ab", True, False, T0),
     {"id": "d-1", "topic": "hub.history", "partition": 2, "offset": 99, "original": b"\x00\xff",
      "reason": "bad", "error_type": "CorruptRecordError", "failed_at": T0, "key": None, "instance_id": None,
      "original_size": 2, "original_sha256": "ab", "original_truncated": True, "key_truncated": False,
      "timestamp": T0}),
]


@pytest.mark.parametrize(("record", "datum"), INTEROP, ids=lambda v: type(v).__name__)
def test_body_written_by_avro_decodes_with_the_codec(codec: Codec, record: object, datum: dict) -> None:
    cls = type(record)
    header = MARKER + codec.fingerprint(cls).to_bytes(8, "little")
    assert codec.decode(header + _avro_body(codec.schema_of(cls), datum), cls) == record


@pytest.mark.parametrize(("record", "datum"), INTEROP, ids=lambda v: type(v).__name__)
def test_codec_bytes_read_by_avro(codec: Codec, record: object, datum: dict) -> None:
    data = codec.encode(record)
    assert data[HEADER_LENGTH:] == _avro_body(codec.schema_of(type(record)), datum)
    assert _avro_read(codec.schema_of(type(record)), data[HEADER_LENGTH:]) == datum
