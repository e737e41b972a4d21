"""The trigger processor's handler: source records in, commands to the hub's input topics out.

It runs on the same transactional loop as the orchestration processor (:mod:`.runtime`), so the
commands a batch produces and the source offsets it consumed commit in one Kafka transaction:
a kill -9 either commits both or neither. It keeps no state: a command's id derives from the
record's (route, topic, partition, offset), and the orchestration processor, which owns
instance state, decides what a duplicate or an existing instance means. So the processor is
built without a changelog (``ProcessorConfig.changelog_topic=None``): there is nothing to
restore, and source topics of any partition count are fine.

Records of one source partition are handled in offset order and each route's command goes out
in that order, keyed by the target id, so commands for one instance keep the order of their
records. A record a route cannot turn into a command (undecodable, a template field it lacks, a
callable that raised, a payload too large) goes to ``<hub>.deadletter`` and the route goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

from confluent_kafka import Message

from durable_kafka._tracing import carry_header
from durable_kafka.errors import DurableKafkaError, PayloadTooLargeError
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.deadletter import dead_letter_for
from durable_kafka.streams.limits import MAX_RECORD_BYTES, check_record_size

from .runtime import Transaction

log = logging.getLogger(__name__)

__all__ = ["TriggerHandler", "CompiledRoute", "Command"]

#: (topic, key, record dataclass) a route wants written
Command = tuple[str, str, Any]


class CompiledRoute(Protocol):
    """What the handler needs of a route (``durable_kafka.triggers`` builds them)."""

    name: str
    topic: str

    def command(self, rec: Message, now: datetime) -> Command | None:
        """The command for ``rec`` (None: filtered out); raises TriggerRecordError for a bad record."""
        ...


class TriggerHandler:
    """Implements :class:`~.runtime.Handler` for trigger routes (stateless, no timers)."""

    #: durable_kafka._metrics.ProcessorMetrics of its processor, set by the worker when metrics are on
    metrics: Any = None

    def __init__(self, routes: Sequence[CompiledRoute], *, deadletter_topic: str, codec: Codec | None = None) -> None:
        self.routes: Mapping[str, list[CompiledRoute]] = _by_topic(routes)
        self.deadletter_topic = deadletter_topic
        self.codec = codec or Codec.default()
        self.stats: dict[str, int] = {"commands": 0, "filtered": 0, "deadletters": 0}

    def process(self, txn: Transaction, records: list[Message]) -> None:
        now = datetime.now(timezone.utc)
        for rec in records:  # arrival order is offset order within each source partition
            for route in self.routes.get(rec.topic() or "", ()):
                self._one(txn, route, rec, now)

    def _one(self, txn: Transaction, route: CompiledRoute, rec: Message, now: datetime) -> None:
        try:
            command = route.command(rec, now)
            if command is None:
                self.stats["filtered"] += 1
                return
            topic, key, value = command
            data = self.codec.encode(value)
            key_bytes = key.encode("utf-8")
            if len(key_bytes) + len(data) > MAX_RECORD_BYTES:  # the message is built only then
                check_record_size(topic, key_bytes, data, f"the command of route {route.name!r}")
        except (DurableKafkaError, PayloadTooLargeError) as exc:
            self.dead_letter(txn, rec, f"route {route.name!r}: {exc}", type(exc).__name__)
            return
        txn.produce(topic, key_bytes, data, headers=carry_header(rec))  # the source's trace context goes on
        self.stats["commands"] += 1

    def dead_letter(self, txn: Transaction, rec: Message, reason: str, error_type: str) -> None:
        """Put ``rec`` on ``<hub>.deadletter`` (coordinates, reason naming the route, a bounded copy)."""
        self.stats["deadletters"] += 1
        if self.metrics is not None:
            self.metrics.deadletter(error_type)
        letter = dead_letter_for(rec, reason, error_type)
        log.warning("trigger record %s[%s]@%s dead-lettered: %s", rec.topic(), rec.partition(), rec.offset(), reason)
        txn.produce(self.deadletter_topic, letter.key, self.codec.encode(letter))

    # ------------------------------------------------------------------ the rest of Handler: nothing to do
    def tick(self, txn: Transaction, now_ms: int) -> None:
        pass

    def has_due_work(self, now_ms: int) -> bool:
        return False

    def on_assigned(self, partitions: list[int]) -> None:
        pass

    def on_revoked(self, partitions: list[int]) -> None:
        pass

    def on_aborted(self) -> None:
        pass

    def on_committed(self) -> None:
        pass


def _by_topic(routes: Sequence[CompiledRoute]) -> dict[str, list[CompiledRoute]]:
    out: dict[str, list[CompiledRoute]] = {}
    for r in routes:
        out.setdefault(r.topic, []).append(r)
    return out
