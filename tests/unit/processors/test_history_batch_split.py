"""A step's history batch that would not fit one record is split into batches that do (D20)."""

from __future__ import annotations

from datetime import datetime, timezone

from durable_kafka.processors import store as keys
from durable_kafka.processors.history_batches import split_oversized_batches
from durable_kafka.processors.instance import Outcome, Produce
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.limits import record_size

NOW = datetime(2026, 12, 2, tzinfo=timezone.utc)
IID, XID = "fan-1", "x1"


def batch_of(n: int, payload: int) -> ev.HistoryBatch:
    events: list[ev.AnyHistoryEvent] = [ev.OrchestratorStarted(-1, NOW)]
    events += [ev.TaskScheduled(i, NOW, "work", '"' + "p" * payload + '"') for i in range(n)]
    events.append(ev.OrchestratorCompleted(-1, NOW))
    return ev.HistoryBatch(ev.batch_id(IID, XID, 5, len(events)), IID, XID, 5, events)


def outcome_with(batch: ev.HistoryBatch) -> Outcome:
    out = Outcome()
    out.puts[keys.history_key(IID, XID, batch.index)] = batch
    out.puts[keys.instance_key(IID)] = None
    out.produce = [Produce("acts", IID, None), Produce("hist", IID, batch)]
    return out


def test_a_batch_too_large_is_split_into_consecutive_batches_that_each_fit() -> None:
    codec, limit = Codec.default(), 20_000
    batch = batch_of(200, 500)  # ~100 KB
    out = outcome_with(batch)
    assert split_oversized_batches(out, codec, limit)
    parts = [p.value for p in out.produce if p.topic == "hist"]
    assert len(parts) > 1
    assert [e for part in parts for e in part.events] == batch.events
    assert [part.index for part in parts] == [5 + sum(len(q.events) for q in parts[:i]) for i in range(len(parts))]
    assert all(part.id == ev.batch_id(IID, XID, part.index, len(part.events)) for part in parts)
    assert all(record_size(keys.history_key(IID, XID, part.index), codec.encode(part)) <= limit for part in parts)
    history_puts = {k: v for k, v in out.puts.items() if k.startswith(keys.history_prefix(IID))}
    assert history_puts == {keys.history_key(IID, XID, part.index): part for part in parts}
    assert out.produce[0].topic == "acts" and keys.instance_key(IID) in out.puts  # the rest untouched
    records = [r for part in parts for r in ev.history_records(part)]
    assert [r.index for r in records] == list(range(5, 5 + len(batch.events)))


def test_a_batch_that_fits_is_left_alone() -> None:
    batch = batch_of(3, 10)
    out = outcome_with(batch)
    assert not split_oversized_batches(out, Codec.default(), 20_000)
    assert [p.value for p in out.produce if p.topic == "hist"] == [batch]


def test_a_single_event_too_large_stays_whole_for_the_size_check_to_fail() -> None:
    big = ev.HistoryBatch(ev.batch_id(IID, XID, 0, 1), IID, XID, 0,
                          [ev.TaskScheduled(0, NOW, "work", '"' + "p" * 30_000 + '"')])
    out = outcome_with(big)
    assert not split_oversized_batches(out, Codec.default(), 20_000)
    assert out.puts[keys.history_key(IID, XID, 0)] is big


def test_a_tombstoned_batch_is_split_on_the_topic_only() -> None:
    batch = batch_of(200, 500)
    out = outcome_with(batch)
    out.puts[keys.history_key(IID, XID, batch.index)] = None  # the execution was deleted in the same step
    assert split_oversized_batches(out, Codec.default(), 20_000)
    assert out.puts[keys.history_key(IID, XID, batch.index)] is None
    assert sum(1 for k in out.puts if k.startswith(keys.history_prefix(IID))) == 1
