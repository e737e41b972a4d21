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
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from confluent_kafka import Message

from durable_kafka.errors import CodecError
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.events import EntityMessage, EntityState
from durable_kafka.streams.payloads import PayloadCodec, bind
from durable_kafka.streams.topics import HubTopics

from . import store as keys
from .entity_step import SCHEDULED_PREFIX, EntityStep, EntityTopics
from .runtime import Processor, ProcessorConfig, Transaction
from .shell import KeyedHandlerShell
from .store import StoreOptions, StoreSet

if TYPE_CHECKING:
    from durable_kafka.worker import Worker

log = logging.getLogger(__name__)

MAX_SCHEDULED_PER_TICK = 2000


class EntityHandler(KeyedHandlerShell):
    """Implements :class:`~.runtime.Handler` for entities (shell: :mod:`.shell`)."""

    message_type = EntityMessage
    metrics: Any = None  # durable_kafka._metrics.EngineMetrics, set by the worker when metrics are on
    cache: OrderedDict[str, tuple[int, EntityState | None]]  # entity id -> (partition, state)

    def __init__(self, processor: Processor, *, topics: EntityTopics, deadletter_topic: str,
                 entities: dict[str, Any], cache_size: int = 10_000, codec: Codec | None = None) -> None:
        super().__init__(processor, deadletter_topic=deadletter_topic, codec=codec)
        self.topics = topics
        self.entities = entities
        self.cache_size = cache_size
        self.stats.update({"operations": 0, "batches": 0, "entities": 0, "scheduled_fired": 0})

    # ------------------------------------------------------------------ Handler protocol
    def process(self, txn: Transaction, records: list[Message]) -> None:
        self.stats["batches"] += 1
        super().process(txn, records)

    def key_of(self, msg: EntityMessage) -> str:
        return msg.entity_id

    def run_key(self, txn: Transaction, partition: int, key: str, now: datetime,
                msgs: list[Any], raws: list[Message]) -> None:
        with bind(self.payloads, key, txn):  # large states and inputs go into this transaction
            self._run_entity(txn, partition, key, now, msgs=msgs, raws=raws)

    def has_due_work(self, now_ms: int) -> bool:
        return keys.any_due(self.proc.stores, list(self.proc.owned), SCHEDULED_PREFIX, now_ms)

    def tick(self, txn: Transaction, now_ms: int) -> None:
        now = self.clock()
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
                with bind(self.payloads, eid, txn):
                    self._run_entity(txn, p, eid, now, fired=msgs)

    def on_assigned(self, partitions: list[int]) -> None:
        pass

    def on_revoked(self, partitions: list[int]) -> None:
        gone = set(partitions)
        for eid in [e for e, (p, _) in self.cache.items() if p in gone]:
            del self.cache[eid]

    # ------------------------------------------------------------------ one entity
    def _run_entity(self, txn: Transaction, partition: int, eid: str, now: datetime, *,
                    msgs: Sequence[EntityMessage] = (), raws: Sequence[Message] = (),
                    fired: Sequence[EntityMessage] = ()) -> None:
        self.touch(eid)
        try:
            state = self._load(txn, partition, eid)
            step = EntityStep(state=state, entity_id=eid, now=now, topics=self.topics, lookup=self.entities.get)
            for m in fired:
                step.fire(m)
            for m in msgs:
                step.apply(m)
            outcome = step.finish()
            writes = self.encode(outcome)
        except Exception as exc:  # noqa: BLE001 - poison input must not stop the partition
            self.cache.pop(eid, None)
            reason = f"{type(exc).__name__}: {exc}"
            log.error("entity %s: cannot apply input (%s); dead-lettering it", eid, reason)
            log.debug("%s", traceback.format_exc())
            for raw in raws:
                self.dead_letter(txn, raw, f"cannot apply: {reason}", type(exc).__name__, eid)
            return
        self.stats["operations"] += step.operations
        if self.metrics is not None:
            self.metrics.entity_ops(eid, step.operations)
        self.stats["entities"] += 1
        self.write(txn, partition, writes)
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
        if raw is None:
            return None
        state: EntityState = self.codec.decode(raw, expected=EntityState)  # the codec checks the type
        return state


def build_entity_processor(worker: Worker, store_options: StoreOptions | None,
                           hosted: list[str] | None = None) -> Processor:
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
    entities = {n: fn for n, fn in worker._entities.items() if hosted is None or n in hosted}
    return Processor(config, stores,
                     lambda proc: _with_payloads(EntityHandler(proc, topics=topics, deadletter_topic=t.deadletter,
                                                               entities=entities), getattr(worker, "payloads", None)),
                     name="entities")


def _with_payloads(handler: EntityHandler, payloads: PayloadCodec | None) -> EntityHandler:
    """The worker's large-payload codec on the handler (docs/PAYLOADS.md)."""
    handler.payloads = payloads
    return handler
