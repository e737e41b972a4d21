"""Values written by the previous release still decode: a rolling upgrade dead-letters nothing."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import fastavro

from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import MARKER, Codec, _expand, _defined_names, schema_fingerprint

ROOT = Path(__file__).resolve().parents[3]
PREVIOUS = ROOT / "schemas" / "previous" / "r1"


def _old_bytes(record_name: str, datum: dict) -> bytes:
    """``datum`` encoded exactly as the release before issue 12 wrote a ``record_name``."""
    codec = Codec.default()
    named = dict(codec._named)  # the current schemas, with the old release's files over them
    for path in PREVIOUS.glob("*.avsc"):
        schema = json.loads(path.read_text())
        named[f"durable_kafka.{schema['name']}"] = schema
    schema = named[f"durable_kafka.{record_name}"]
    standalone = _expand(dict(schema), named, _defined_names(schema), set())
    buf = io.BytesIO()
    buf.write(MARKER + schema_fingerprint(standalone).to_bytes(8, "little"))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(standalone), datum)
    return buf.getvalue()


T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_a_start_command_of_the_previous_release_decodes_with_the_new_fields_defaulted() -> None:
    start = {"name": "flow", "execution_id": "e1", "input": '"x"', "scheduled_start_at": None, "tags": {},
             "parent_instance_id": None, "parent_execution_id": None, "parent_task_id": None,
             "carried_events": []}
    data = _old_bytes("OrchestratorMessage", {"id": "m1", "instance_id": "i1", "sent_at": T0,
                                              "body": ("durable_kafka.StartOrchestration", start),
                                              "reply_to": None})
    current = Codec.default().encode(ev.OrchestratorMessage(id="m1", instance_id="i1", sent_at=T0,
                                                            body=ev.StartOrchestration(name="flow", execution_id="e1")))
    assert data[2:10] != current[2:10]  # really the old fingerprint
    msg = Codec.default().decode(data, expected=ev.OrchestratorMessage)
    assert isinstance(msg.body, ev.StartOrchestration) and msg.body.name == "flow" and msg.body.input == '"x"'
    assert msg.body == ev.StartOrchestration(name="flow", execution_id="e1", input='"x"')  # new fields: defaults


def test_a_dead_letter_of_the_previous_release_decodes() -> None:
    data = _old_bytes("DeadLetter", {"id": "d", "topic": "t", "partition": 0, "offset": 5, "original": b"x",
                                     "reason": "r", "error_type": "E", "failed_at": T0, "key": None,
                                     "instance_id": None})
    letter = Codec.default().decode(data, expected=ev.DeadLetter)
    assert letter.original == b"x" and letter.original_size is None and not letter.original_truncated
