"""read_to_end on an in-memory consumer: it stops on the consumer's position, not the last record."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from durable_kafka.streams.reading import read_to_end


class _Msg:
    def __init__(self, partition: int, offset: int) -> None:
        self._p, self._o = partition, offset

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


class _FakeConsumer:
    """Delivers records up to ``last`` per partition; positions then jump to ``end`` (a commit marker)."""

    def __init__(self, last: dict[int, int], end: dict[int, int]) -> None:
        self.last, self.end = last, end
        self.pos: dict[int, int] = {}
        self.queue: list[_Msg] = []

    def assign(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self.pos[tp.partition] = tp.offset
            self.queue += [_Msg(tp.partition, o) for o in range(tp.offset, self.last[tp.partition] + 1)]

    def poll(self, timeout: float) -> Any:
        if not self.queue:
            for p in self.pos:  # nothing left: the consumer moves past the trailing marker
                self.pos[p] = self.end[p]
            return None
        m = self.queue.pop(0)
        self.pos[m.partition()] = m.offset() + 1
        return m

    def consume(self, n: int, timeout: float) -> list[Any]:
        out = []
        while self.queue and len(out) < n:
            m = self.queue.pop(0)
            self.pos[m.partition()] = m.offset() + 1
            out.append(m)
        return out

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.pos[tp.partition]) for tp in tps]


def test_reads_every_record_and_stops_past_a_trailing_commit_marker() -> None:
    consumer = _FakeConsumer(last={0: 4, 1: 2}, end={0: 6, 1: 3})
    got = [(m.partition(), m.offset()) for batch in read_to_end(consumer, "t", {0: (2, 6), 1: (0, 3)}) for m in batch]
    assert sorted(got) == [(0, 2), (0, 3), (0, 4), (1, 0), (1, 1), (1, 2)]


def test_nothing_to_read_assigns_nothing() -> None:
    consumer = _FakeConsumer(last={}, end={})
    assert list(read_to_end(consumer, "t", {0: (5, 5)})) == []
    assert consumer.pos == {}


class _StuckConsumer(_FakeConsumer):
    """A partition held below its end by a transaction that is never resolved."""

    def poll(self, timeout: float) -> Any:
        return self.queue.pop(0) if self.queue else None


def test_a_partition_that_never_reaches_its_end_raises_past_the_deadline() -> None:
    consumer = _StuckConsumer(last={0: -1}, end={0: 3})
    with pytest.raises(TimeoutError, match=r"partitions \[0\]"):
        list(read_to_end(consumer, "t", {0: (0, 3)}, poll_timeout=0.0, deadline=time.monotonic() + 0.05))


class _Told(Exception):
    pass


def test_a_stall_is_told_once_with_the_positions_where_it_waits() -> None:
    consumer = _StuckConsumer(last={0: 1, 1: -1}, end={0: 3, 1: 3})
    told: list[dict[int, int]] = []

    def on_stall(positions: dict[int, int]) -> None:
        told.append(positions)
        raise _Told  # stops the read once told; the deadline below is only a backstop

    with pytest.raises(_Told):
        list(read_to_end(consumer, "t", {0: (0, 3), 1: (0, 3)}, poll_timeout=0.0, on_stall=on_stall,
                         stall_after=0.05, deadline=time.monotonic() + 30))  # backstop: fails, never hangs
    # partition 0 read its two records and waits at 2, below its end; partition 1 never moved
    assert told == [{0: 2, 1: 0}]
