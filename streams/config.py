"""Kafka client settings shared by every durable-kafka producer, consumer and admin client.

Why one place: partitioning must agree across every client that touches a hub (Java tools,
aiokafka in faust, confluent-kafka in the processors), and the latency/durability trade-offs
(small linger, idempotent producers, manual commits) are engine decisions, not per-call-site ones.

Overrides are keyword arguments; an underscore stands for a dot, so ``linger_ms=10`` sets
``linger.ms`` (librdkafka property names never contain underscores). Pass dotted names with
``**{"linger.ms": 10}`` if you prefer.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from durable_kafka.errors import ConfigurationError

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "BOOTSTRAP_ENV",
    "LIBRDKAFKA_LOGGER_NAME",
    "bootstrap_servers",
    "producer_config",
    "command_producer_config",
    "consumer_config",
    "admin_config",
    "murmur2",
    "partition_for",
]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
BOOTSTRAP_ENV = "DURABLE_KAFKA_BOOTSTRAP"

#: librdkafka's own log lines go to this Python logger (at librdkafka level WARNING and above).
LIBRDKAFKA_LOGGER_NAME = "durable_kafka.librdkafka"
# librdkafka warns about transient states it retries by itself (a coordinator still loading, a
# leader moving); an application that wants them configures this logger, others hear nothing.
logging.getLogger(LIBRDKAFKA_LOGGER_NAME).addHandler(logging.NullHandler())
logging.getLogger(LIBRDKAFKA_LOGGER_NAME).propagate = False

_SYSLOG_WARNING = 4  # librdkafka's log_level uses syslog numbers; 4 = warning


def bootstrap_servers(explicit: str | None = None) -> str:
    """The broker list to use: ``explicit``, else ``$DURABLE_KAFKA_BOOTSTRAP``, else the local broker."""
    if explicit:
        return explicit
    return os.environ.get(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP


def _normalise(overrides: dict[str, Any]) -> dict[str, Any]:
    return {key.replace("_", "."): value for key, value in overrides.items()}


def _common(bootstrap: str) -> dict[str, Any]:
    # A logger object makes confluent-kafka hand librdkafka's lines to Python logging instead
    # of printing them to stderr; log_level keeps the debug/info chatter from being produced.
    return {
        "bootstrap.servers": bootstrap,
        "logger": logging.getLogger(LIBRDKAFKA_LOGGER_NAME),
        "log_level": _SYSLOG_WARNING,
        "statistics.interval.ms": 0,
        "socket.nagle.disable": True,
    }


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """Settings for a ``confluent_kafka.Producer``.

    murmur2_random hashes keys exactly like the Java client and aiokafka (librdkafka's own
    default, consistent_random, does not), so a key lands on the same partition whoever
    writes it. Idempotence (which implies acks=all) keeps retries from duplicating or
    reordering records. A 2 ms linger batches bursts without adding visible latency.
    """
    config = _common(bootstrap)
    config.update(
        {
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "compression.type": "none",
        }
    )
    config.update(_normalise(overrides))
    return config


def command_producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """Settings for producers of commands and results whose receivers drop duplicates by id.

    An idempotent producer spends about half a second acquiring its producer id before the first
    record leaves, which every new Client and every freshly started activity worker would pay
    on its first request. Receivers already drop redelivered records by message id (the
    orchestration processor by ``recent_ids`` and open task ids), so a retry duplicate is
    harmless; one request in flight per connection keeps retries from reordering records.
    """
    config = producer_config(bootstrap)
    config.update({"enable.idempotence": False, "max.in.flight.requests.per.connection": 1, "linger.ms": 0})
    config.update(_normalise(overrides))
    return config


def consumer_config(bootstrap: str, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Settings for a ``confluent_kafka.Consumer`` in consumer group ``group_id``.

    Offsets are committed by the engine only after the work is durable (auto-commit off), a new
    group starts from the beginning so nothing written before it joined is skipped, and only
    committed transactional records are read (read_committed), so aborted work never appears.
    """
    config = _common(bootstrap)
    config.update(
        {
            "group.id": group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": False,
        }
    )
    config.update(_normalise(overrides))
    return config


def admin_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """Settings for a ``confluent_kafka.admin.AdminClient`` (quiet logging, the given broker)."""
    config = _common(bootstrap)
    del config["socket.nagle.disable"]
    config.update(_normalise(overrides))
    return config


# --------------------------------------------------------------------------- murmur2

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as a signed 32-bit int (Java ``Utils.murmur2``)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK32
        k ^= k >> 24
        k = (k * _M) & _MASK32
        h = (h * _M) & _MASK32
        h ^= k
    rest = length & 3
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the Java client, aiokafka and librdkafka's murmur2_random choose for ``key``.

    Equal to Java's ``Utils.toPositive(Utils.murmur2(key)) % partitions``; processors use it to
    route without a producer (e.g. to find which worker owns an instance id).
    """
    if partitions <= 0:
        raise ConfigurationError(f"partition count must be positive, got {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions
