"""The orchestration handler skips the store scan for early events where none can wait.

A start of an id with no instance looks for events raised to that id before it existed
(``store.waiting_prefix``). Most partitions hold none, so the handler remembers, per assigned
partition, that none waits there (found on assignment) and forgets it for good once a step
keeps one. These tests run the real handler on RocksDB stores and check that an early event is
delivered in every case: kept in the same batch as the start, in an earlier batch, and kept
before a restart (then the assignment finds it).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

from durable_kafka import task
from durable_kafka.processors import store as keys
from durable_kafka.processors.actions import action_to_event
from durable_kafka.processors.executor import OrchestrationExecutor, OrchestratorRegistry
from durable_kafka.processors.instance import Topics
from durable_kafka.processors.orchestrations import WAITING_FAMILY, OrchestrationHandler
from durable_kafka.processors.runtime import Transaction
from durable_kafka.processors.store import StoreSet
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import partition_for
from durable_kafka.streams.status import OrchestrationStatus
from durable_kafka.streams.topics import HubTopics

PARTITIONS = 4
TOPICS = HubTopics("waiting")
CODEC = Codec.default()


def waits_for_paid(ctx: task.OrchestrationContext, _: Any) -> Any:
    paid = yield ctx.wait_for_external_event("paid")
    return {"paid": paid}


class _Record:
    def __init__(self, key: str, value: bytes, offset: int) -> None:
        self._key, self._value, self._offset = key.encode(), value, offset
        self._partition = partition_for(self._key, PARTITIONS)

    def topic(self) -> str:
        return TOPICS.orchestrator_events

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> None:
        return None


class _Producer:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None]] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, **_: Any) -> None:
        self.records.append((topic, value))


class _Config:
    changelog_topic = TOPICS.orchestrations_changelog


class _Processor:
    def __init__(self, stores: StoreSet) -> None:
        self.stores, self.owned, self.config, self.metrics = stores, set(range(PARTITIONS)), _Config(), None

    @staticmethod
    def source_partition_count() -> int:
        return PARTITIONS


class Engine:
    """One handler over RocksDB stores in ``root``; ``batch`` runs and "commits" one transaction."""

    def __init__(self, root: Path) -> None:
        self.stores = StoreSet(str(root), "orchestrations")
        for p in range(PARTITIONS):
            self.stores.open(p)
        registry = OrchestratorRegistry()
        registry.add_orchestrator(waits_for_paid)
        self.handler = OrchestrationHandler(
            cast(Any, _Processor(self.stores)),
            topics=Topics(TOPICS.orchestrator_events, TOPICS.activity_requests, TOPICS.entity_operations,
                          TOPICS.history, TOPICS.status, TOPICS.replies, TOPICS.deadletter),
            deadletter_topic=TOPICS.deadletter, executor=OrchestrationExecutor(registry),
            action_to_event=lambda a, ts, iid=None: action_to_event(a, ts, iid), codec=CODEC)
        self.handler.on_assigned(list(range(PARTITIONS)))
        self.offset = 0
        self.statuses: dict[str, ev.InstanceStatus] = {}

    def batch(self, *bodies: tuple[str, Any]) -> None:
        now = datetime.now(timezone.utc)
        records = []
        for iid, body in bodies:
            self.offset += 1
            message = ev.OrchestratorMessage(id=f"m{self.offset}", instance_id=iid, sent_at=now, body=body)
            records.append(_Record(iid, CODEC.encode(message), self.offset))
        producer = _Producer()
        txn = Transaction(cast(Any, producer), cast(Any, self.stores), changelog_topic=_Config.changelog_topic)
        self.handler.process(txn, cast(Any, records))
        self.handler.on_committed()
        for p, changes in txn.changes.items():
            self.stores.open(p).write(changes, None)
        for topic, value in producer.records:
            if topic == TOPICS.status and value is not None:
                status = CODEC.decode(value)
                self.statuses[status.instance_id] = status

    def output(self, iid: str) -> Any:
        status = self.statuses[iid]
        assert status.runtime_status == OrchestrationStatus.COMPLETED, status.runtime_status
        return json.loads(status.output or "null")

    def close(self) -> None:
        self.stores.close_all()


def start(execution_id: str) -> ev.StartOrchestration:
    return ev.StartOrchestration(name="waits_for_paid", execution_id=execution_id)


def paid(value: int) -> ev.RaiseEvent:
    return ev.RaiseEvent(name="paid", input=json.dumps(value))


def test_empty_partitions_are_known_to_hold_no_waiting_event(tmp_path: Path) -> None:
    engine = Engine(tmp_path)
    assert engine.handler._no_waiting == set(range(PARTITIONS))
    engine.batch(("a", start("e1")), ("a", paid(1)))
    assert engine.output("a") == {"paid": 1}
    assert engine.handler._no_waiting == set(range(PARTITIONS))  # nothing waited anywhere
    engine.close()


def test_an_event_kept_in_an_earlier_batch_is_delivered_at_start(tmp_path: Path) -> None:
    engine = Engine(tmp_path)
    engine.batch(("b", paid(7)))
    partition = partition_for(b"b", PARTITIONS)
    assert partition not in engine.handler._no_waiting  # an event waits there now
    assert engine.stores.open(partition).first(WAITING_FAMILY) is not None
    engine.batch(("b", start("e1")))
    assert engine.output("b") == {"paid": 7}
    engine.close()


def test_an_event_kept_earlier_in_the_same_batch_is_delivered(tmp_path: Path) -> None:
    engine = Engine(tmp_path)
    # another id on the same partition, raised to first: the start of "c" comes later in the batch
    other = next(f"x{i}" for i in range(1000) if partition_for(f"x{i}".encode(), PARTITIONS)
                 == partition_for(b"c", PARTITIONS))
    engine.batch((other, paid(3)), ("c", paid(5)), (other, start("e1")), ("c", start("e2")))
    assert engine.output(other) == {"paid": 3} and engine.output("c") == {"paid": 5}
    engine.close()


def test_a_restarted_worker_finds_the_events_that_wait(tmp_path: Path) -> None:
    engine = Engine(tmp_path)
    engine.batch(("d", paid(9)))
    engine.close()
    again = Engine(tmp_path)  # the same stores: the assignment scan finds the waiting event
    assert partition_for(b"d", PARTITIONS) not in again.handler._no_waiting
    again.batch(("d", start("e1")))
    assert again.output("d") == {"paid": 9}
    again.close()


def test_the_waiting_family_is_the_store_s_prefix() -> None:
    assert keys.waiting_prefix("order-1").startswith(WAITING_FAMILY)
    assert keys.waiting_key("order-1", "m1").startswith(WAITING_FAMILY)
    for other in (keys.instance_key("w"), keys.history_prefix("w"), keys.TIMER_PREFIX, keys.PARKED_PREFIX,
                  keys.entity_key("w")):
        assert not other.startswith(WAITING_FAMILY)
