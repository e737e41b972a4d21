"""Small Kafka helpers shared by the client's reader threads.

Every client reader is an *assigned* consumer (no group membership, nothing committed): the
client reads whole partitions or from a known offset, so group rebalances would only add
latency. They all read with isolation.level=read_committed because the processor writes status,
history and replies inside transactions, and an aborted attempt must never be seen.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from durable_kafka.errors import BrokerError, ConfigurationError
from durable_kafka.streams.config import consumer_config
from durable_kafka.streams.connection import raise_if_unauthorized

#: How long a metadata or watermark request to the broker may take before we give up.
METADATA_TIMEOUT = 10.0


def assigned_consumer(bootstrap: str, purpose: str, *, kafka_config: Mapping[str, Any] | None = None,
                      group_prefix: str = "durable-kafka", **overrides: Any) -> Consumer:
    """A consumer meant for ``assign()`` only; the group id is unique and never joined.

    The group id still starts with ``<group_prefix>.`` (the hub name), so a principal granted
    the hub's prefixed ACLs covers it whatever librdkafka asks the coordinator about it.

    A short fetch wait matters with read_committed: the broker does not answer a waiting fetch
    when commit markers make records readable, so the default 500 ms wait would be added to
    every status change and every reply.
    """
    config = consumer_config(
        bootstrap,
        f"{group_prefix}.client-{purpose}-{uuid.uuid4().hex}",
        kafka_config=kafka_config,
        **{
            "enable.partition.eof": True,
            "allow.auto.create.topics": False,
            "fetch.wait.max.ms": 10,
            # an empty or not-yet-ready first fetch must not cost the default 500 ms backoff
            "fetch.error.backoff.ms": 10,
            **overrides,
        },
    )
    return Consumer(config)


def partition_count(consumer: Consumer, topic: str, timeout: float = METADATA_TIMEOUT) -> int:
    """The topic's partition count; ConfigurationError if the hub's topic does not exist."""
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as error:
        raise BrokerError(f"reading metadata of topic {topic!r} failed: {error}") from error
    info = metadata.topics.get(topic)
    if info is not None and info.error is not None:
        raise_if_unauthorized(info.error, {"topic": topic}, "read topic")
    if info is None or info.error is not None or not info.partitions:
        reason = info.error if info is not None and info.error is not None else "no partitions"
        raise ConfigurationError(
            f"topic {topic!r} is not available ({reason}); create the hub's topics first "
            "(durable_kafka.streams.admin.ensure_topics or start a worker)"
        )
    return len(info.partitions)


#: Errors a just-created topic answers with until its leaders are known everywhere.
_TRANSIENT = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
    # after a broker restart librdkafka's metadata can lack the partition for a moment (met by
    # the full-size broker chaos scenario)
    KafkaError._UNKNOWN_PARTITION,
})


class Metadata:
    """Partition counts and end offsets of a hub's topics, for one client (thread-safe).

    End offsets are the *high watermark* (read_uncommitted): a transaction's commit returns to
    its producer before the commit markers are written, so the last stable offset can briefly
    lag a commit that already happened. Waiting for the high watermark instead makes a reader
    wait for those markers, which is what read-your-writes needs.
    """

    def __init__(self, bootstrap: str, kafka_config: Mapping[str, Any] | None = None,
                 hub: str = "durable-kafka", preflight: Callable[[], None] | None = None) -> None:
        self._preflight = preflight or (lambda: None)  # the owner's one-time connection check
        self._bootstrap = bootstrap
        self._kafka_config = kafka_config
        self._hub = hub
        self._lock = threading.Lock()
        self._consumer: Consumer | None = None
        self._counts: dict[str, int] = {}

    def _get(self) -> Consumer:
        if self._consumer is None:
            self._preflight()
            self._consumer = self.consumer("meta", **{"isolation.level": "read_uncommitted"})
        return self._consumer

    def consumer(self, purpose: str, **overrides: Any) -> Consumer:
        """A new assigned consumer of this client's hub, with the client's Kafka settings."""
        self._preflight()
        return assigned_consumer(self._bootstrap, purpose, kafka_config=self._kafka_config,
                                 group_prefix=self._hub, **overrides)

    def partition_count(self, topic: str) -> int:
        with self._lock:
            if topic not in self._counts:
                self._counts[topic] = partition_count(self._get(), topic)
            return self._counts[topic]

    def high_watermark(self, topic: str, partition: int, timeout: float = METADATA_TIMEOUT) -> int:
        """The partition's end offset, asked of the broker now (not a cached value)."""
        return self.watermarks(topic, partition, timeout)[1]

    def watermarks(self, topic: str, partition: int, timeout: float = METADATA_TIMEOUT) -> tuple[int, int]:
        """The partition's (low, high) offsets, asked of the broker now (not cached values)."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        with self._lock:
            consumer = self._get()
            while True:
                try:
                    low, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, partition),
                        timeout=max(0.1, deadline - time.monotonic()),
                        cached=False,
                    )
                    return low, high
                except KafkaException as error:
                    code = error.args[0].code() if error.args else None
                    if code not in _TRANSIENT or time.monotonic() + delay >= deadline:
                        raise BrokerError(
                            f"reading the end offset of {topic!r} partition {partition} "
                            f"failed: {error}"
                        ) from error
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


def is_partition_eof(error: KafkaError | None) -> bool:
    return error is not None and error.code() == KafkaError._PARTITION_EOF
