"""Schema evolution: values written with older schemas are read with the current ones.

``tests/data/schemas_v*/`` keep older versions of record schemas (see docs/SCHEMAS.md: copy a
schema there before changing it). Every one of them must stay readable by the current schema
of its record name; this file is the compatibility check.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import fastavro
import pytest

from durable_kafka.errors import IncompatibleSchemaError, UnknownSchemaError
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import MARKER, Codec, load_shipped_schemas

DATA = Path(__file__).resolve().parents[2] / "data"
OLD_SCHEMAS = sorted(DATA.glob("schemas_v*/*.avsc"))
T0 = datetime(2023, 11, 2, 8, 15, 0, 500_000, tzinfo=timezone.utc)
FAIL = {"message": "boom", "error_type": "ValueError", "stack_trace": None}


def fresh_codec() -> Codec:
    """A codec of its own, so registrations here never leak into Codec.default()."""
    return Codec(load_shipped_schemas())


def write_old(codec: Codec, fingerprint: int, datum: dict) -> bytes:
    """What an older engine put on Kafka: single-object encoding with its own writer schema."""
    buf = io.BytesIO()
    buf.write(MARKER + fingerprint.to_bytes(8, "little"))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(codec.schema_of(fingerprint)), datum)
    return buf.getvalue()


def load(name: str, version: int = 0) -> dict:
    return json.loads((DATA / f"schemas_v{version}" / f"{name}.avsc").read_text())


def test_there_are_old_schemas_to_check() -> None:
    assert {p.name for p in OLD_SCHEMAS} >= {"InstanceStatus.avsc", "HistoryRecord.avsc"}


@pytest.mark.parametrize("path", OLD_SCHEMAS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_old_schema_is_readable_by_the_current_one(path: Path) -> None:
    codec = fresh_codec()
    fp = codec.register_writer_schema(path.read_text())
    name = json.loads(path.read_text())["name"]
    assert fp != codec.fingerprint(name), "an old version must differ from the current schema"
    assert codec.known_fingerprints()[fp] == f"durable_kafka.{name}"


def test_old_instance_status_gets_the_new_fields_defaults() -> None:
    codec = fresh_codec()
    old = {"instance_id": "order-1", "name": "flow", "execution_id": "e1", "runtime_status": "COMPLETED",
           "created_at": T0, "last_updated_at": T0, "input": '{"x": 1}', "output": '"done"',
           "custom_status": None, "failure_details": None, "parent_instance_id": None}
    data = write_old(codec, codec.register_writer_schema(load("InstanceStatus")), old)
    status = codec.decode(data, ev.InstanceStatus)
    assert status == ev.InstanceStatus("order-1", "flow", "e1", "COMPLETED", T0, T0, '{"x": 1}', '"done"',
                                       tags={}, history_length=0)


def test_old_history_union_and_old_member_are_resolved() -> None:
    codec = fresh_codec()
    fp = codec.register_writer_schema(load("HistoryRecord"))
    started = {"event_id": -1, "timestamp": T0, "name": "flow", "execution_id": "e1", "input": None,
               "parent_instance_id": "p", "parent_execution_id": "pe", "parent_task_id": 4,
               "scheduled_start_at": None, "tags": {"k": "v"}}  # no ``version`` yet
    rec = codec.decode(write_old(codec, fp, {"id": "i/e1/0", "instance_id": "i", "execution_id": "e1",
                                             "index": 0, "event": ("durable_kafka.ExecutionStarted", started)}))
    assert rec.event == ev.ExecutionStarted(-1, T0, "flow", "e1", None, "p", "pe", 4, None, {"k": "v"}, None)

    failed = {"event_id": -1, "timestamp": T0, "task_scheduled_id": 3, "failure_details": FAIL}
    rec = codec.decode(write_old(codec, fp, {"id": "i/e1/5", "instance_id": "i", "execution_id": "e1",
                                             "index": 5, "event": ("durable_kafka.TaskFailed", failed)}),
                       ev.HistoryRecord)
    assert rec == ev.HistoryRecord("i/e1/5", "i", "e1", 5,
                                   ev.TaskFailed(-1, T0, 3, ev.FailureDetails("boom", "ValueError")))


def test_old_writer_is_unknown_until_registered() -> None:
    codec = fresh_codec()
    probe = fresh_codec()
    fp = probe.register_writer_schema(load("InstanceStatus"))
    data = write_old(probe, fp, {"instance_id": "i", "name": "n", "execution_id": "e", "runtime_status": "RUNNING",
                                 "created_at": T0, "last_updated_at": T0})
    with pytest.raises(UnknownSchemaError, match=f"{fp:#018x}"):
        codec.decode(data)
    assert codec.register_writer_schema(load("InstanceStatus")) == fp
    assert codec.decode(data).history_length == 0


def test_registering_a_current_schema_is_a_no_op() -> None:
    codec = fresh_codec()
    before = codec.known_fingerprints()
    assert codec.register_writer_schema(codec.schema_of(ev.HistoryRecord)) == codec.fingerprint(ev.HistoryRecord)
    assert codec.known_fingerprints() == before


def _mutated_instance_status(change: str) -> dict:
    schema = load("InstanceStatus")
    fields = schema["fields"]
    if change == "retyped":
        next(f for f in fields if f["name"] == "execution_id")["type"] = "long"
    elif change == "required field missing":  # the current schema has no default for ``name``
        schema["fields"] = [f for f in fields if f["name"] != "name"]
    elif change == "union member retyped":
        next(f for f in fields if f["name"] == "output")["type"] = ["null", "long"]
    return schema


@pytest.mark.parametrize("change", ["retyped", "required field missing", "union member retyped"])
def test_incompatible_writer_schemas_are_refused(change: str) -> None:
    with pytest.raises(IncompatibleSchemaError, match="cannot be read with the current schema"):
        fresh_codec().register_writer_schema(_mutated_instance_status(change))


def test_history_union_member_unknown_to_the_reader_is_refused() -> None:
    schema = load("HistoryRecord")
    schema["fields"][4]["type"].append({"type": "record", "name": "FromTheFuture", "fields": []})
    with pytest.raises(IncompatibleSchemaError):
        fresh_codec().register_writer_schema(schema)


@pytest.mark.parametrize("bad", ["{not json", '"string"', {"type": "record", "name": "Nobody",
                                                           "namespace": "durable_kafka", "fields": []},
                                 {"type": "record", "name": "InstanceStatus", "namespace": "durable_kafka",
                                  "fields": [{"name": "x", "type": "durable_kafka.Missing"}]}])
def test_invalid_writer_schemas_are_refused(bad: object) -> None:
    with pytest.raises(IncompatibleSchemaError):
        fresh_codec().register_writer_schema(bad)  # type: ignore[arg-type]
