"""HistoryBatch.events and HistoryRecord.event name the same history events, in the same order:
a member appended to one and not the other would make a batch unable to carry an event (D20)."""

from __future__ import annotations

from durable_kafka.streams.codec import load_shipped_schemas


def test_batch_and_record_unions_are_the_same_list() -> None:
    schemas = {s["name"]: s for s in load_shipped_schemas()}
    record_union = next(f["type"] for f in schemas["HistoryRecord"]["fields"] if f["name"] == "event")
    batch_items = next(f["type"] for f in schemas["HistoryBatch"]["fields"] if f["name"] == "events")["items"]
    assert batch_items == record_union
