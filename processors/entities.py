"""The entity processor: `<hub>.entity-operations` in, state, responses, signals and history out.

The shell around :mod:`.entity_step`, with the same structure as the orchestration processor:
it decodes records, groups a batch by entity (so a batch holding 500 operations for one hot
entity loads its state once, runs them in order and writes it once), keeps decoded states in
a bounded LRU cache, fires due scheduled signals from a partition-local index in the same
RocksDB store, and dead-letters poison input without stopping the partition. Everything a
batch produces (state changelog, history, responses, snapshots, consumed offsets) is one
Kafka transaction (see :mod:`.runtime`).
"""

from __future__ import annotations

import logging
import os
import traceback
from collections import OrderedDict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from confluent_kafka import Message

from durable_kafka.errors import CodecError
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import partition_for
from durable_kafka.streams.deadletter import dead_letter_for, misrouted_reason
from durable_kafka.streams.events import EntityMessage, EntityState
from durable_kafka.streams.limits import check_record_size
from durable_kafka.streams.topics import HubTopics

from . import store as keys
from .entity_step import SCHEDULED_PREFIX, EntityStep, EntityTopics
from .instance import Outcome
from .runtime import Processor, ProcessorConfig, Transaction
from .store import StoreOptions, StoreSet

if TYPE_CHECKING:
    from durable_kafka.worker import Worker

log = logging.getLogger(__name__)

MAX_SCHEDULED_PER_TICK = 2000


class EntityHandler:
    """Implements :class:`~.runtime.Handler` for entities."""

    def __init__(self, processor: Processor, *, topics: EntityTopics, deadletter_topic: str,
                 entities: dict[str, Any], cache_size: int = 10_000, codec: Codec | None = None) -> None:
        self.proc = processor
        self.topics = topics
        self.deadletter_topic = deadletter_topic
        self.entities = entities
        self.codec = codec or Codec.default()
        self.cache: OrderedDict[str, tuple[int, EntityState | None]] = OrderedDict()
        self.cache_size = cache_size
        self.stats = {"operations": 0, "batches": 0, "entities": 0, "deadletters": 0, "scheduled_fired": 0}
        self._dirty: set[str] = set()  # entities touched by the open transaction

    # ------------------------------------------------------------------ Handler protocol
    def process(self, txn: Transaction, records: list[Message]) -> None:
        now = datetime.now(timezone.utc)
        groups: OrderedDict[tuple[int, str], list[tuple[Message, EntityMessage]]] = OrderedDict()
        decode = self.codec.decode
        for rec in records:
            try:
                msg = decode(rec.value(), expected=EntityMessage)
            except CodecError as exc:
                key = rec.key().decode("utf-8", "replace") if rec.key() is not None else None
                self.dead_letter(txn, rec, f"cannot decode: {exc}", type(exc).__name__, key)
                continue
            partitions = self.proc.source_partition_count()
            if partition_for(msg.entity_id.encode("utf-8"), partitions) != rec.partition():
                self.dead_letter(txn, rec, misrouted_reason(rec, msg.entity_id, partitions),
                                 "MisroutedRecordError", msg.entity_id)
                continue
            groups.setdefault((rec.partition(), msg.entity_id), []).append((rec, msg))
        self.stats["batches"] += 1
        for (partition, eid), items in groups.items():
            self._run_entity(txn, partition, eid, now, msgs=[m for _, m in items], raws=[r for r, _ in items])

    def has_due_work(self, now_ms: int) -> bool:
        return keys.any_due(self.proc.stores, list(self.proc.owned), SCHEDULED_PREFIX, now_ms)

    def tick(self, txn: Transaction, now_ms: int) -> None:
        now = datetime.now(timezone.utc)
        for p in list(self.proc.owned):
            store = self.proc.stores.get(p)
            if store is None:
                continue
            due: OrderedDict[str, list[EntityMessage]] = OrderedDict()
            fired = keys.take_due(store, lambda k: txn.get(p, k), lambda k: txn.put(p, k, None),
                                  SCHEDULED_PREFIX, now_ms, MAX_SCHEDULED_PER_TICK)
            for k, v in fired:
                try:
                    msg = self.codec.decode(v, expected=EntityMessage)
                except CodecError:
                    log.exception("dropping an undecodable scheduled signal under %r", k)
                    continue
                due.setdefault(msg.entity_id, []).append(msg)
            self.stats["scheduled_fired"] += len(fired)
            for eid, msgs in due.items():
                self._run_entity(txn, p, eid, now, fired=msgs)

    def on_assigned(self, partitions: list[int]) -> None:
        pass

    def on_revoked(self, partitions: list[int]) -> None:
        gone = set(partitions)
        for eid in [e for e, (p, _) in self.cache.items() if p in gone]:
            del self.cache[eid]

    def on_aborted(self) -> None:
        # cached states of entities this transaction touched may hold its uncommitted changes
        for eid in self._dirty:
            self.cache.pop(eid, None)
        self._dirty.clear()

    def on_committed(self) -> None:
        self._dirty.clear()

    # ------------------------------------------------------------------ one entity
    def _run_entity(self, txn: Transaction, partition: int, eid: str, now: datetime, *,
                    msgs: list[EntityMessage] = (), raws: list[Message] = (),
                    fired: list[EntityMessage] = ()) -> None:
        self._dirty.add(eid)
        try:
            state = self._load(txn, partition, eid)
            step = EntityStep(state=state, entity_id=eid, now=now, topics=self.topics, lookup=self.entities.get)
            for m in fired:
                step.fire(m)
            for m in msgs:
                step.apply(m)
            outcome = step.finish()
            writes = self._encode(outcome)
        except Exception as exc:  # noqa: BLE001 - poison input must not stop the partition
            self.cache.pop(eid, None)
            reason = f"{type(exc).__name__}: {exc}"
            log.error("entity %s: cannot apply input (%s); dead-lettering it", eid, reason)
            log.debug("%s", traceback.format_exc())
            for raw in raws:
                self.dead_letter(txn, raw, f"cannot apply: {reason}", type(exc).__name__, eid)
            return
        self.stats["operations"] += step.operations
        self.stats["entities"] += 1
        self._write(txn, partition, writes)
        self.cache[eid] = (partition, step.s)
        self.cache.move_to_end(eid)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def _load(self, txn: Transaction, partition: int, eid: str) -> EntityState | None:
        cached = self.cache.get(eid)
        if cached is not None and cached[0] == partition:
            self.cache.move_to_end(eid)
            return cached[1]
        raw = txn.get(partition, keys.entity_key(eid))
        return self.codec.decode(raw, expected=EntityState) if raw is not None else None

    def _encode(self, outcome: Outcome) -> _Writes:
        """Encode and size every record of ``outcome`` before any of it reaches the transaction.

        Operations already refuse results and states that cannot fit; what is left (say, a
        queue of large messages held while locked) fails here, whole, and the step's input goes
        to the dead-letter topic instead of aborting the batch again and again.
        """
        encode = self.codec.encode
        puts = [(k, encode(v) if v is not None else None) for k, v in outcome.puts.items()]
        produce = [(p.topic, p.key.encode(), encode(p.value) if p.value is not None else None)
                   for p in outcome.produce]
        changelog = self.proc.config.changelog_topic
        for k, data in puts:
            check_record_size(changelog, k, data, f"the state record {k[:80]!r}")
        for (topic, key, data), p in zip(produce, outcome.produce):
            check_record_size(topic, key, data, f"the {type(p.value).__name__} record of {p.key!r}")
        return puts, produce

    @staticmethod
    def _write(txn: Transaction, partition: int, writes: _Writes) -> None:
        puts, produce = writes
        for k, data in puts:
            txn.put(partition, k, data)
        for topic, key, data in produce:
            txn.produce(topic, key, data)

    def dead_letter(self, txn: Transaction, rec: Message, reason: str, error_type: str,
                    eid: str | None = None) -> None:
        """Put ``rec`` on the dead-letter topic with ``reason`` (a truncated copy that always fits)."""
        self.stats["deadletters"] += 1
        letter = dead_letter_for(rec, reason, error_type, eid)
        txn.produce(self.deadletter_topic, letter.key, self.codec.encode(letter))


_Writes = tuple[list[tuple[bytes, bytes | None]], list[tuple[str, bytes, bytes | None]]]


def build_entity_processor(worker: Worker, store_options: StoreOptions | None) -> Processor:
    """The entity processor of ``worker``'s hub, running the entities registered on it."""
    t = HubTopics(worker.hub)
    topics = EntityTopics(t.entity_operations, t.orchestrator_events, t.history, t.status)
    stores = StoreSet(os.path.join(worker.state_dir, worker.hub), "entities", store_options or StoreOptions())
    config = ProcessorConfig(
        bootstrap=worker.bootstrap, group_id=f"{worker.hub}.entities", source_topic=t.entity_operations,
        changelog_topic=t.entities_changelog, transactional_id=f"{worker.hub}.entities.{worker.worker_id}",
        kafka_config=worker.kafka_config,
        transaction_timeout_ms=60_000,  # a batch runs user code: leave room for slow operations
        stuck_after=max(worker.stuck_after, 90.0), static_membership=worker.static_membership)
    entities = dict(worker._entities)
    return Processor(config, stores,
                     lambda proc: EntityHandler(proc, topics=topics, deadletter_topic=t.deadletter,
                                                entities=entities),
                     name="entities")
