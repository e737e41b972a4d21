"""Read partitions of a topic from given offsets up to given ends: the one loop for it.

Restoring a store from its changelog and auditing a hub both need "every committed record of
these partitions between here and there, then stop"; a consumer has no such call, and a loop
written twice gets its stop condition subtly different twice (an end offset that is a commit
marker is never delivered as a record, so the stop must look at the consumer's position, not
at the last record seen).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

__all__ = ["read_to_end", "watermarks"]

_BATCH = 1000
_TRANSIENT = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
              KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT, KafkaError.OFFSET_NOT_AVAILABLE}


def watermarks(consumer: Consumer, tp: TopicPartition, attempts: int = 60) -> tuple[int, int]:
    """(low, high) watermarks of ``tp``, retried while a freshly created partition has no leader yet."""
    for attempt in range(attempts):
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            return low, high
        except KafkaException as exc:
            if attempt == attempts - 1 or not (exc.args[0].retriable() or exc.args[0].code() in _TRANSIENT):
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")


def read_to_end(consumer: Consumer, topic: str, ranges: Mapping[int, tuple[int, int]],
                poll_timeout: float = 0.1, deadline: float | None = None,
                on_stall: Callable[[dict[int, int]], None] | None = None,
                stall_after: float = 2.0) -> Iterator[list[Any]]:
    """Assign ``topic``'s partitions at ``start`` and yield batches of records until each reaches ``end``.

    ``ranges`` maps partition -> (start offset, end offset), the end usually the high watermark
    read before; partitions with nothing between the two are not assigned. Yields non-empty
    lists of messages (no error messages: a partition EOF is skipped, any other error raises
    ``KafkaException``). With ``isolation.level=read_committed`` the records of aborted
    transactions are skipped but still count towards the position, so the loop ends once every
    transaction below ``end`` is resolved. ``deadline`` (a ``time.monotonic()`` value) bounds the
    wait: past it, ``TimeoutError`` names the partitions still short of their end. ``on_stall``
    is called once, with each unfinished partition's position, when no partition has moved for
    ``stall_after`` seconds (so a caller can say why it waits).
    """
    pending = {p: end for p, (start, end) in ranges.items() if start < end}
    if not pending:
        return
    consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in pending])
    positions = {p: ranges[p][0] for p in pending}
    moved_at, told = time.monotonic(), False
    while pending:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{topic}: partitions {sorted(pending)} did not reach their ends {pending}")
        first = consumer.poll(poll_timeout)
        batch: list[Any] = []
        for m in [first, *consumer.consume(_BATCH - 1, 0)] if first is not None else []:
            err = m.error()
            if err is None:
                batch.append(m)
            elif err.code() != KafkaError._PARTITION_EOF:
                raise KafkaException(err)
        if batch:
            yield batch
        for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
            if tp.offset > positions[tp.partition]:
                positions[tp.partition] = tp.offset
                moved_at = time.monotonic()
            if tp.offset >= pending[tp.partition]:
                del pending[tp.partition]
        if on_stall is not None and pending and not told and time.monotonic() - moved_at > stall_after:
            told = True
            on_stall({p: positions[p] for p in pending})
