"""The generated binary writers/readers (streams/avro_binary.py) against fastavro and avro.

Every shipped record type gets random values drawn from its schema (nulls and not, empty and
full maps and arrays, long strings, multi-byte text, extreme longs, every union branch); the
native codec must write exactly fastavro's bytes, read back the same object, and read what
fastavro wrote. Bad bodies must still come out as CorruptRecordError, never another type.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

import avro.io
import avro.schema
import pytest

from durable_kafka.errors import CorruptRecordError, RecordEncodeError
from durable_kafka.streams import events
from durable_kafka.streams.codec import HEADER_LENGTH, NAMESPACE, Codec, _enum_fields, load_shipped_schemas

SCHEMAS = {f"{NAMESPACE}.{s['name']}": s for s in load_shipped_schemas()}
CLASSES = {f"{NAMESPACE}.{cls.__name__}": cls for cls in events.RECORD_TYPES}
NATIVE = Codec(load_shipped_schemas())
FASTAVRO = Codec(load_shipped_schemas(), native=False)
TEXTS = ["", "a", "order-42", "é€😀", "x" * 63, "y" * 64, "z" * 300]
LONGS = [0, 1, -1, 63, 64, -64, -65, 2**31, -(2**31) - 1, 2**63 - 1, -(2**63)]


def _value(t: Any, rng: random.Random, depth: int, enum: type[Enum] | None = None) -> Any:
    if isinstance(t, list):
        branch = rng.choice(t)
        if branch != "null" and depth > 3 and "null" in t:
            branch = "null"
        return _value(branch, rng, depth, enum)
    if isinstance(t, dict):
        if t.get("logicalType") == "timestamp-millis":
            ms = rng.choice([0, 1, 1_700_000_000_123, rng.randrange(0, 4_000_000_000_000), -1_000])
            return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)
        if t["type"] == "array":
            return [_value(t["items"], rng, depth + 1) for _ in range(rng.choice([0, 1, 3]))]
        if t["type"] == "map":
            return {rng.choice(TEXTS) + str(i): _value(t["values"], rng, depth + 1) for i in range(rng.choice([0, 1, 4]))}
        return _value(t["type"], rng, depth, enum)
    if t == "null":
        return None
    if t == "string":
        return rng.choice(list(enum)) if enum is not None else rng.choice(TEXTS)
    if t == "long":
        return rng.choice(LONGS + [rng.randrange(-(2**40), 2**40)])
    if t == "boolean":
        return rng.random() < 0.5
    if t == "bytes":
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 5, 200])))
    return _record(t, rng, depth + 1)


def _record(full: str, rng: random.Random, depth: int = 0) -> Any:
    enums = _enum_fields(CLASSES[full])
    return CLASSES[full](*[_value(f["type"], rng, depth, enums.get(f["name"])) for f in SCHEMAS[full]["fields"]])


def test_every_shipped_record_is_compiled():
    assert all(cur.write is not None for cur in NATIVE._current.values())
    assert all(cur.write is None for cur in FASTAVRO._current.values())


@pytest.mark.parametrize("full", sorted(SCHEMAS))
def test_native_writes_fastavros_bytes_and_reads_them_back(full):
    rng = random.Random(full)
    for _ in range(60):
        obj = _record(full, rng)
        native = NATIVE.encode(obj)
        assert native == FASTAVRO.encode(obj)
        assert NATIVE.decode(native) == obj == FASTAVRO.decode(native)


@pytest.mark.parametrize("full", ["durable_kafka.HistoryRecord", "durable_kafka.InstanceStatus",
                                  "durable_kafka.OrchestratorMessage", "durable_kafka.EntityMessage"])
def test_reference_avro_reads_native_bytes(full):
    rng = random.Random(7)
    schema = avro.schema.parse(json.dumps(NATIVE.schema_of(CLASSES[full])))
    for _ in range(20):
        data = NATIVE.encode(_record(full, rng))
        reader = avro.io.DatumReader(schema)
        decoded = reader.read(avro.io.BinaryDecoder(io.BytesIO(data[HEADER_LENGTH:])))
        assert isinstance(decoded, dict)


@pytest.mark.parametrize("full", ["durable_kafka.HistoryRecord", "durable_kafka.InstanceStatus",
                                  "durable_kafka.EntityState", "durable_kafka.OrchestratorMessage"])
def test_every_truncation_and_bit_flip_is_a_corrupt_record(full):
    rng = random.Random(3)
    data = NATIVE.encode(_record(full, rng))
    for cut in range(HEADER_LENGTH, len(data)):
        with pytest.raises(CorruptRecordError):
            NATIVE.decode(data[:cut])
    with pytest.raises(CorruptRecordError, match="left after the body"):
        NATIVE.decode(data + b"\x00")
    for i in range(HEADER_LENGTH, len(data)):
        for bit in (0x01, 0x80):
            flipped = bytearray(data)
            flipped[i] ^= bit
            try:
                NATIVE.decode(bytes(flipped))
            except CorruptRecordError:
                pass


def test_huge_counts_and_lengths_fail_fast():
    header = NATIVE.encode(_record("durable_kafka.InstanceStatus", random.Random(1)))[:HEADER_LENGTH]
    body = bytearray()
    # instance_id with a length of 2**40 bytes, in a 20-byte record
    n = (2**40) << 1
    while n > 0x7F:
        body.append((n & 0x7F) | 0x80)
        n >>= 7
    body.append(n)
    with pytest.raises(CorruptRecordError, match="truncated body"):
        NATIVE.decode(bytes(header + body + b"abc"))


@pytest.mark.parametrize("bad", [
    {"execution_id": 5}, {"execution_id": None}, {"timestamp": 123}, {"event_id": 2**63}, {"event_id": "1"},
    {"tags": {"a": 1}}, {"tags": None},
])
def test_values_that_do_not_fit_are_record_encode_errors(bad):
    obj = replace(_record("durable_kafka.ExecutionStarted", random.Random(5)), **bad)
    with pytest.raises(RecordEncodeError):
        NATIVE.encode(obj)
    with pytest.raises(RecordEncodeError):
        FASTAVRO.encode(obj)


def test_a_float_for_a_long_is_refused_not_truncated():
    # fastavro writes int(1.5); the native writer refuses, as the schema says long
    obj = replace(_record("durable_kafka.ExecutionStarted", random.Random(5)), event_id=1.5)
    with pytest.raises(RecordEncodeError):
        NATIVE.encode(obj)


def test_a_repeated_timestamp_writes_the_same_bytes_as_a_fresh_one():
    """The writer caches the last datetime's bytes by identity: equal values, new objects, naive
    ones and alternation all write what fastavro writes."""
    when = datetime(2026, 12, 2, 10, 30, 1, 999_999, tzinfo=timezone.utc)
    values = [when, when, datetime(2026, 12, 2, 10, 30, 1, 999_999, tzinfo=timezone.utc),
              when.replace(tzinfo=None), when, datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=timezone.utc),
              when.astimezone(timezone(timedelta(hours=5))), when]
    for value in values:
        status = events.InstanceStatus(instance_id="i", name="n", execution_id="e",
                                       runtime_status=events.OrchestrationStatus.RUNNING,
                                       created_at=value, last_updated_at=when)
        assert NATIVE.encode(status) == FASTAVRO.encode(status)
        expected = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        expected = expected.replace(microsecond=expected.microsecond // 1000 * 1000)  # millisecond precision
        assert NATIVE.decode(NATIVE.encode(status)).created_at == expected
