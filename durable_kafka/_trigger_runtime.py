"""Wiring of a worker's trigger routes: source topic checks and the trigger processor.

Kept apart from :mod:`durable_kafka.worker` so the worker only says *when* (start, stop) and
this module says *what*: one stateless :class:`~durable_kafka.processors.runtime.Processor`
over every route's source topic, in consumer group ``<hub>.triggers.<digest of the route set>``
(hub-prefixed for the ACL model of docs/SECURITY.md; workers with the same routes split the
source partitions), with transactional id ``<hub>.triggers.<digest>.<worker id>``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from durable_kafka.errors import BrokerError, SourceTopicMissingError
from durable_kafka.processors.runtime import Processor, ProcessorConfig
from durable_kafka.processors.store import StoreSet
from durable_kafka.processors.triggers import TriggerHandler
from durable_kafka.streams.config import admin_config
from durable_kafka.streams.topics import HubTopics
from durable_kafka.triggers import Route, route_set_digest

__all__ = ["trigger_group", "check_source_topics", "build_trigger_processor"]


def trigger_group(hub: str, routes: Sequence[Route]) -> str:
    return f"{hub}.triggers.{route_set_digest(routes)}"


def check_source_topics(bootstrap: str, kafka_config: Mapping[str, Any], routes: Sequence[Any],
                        create_missing: set[str], timeout: float = 30.0, *, what: str = "trigger source topic",
                        hint: str = "Worker.add_trigger") -> None:
    """Every route's topic must exist: a clear error naming the route, or created if asked.

    Also used for the output topics of completion routes (``what``/``hint`` name them).
    """
    admin = AdminClient(admin_config(bootstrap, kafka_config=kafka_config))
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(f"listing topics for the trigger routes failed: {exc}") from exc
    missing = [r for r in routes if r.topic not in metadata.topics or metadata.topics[r.topic].error is not None]
    to_create = sorted({r.topic for r in missing if r.topic in create_missing})
    absent = [r for r in missing if r.topic not in create_missing]
    if absent:
        names = ", ".join(f"{r.name!r} uses {r.topic!r}" for r in absent)
        raise SourceTopicMissingError(f"{what} does not exist: {names} (create it, or pass "
                                      f"create_missing=True to {hint})")
    if not to_create:
        return
    futures = admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=-1) for t in to_create],
                                  request_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise BrokerError(f"creating {what} {name!r} failed: {exc}") from exc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # visible to the consumer's metadata before subscribing
        topics = admin.list_topics(timeout=timeout).topics
        if all(t in topics and topics[t].error is None for t in to_create):
            return
        time.sleep(0.1)


def build_trigger_processor(*, hub: str, worker_id: str, bootstrap: str, kafka_config: Mapping[str, Any],
                            routes: Sequence[Route], state_dir: str, stuck_after: float,
                            static_membership: bool) -> Processor:
    """The stateless trigger processor (no changelog: see :mod:`durable_kafka.processors.triggers`)."""
    topics = HubTopics(hub)
    group = trigger_group(hub, routes)
    sources = tuple(dict.fromkeys(r.topic for r in routes))
    config = ProcessorConfig(
        bootstrap=bootstrap, group_id=group, source_topic=sources[0], source_topics=sources,
        changelog_topic=None, transactional_id=f"{group}.{worker_id}", stuck_after=stuck_after,
        static_membership=static_membership, kafka_config=dict(kafka_config))
    bound = [r.bind(topics) for r in routes]
    # never opened: a stateless processor has no partition stores
    stores = StoreSet(os.path.join(state_dir, hub), "triggers-unused")
    return Processor(config, stores, lambda proc: TriggerHandler(bound, deadletter_topic=topics.deadletter),
                     name="triggers")
