"""CPU of the trigger path's two steps, no broker: the start step and the trigger record.

Run::

    .venv/bin/python bench/start_step.py [--starts 5000] [--records 20000] [--rounds 3] [--profile]

``start step``: the real ``OrchestrationHandler.process`` over batches of 500 encoded
``StartOrchestration`` messages (a ``parked`` orchestration, as in ``bench/triggers.py``) on
RocksDB partition stores (12 partitions, assigned as a worker assigns them), each batch's store
writes applied as after a commit; the producer is a stub, so Kafka's share is left out.
``trigger record``: the real ``TriggerHandler.process`` of one ``triggers.Start`` route
(``instance_id="{key}"``, bytes decoder) over batches of 500 records. Both report CPU µs per
item (the thread's CPU time, the minimum and median over ``--rounds``); ``--profile`` prints a
cProfile of one round instead.

CPU time on a shared machine still moves with other load (caches, SMT siblings). For a figure
that does not, count instructions with valgrind at two sizes and take the difference, e.g. for
this checkout against another revision's tree on PYTHONPATH (``bench/triggers.py --baseline``
builds one in /tmp)::

    for n in 200 1200; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/start_step.py --starts $n --records 0 --rounds 1 --generate 1200; done

and (Ir(1200) - Ir(200)) / 1000 is the instructions per start step.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from typing import Any, cast

from durable_kafka import triggers
from durable_kafka.processors.actions import action_to_event
from durable_kafka.processors.executor import OrchestrationExecutor, OrchestratorRegistry
from durable_kafka.processors.instance import Topics
from durable_kafka.processors.orchestrations import OrchestrationHandler
from durable_kafka.processors.runtime import Transaction
from durable_kafka.processors.store import StoreSet
from durable_kafka.processors.triggers import TriggerHandler
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import partition_for
from durable_kafka.streams.topics import HubTopics

PARTITIONS = 12
BATCH = 500
TOPICS = HubTopics("bench")


def parked(ctx: Any, _input: Any) -> Any:
    yield ctx.wait_for_external_event("never")
    return None


class _Record:
    """What the handlers read of a consumed confluent-kafka Message."""

    def __init__(self, topic: str, partition: int, offset: int, key: bytes, value: bytes) -> None:
        self._topic, self._partition, self._offset, self._key, self._value = topic, partition, offset, key, value

    def topic(self) -> str:
        return self._topic

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

    def timestamp(self) -> tuple[int, int]:
        return 1, 1_700_000_000_000


class _Producer:
    def produce(self, *args: Any, **kwargs: Any) -> None:
        pass


class _Config:
    changelog_topic = TOPICS.orchestrations_changelog


class _Processor:
    def __init__(self, stores: StoreSet) -> None:
        self.stores, self.owned, self.config, self.metrics = stores, set(range(PARTITIONS)), _Config(), None

    @staticmethod
    def source_partition_count() -> int:
        return PARTITIONS


def start_records(n: int) -> list[_Record]:
    codec = Codec.default()
    now = datetime.now(timezone.utc)
    out = []
    for i in range(n):
        iid = f"t-{i}"
        body = ev.StartOrchestration(name="parked", execution_id=uuid.uuid4().hex, if_exists="skip",
                                     source=f"start:src|src|0|{i}")
        message = ev.OrchestratorMessage(id=str(uuid.uuid4()), instance_id=iid, sent_at=now, body=body)
        key = iid.encode()
        out.append(_Record(TOPICS.orchestrator_events, partition_for(key, PARTITIONS), i, key, codec.encode(message)))
    return out


def start_steps(records: list[_Record], profile: cProfile.Profile | None) -> float:
    """CPU µs per start step over ``records`` (a fresh handler and fresh stores)."""
    registry = OrchestratorRegistry()
    registry.add_orchestrator(parked)
    stores = StoreSet(tempfile.mkdtemp(prefix="bench-start-step-"), "orchestrations")
    for p in range(PARTITIONS):
        stores.open(p)
    handler = OrchestrationHandler(
        cast(Any, _Processor(stores)),
        topics=Topics(TOPICS.orchestrator_events, TOPICS.activity_requests, TOPICS.entity_operations,
                      TOPICS.history, TOPICS.status, TOPICS.replies, TOPICS.deadletter),
        deadletter_topic=TOPICS.deadletter, executor=OrchestrationExecutor(registry),
        action_to_event=lambda a, ts, iid=None: action_to_event(a, ts, iid))
    handler.on_assigned(list(range(PARTITIONS)))
    producer = _Producer()
    began = time.thread_time()
    if profile is not None:
        profile.enable()
    for b in range(0, len(records), BATCH):
        txn = Transaction(cast(Any, producer), stores, changelog_topic=_Config.changelog_topic)
        handler.process(txn, cast(Any, records[b:b + BATCH]))
        handler.on_committed()
        for p, changes in txn.changes.items():
            store = stores.get(p)
            assert store is not None
            store.write(changes, None)
    if profile is not None:
        profile.disable()
    cpu = time.thread_time() - began
    stores.close_all()
    return 1e6 * cpu / max(1, len(records))


def trigger_records(n: int, profile: cProfile.Profile | None) -> float:
    """CPU µs per trigger record turned into its start command."""
    route = triggers.Start("src", parked, instance_id="{key}", decoder="bytes")
    handler = TriggerHandler([route.bind(TOPICS)], deadletter_topic=TOPICS.deadletter)
    records = [_Record("src", i % 4, i, f"t-{i}".encode(), b"{}") for i in range(n)]
    began = time.thread_time()
    if profile is not None:
        profile.enable()
    for b in range(0, n, BATCH):
        txn = Transaction(cast(Any, _Producer()), cast(Any, StoreSet(tempfile.gettempdir(), "unused")),
                          changelog_topic="-")
        handler.process(txn, cast(Any, records[b:b + BATCH]))
    if profile is not None:
        profile.disable()
    return 1e6 * (time.thread_time() - began) / max(1, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=5000, help="start steps per round (0 skips them)")
    parser.add_argument("--records", type=int, default=20000, help="trigger records per round (0 skips them)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--generate", type=int, default=0,
                        help="encode this many start messages whatever --starts is (constant setup cost "
                             "for instruction counts at two sizes)")
    parser.add_argument("--profile", action="store_true", help="cProfile one round, sorted by cumulative time")
    args = parser.parse_args()
    records = start_records(max(args.starts, args.generate))[:args.starts]
    profile = cProfile.Profile() if args.profile else None
    rounds = 1 if args.profile else args.rounds
    steps = sorted(start_steps(records, profile) for _ in range(rounds)) if args.starts else []
    routes = sorted(trigger_records(args.records, profile) for _ in range(rounds)) if args.records else []
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    for label, values in (("start step", steps), ("trigger record", routes)):
        if values:
            print(f"{label}: CPU µs each, min {values[0]:.1f}, median {values[len(values) // 2]:.1f} "
                  f"({rounds} round(s); load average {load})")
    if profile is not None:
        pstats.Stats(profile, stream=sys.stdout).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
