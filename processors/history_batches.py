"""Splitting a step's history batch that would not fit one Kafka record.

A step writes its history as one :class:`~durable_kafka.streams.events.HistoryBatch`
(docs/DECISIONS.md D20). A step that schedules thousands of activities, or records a few large
payloads, can make that batch larger than one record may be (``streams/limits.py``). Such a
batch is split into consecutive batches that each fit, under their own first-index keys; readers
see the same events at the same indices. Only an outcome that failed its size check is split,
so the common step pays nothing for this.
"""

from __future__ import annotations

from typing import Callable

from durable_kafka.streams.codec import Codec
from durable_kafka.streams.events import HistoryBatch, batch_id
from durable_kafka.streams.limits import MAX_RECORD_BYTES, record_size

from . import store as keys
from .instance import Outcome, Produce

__all__ = ["split_oversized_batches"]


def split_oversized_batches(outcome: Outcome, codec: Codec, limit: int = MAX_RECORD_BYTES) -> bool:
    """Split, in place, every history batch of ``outcome`` too large for one record.

    Returns whether anything was split (if not, the outcome's size failure lies elsewhere). A
    batch of one event that does not fit stays as it is: the caller's size check then fails
    the instance, as for any other record that cannot be carried.
    """
    split_any = False
    produce: list[Produce] = []
    for p in outcome.produce:
        batch = p.value
        if not isinstance(batch, HistoryBatch) or len(batch.events) < 2:
            produce.append(p)
            continue
        key = keys.history_key(batch.instance_id, batch.execution_id, batch.index)
        key_bytes = max(len(key), len(p.key.encode()))

        def fits(b: HistoryBatch, key_bytes: int = key_bytes) -> bool:
            return record_size(b"\0" * key_bytes, codec.encode(b)) <= limit

        parts = _split(batch, fits)
        if len(parts) == 1:
            produce.append(p)
            continue
        split_any = True
        if outcome.puts.get(key) is batch:  # (tombstoned in the same step: only the topic gets it)
            del outcome.puts[key]
            for part in parts:
                outcome.puts[keys.history_key(part.instance_id, part.execution_id, part.index)] = part
        produce.extend(Produce(p.topic, p.key, part, p.headers) for part in parts)
    outcome.produce = produce
    return split_any


def _split(batch: HistoryBatch, fits: Callable[[HistoryBatch], bool]) -> list[HistoryBatch]:
    """Halve until every part fits (or holds a single event)."""
    if len(batch.events) < 2 or fits(batch):
        return [batch]
    mid = len(batch.events) // 2
    halves = [(batch.index, batch.events[:mid]), (batch.index + mid, batch.events[mid:])]
    out: list[HistoryBatch] = []
    for index, events in halves:
        part = HistoryBatch(id=batch_id(batch.instance_id, batch.execution_id, index, len(events)),
                            instance_id=batch.instance_id, execution_id=batch.execution_id, index=index,
                            events=list(events))
        out.extend(_split(part, fits))
    return out
