"""What the orchestration and entity handlers share: the shell around a per-key step.

Both processors turn a batch of records into per-key work the same way: decode each record
(an undecodable one goes to the dead-letter topic), check that it sits on the partition that
owns its key (a misrouted one would fork the key's state: dead-lettered too), group the rest by
(partition, key) in arrival order, run one step per key, then encode and size everything the
step wants written before any of it reaches the transaction (a Kafka transaction cannot take
a record back). Keys touched by the open transaction are remembered so that an abort drops
exactly their cached state. Subclasses supply the message type, the key of a message and the
per-key step.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any, Callable

from confluent_kafka import Message

from durable_kafka._tracing import RecordHeaders
from durable_kafka.errors import CodecError
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import partition_for
from durable_kafka.streams.deadletter import dead_letter_for, misrouted_reason
from durable_kafka.streams.limits import MAX_RECORD_BYTES, check_record_size
from durable_kafka.streams.payloads import PayloadCodec

from .instance import Outcome
from .runtime import Processor, Transaction

log = logging.getLogger(__name__)

#: encoded store puts (key, bytes or None) and records to produce (topic, key, bytes or None,
#: record headers or None)
Writes = tuple[list[tuple[bytes, bytes | None]], list[tuple[str, bytes, bytes | None, RecordHeaders | None]]]


class KeyedHandlerShell:
    """Decode, route-check, group by key, dead-letter, encode/size/write, dirty-cache tracking."""

    #: the record type every source record must decode to
    message_type: type = object
    #: large payloads (docs/PAYLOADS.md): set by the worker; None leaves JSON text as it is
    payloads: PayloadCodec | None = None

    def __init__(self, processor: Processor, *, deadletter_topic: str, codec: Codec | None) -> None:
        self.proc = processor
        self.deadletter_topic = deadletter_topic
        self.codec = codec or Codec.default()
        self.cache: OrderedDict[str, Any] = OrderedDict()
        self.stats: dict[str, int] = {"deadletters": 0}
        self._dirty: set[str] = set()  # keys touched by the open transaction
        #: the time a batch or tick runs at (wall clock; durable_kafka.testing sets a virtual one)
        self.clock: Callable[[], datetime] = _utcnow

    # ------------------------------------------------------------------ for subclasses
    def key_of(self, msg: Any) -> str:
        """The key (instance or entity id) a decoded message belongs to."""
        raise NotImplementedError

    def run_key(self, txn: Transaction, partition: int, key: str, now: datetime,
                msgs: list[Any], raws: list[Message]) -> None:
        """Apply one key's messages of this batch (in arrival order)."""
        raise NotImplementedError

    def on_undecodable(self, txn: Transaction, rec: Message, key: str | None, exc: CodecError,
                       now: datetime) -> None:
        """Called after an undecodable record was dead-lettered (default: nothing more)."""

    # ------------------------------------------------------------------ the shared shell
    def process(self, txn: Transaction, records: list[Message]) -> None:
        now = self.clock()
        groups: OrderedDict[tuple[int, str], list[tuple[Message, Any]]] = OrderedDict()
        decode = self.codec.decode
        for rec in records:
            try:
                msg = decode(rec.value(), expected=self.message_type)  # type: ignore[arg-type]  # None: CodecError
            except CodecError as exc:
                raw_key = rec.key()
                bad_key = raw_key.decode("utf-8", "replace") if raw_key is not None else None
                self.dead_letter(txn, rec, f"cannot decode: {exc}", type(exc).__name__, bad_key)
                self.on_undecodable(txn, rec, bad_key, exc, now)
                continue
            key = self.key_of(msg)
            if not self.routed_here(rec, key):
                self.dead_letter(txn, rec, misrouted_reason(rec, key, self.proc.source_partition_count()),
                                 "MisroutedRecordError", key)
                continue
            groups.setdefault((partition_of(rec), key), []).append((rec, msg))
        for (partition, key), items in groups.items():
            self.run_key(txn, partition, key, now, [m for _, m in items], [r for r, _ in items])

    def routed_here(self, rec: Message, key: str) -> bool:
        """Whether ``rec`` sits on the partition that owns ``key``'s state.

        A record on another partition (a producer that keyed it by something else, or used
        another partitioner) would create a second, divergent copy of the key's state there.
        """
        return partition_for(key.encode("utf-8"), self.proc.source_partition_count()) == partition_of(rec)

    def touch(self, key: str) -> None:
        """``key`` is being changed by the open transaction (its cached state may not survive an abort)."""
        self._dirty.add(key)

    def on_aborted(self) -> None:
        # only keys this transaction touched can hold changes that never committed; the rest
        # of the cache equals the committed state and stays warm (a cold cache after a fencing
        # would make the retry reload everything, slower still)
        for key in self._dirty:
            self.cache.pop(key, None)
        self._dirty.clear()

    def on_committed(self) -> None:
        self._dirty.clear()

    def encode(self, outcome: Outcome) -> Writes:
        """Encode every record of ``outcome`` and size it, before any of it is written.

        Sizing first matters: a Kafka transaction cannot take back a record, so an outcome with
        one record too large must be refused whole (PayloadTooLargeError) while nothing of it
        has reached the transaction yet.
        """
        encoded: dict[int, bytes] = {}  # a history record goes to the store and the topic: encode once
        changelog = self.proc.config.changelog_topic or "-"

        def enc(value: Any) -> bytes | None:
            if value is None:
                return None
            data = encoded.get(id(value))
            if data is None:
                data = encoded[id(value)] = self.codec.encode(value)
            return data

        puts = [(k, enc(v)) for k, v in outcome.puts.items()]
        produce = [(p.topic, p.key.encode(), enc(p.value), p.headers) for p in outcome.produce]
        # sized inline: the message naming a record is built only for one that does not fit
        for k, data in puts:
            if len(k) + (len(data) if data is not None else 0) > MAX_RECORD_BYTES:
                check_record_size(changelog, k, data, f"the state record {k[:80]!r}")
        for (topic, key, data, _headers), p in zip(produce, outcome.produce):
            if len(key) + (len(data) if data is not None else 0) > MAX_RECORD_BYTES:
                check_record_size(topic, key, data, f"the {type(p.value).__name__} record of {p.key!r}")
        return puts, produce

    @staticmethod
    def write(txn: Transaction, partition: int, writes: Writes) -> None:
        """Hand encoded writes to the transaction (store puts, then produced records)."""
        puts, produce = writes
        for k, data in puts:
            txn.put(partition, k, data)
        for topic, key, data, headers in produce:
            txn.produce(topic, key, data, headers=headers)

    def dead_letter(self, txn: Transaction, rec: Message, reason: str, error_type: str,
                    key: str | None = None) -> None:
        """Put ``rec`` on the dead-letter topic with ``reason`` (a truncated copy that always fits)."""
        self.stats["deadletters"] += 1
        if self.proc.metrics is not None:
            self.proc.metrics.deadletter(error_type)
        letter = dead_letter_for(rec, reason, error_type, key)
        txn.produce(self.deadletter_topic, letter.key, self.codec.encode(letter))


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def partition_of(rec: Message) -> int:
    """The partition of a consumed record (always set on one; typed Optional by confluent-kafka)."""
    partition = rec.partition()
    assert partition is not None
    return partition
