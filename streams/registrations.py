"""Who hosts what on a hub: worker registrations on the compacted ``<hub>.workers`` topic.

Each worker publishes a :class:`~durable_kafka.streams.events.WorkerRegistration` (key = its
worker id) when it starts, refreshes it every ``heartbeat`` seconds and writes a tombstone when
it stops cleanly. Compaction keeps one record per worker, so reading the topic from the start
gives every worker's latest registration; a registration whose heartbeat is older than three
heartbeats counts as gone (a worker killed with -9 cannot write its tombstone).

Readers: the orchestration processor (to say which activity has no live host) and a starting
worker (to check that its orchestrators and entities agree with the hub's other workers).
Routing itself does not depend on this view: a request goes to its activity's topic whether
or not anyone hosts it yet, and waits there (docs/ROUTING.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from durable_kafka.errors import CodecError
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import command_producer_config, consumer_config
from durable_kafka.streams.events import WorkerRegistration

__all__ = ["DEFAULT_HEARTBEAT", "RegistrationPublisher", "RegistrationView", "is_live"]

log = logging.getLogger(__name__)

#: seconds between two registrations of a running worker
DEFAULT_HEARTBEAT = 5.0
#: a registration older than this many heartbeats is a worker that is gone
STALE_AFTER_HEARTBEATS = 3


def is_live(registration: WorkerRegistration, now: datetime | None = None) -> bool:
    """True while ``registration``'s heartbeat is younger than three heartbeat intervals."""
    now = now or datetime.now(timezone.utc)
    age_ms = (now - registration.heartbeat_at).total_seconds() * 1000
    return age_ms < STALE_AFTER_HEARTBEATS * max(registration.heartbeat_ms, 1)


class RegistrationView:
    """The latest registration of every worker of a hub, kept current by a reader thread.

    The reader assigns every partition of the topic (no consumer group: every reader wants all
    of it) from the beginning and applies records and tombstones in order.
    """

    def __init__(self, bootstrap: str, topic: str, *, kafka_config: Mapping[str, Any] | None = None,
                 group_id: str | None = None) -> None:
        self._topic = topic
        self._codec = Codec.default()
        # the group id is never joined (assign, no commits); ACLs still want a hub-prefixed one
        self._consumer = Consumer(consumer_config(
            bootstrap, group_id or f"{topic}.reader", kafka_config=kafka_config,
            **{"enable.partition.eof": True, "fetch.wait.max.ms": 100}))
        self._workers: dict[str, WorkerRegistration] = {}
        self._lock = threading.Lock()
        self._caught_up = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._eof: set[int] = set()
        self._partitions = 0
        #: False when the topic does not exist (a hub created before routing, topics not created)
        self.available = False

    def start(self) -> RegistrationView:
        metadata = self._consumer.list_topics(self._topic, timeout=30)
        topic = metadata.topics.get(self._topic)
        partitions = sorted(topic.partitions) if topic is not None and topic.error is None else []
        self._partitions = len(partitions)
        self.available = bool(partitions)
        if not partitions:
            log.warning("registration topic %s is missing; no worker is known to host anything", self._topic)
            self._caught_up.set()
        self._consumer.assign([TopicPartition(self._topic, p, 0) for p in partitions])
        self._thread = threading.Thread(target=self._run, name=f"registrations:{self._topic}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._consumer.close()

    def wait_caught_up(self, timeout: float) -> bool:
        """Block until every partition was read to its end once (or timeout)."""
        return self._caught_up.wait(timeout)

    def live(self, now: datetime | None = None) -> dict[str, WorkerRegistration]:
        """The registrations of workers that are running, by worker id."""
        with self._lock:
            return {w: r for w, r in self._workers.items() if is_live(r, now)}

    def hosts_of_activity(self, name: str) -> list[str]:
        """Live workers that take requests of activity ``name`` (by name or with no filters)."""
        return sorted(w for w, r in self.live().items() if r.all_activities or name in r.activities)

    def _run(self) -> None:
        while not self._stopping.is_set():
            message = self._consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._eof.add(message.partition())
                    if len(self._eof) >= self._partitions:
                        self._caught_up.set()
                else:
                    log.debug("registrations: %s", error)
                continue
            key = message.key()
            if key is None:
                continue
            worker_id = key.decode("utf-8", "replace")
            value = message.value()
            try:
                registration = None if value is None else self._codec.decode(value, expected=WorkerRegistration)
            except CodecError as exc:  # not ours; must not stop the view
                log.warning("registrations: skipping an undecodable record of %s: %s", worker_id, exc)
                continue
            with self._lock:
                if registration is None:
                    self._workers.pop(worker_id, None)
                else:
                    self._workers[worker_id] = registration


class RegistrationPublisher:
    """Publishes one worker's registration now and every ``heartbeat`` seconds; a tombstone on stop."""

    def __init__(self, bootstrap: str, topic: str, registration: WorkerRegistration, *,
                 kafka_config: Mapping[str, Any] | None = None, heartbeat: float = DEFAULT_HEARTBEAT) -> None:
        self._topic = topic
        self._registration = registration
        self._heartbeat = heartbeat
        self._codec = Codec.default()
        self._producer = Producer(command_producer_config(bootstrap, kafka_config=kafka_config))
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> RegistrationPublisher:
        self._publish()
        if self._producer.flush(30) != 0:
            log.warning("worker registration on %s not acknowledged yet", self._topic)
        self._thread = threading.Thread(target=self._run, name=f"registration:{self._topic}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Tombstone the registration: the hub sees at once that this worker hosts nothing."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._producer.produce(self._topic, key=self._registration.worker_id.encode("utf-8"), value=None)
        self._producer.flush(10)

    def _publish(self) -> None:
        self._registration.heartbeat_at = datetime.now(timezone.utc)
        self._registration.heartbeat_ms = int(self._heartbeat * 1000)
        self._producer.produce(self._topic, key=self._registration.worker_id.encode("utf-8"),
                               value=self._codec.encode(self._registration))
        self._producer.poll(0)

    def _run(self) -> None:
        next_at = time.monotonic() + self._heartbeat
        while not self._stopping.wait(max(0.0, next_at - time.monotonic())):
            try:
                self._publish()
            except Exception:  # noqa: BLE001 - a missed heartbeat is retried at the next one
                log.exception("publishing the worker registration failed")
            next_at = time.monotonic() + self._heartbeat
