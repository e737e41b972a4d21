"""Kafka client settings shared by every durable-kafka producer, consumer and admin client.

Why one place: partitioning must agree across every client that touches a hub (Java tools,
aiokafka in faust, confluent-kafka in the processors), and the latency/durability trade-offs
(small linger, idempotent producers, manual commits) are engine decisions, not per-call-site ones.

Overrides are keyword arguments; an underscore stands for a dot, so ``linger_ms=10`` sets
``linger.ms`` (librdkafka property names never contain underscores). Pass dotted names with
``**{"linger.ms": 10}`` if you prefer.

Connection and security settings (``security.protocol``, ``sasl.*``, ``ssl.*``, ``client.id``...)
come from one resolver, :func:`resolve_kafka_config`, and reach every client built here. Its
sources, lowest precedence first: a properties file (``DURABLE_KAFKA_CONFIG_FILE`` or an explicit
path, e.g. the CLI's ``--kafka-config``), ``DURABLE_KAFKA_<NAME>`` environment variables, and the
``kafka_config`` dict given to ``Worker``/``Client``. See docs/SECURITY.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from durable_kafka.errors import ConfigurationError
from durable_kafka.streams.properties import load_properties, translate_java_names

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "BOOTSTRAP_ENV",
    "CONFIG_FILE_ENV",
    "ENV_PREFIX",
    "KafkaConfig",
    "env_name",
    "resolve_kafka_config",
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


def bootstrap_servers(explicit: str | None = None, kafka_config: Mapping[str, Any] | None = None) -> str:
    """The broker list: ``explicit``, else ``bootstrap.servers`` of the resolved Kafka settings
    (``kafka_config`` dict > ``$DURABLE_KAFKA_BOOTSTRAP`` > properties file), else the local broker."""
    if explicit:
        return explicit
    resolved = resolve_kafka_config() if kafka_config is None else kafka_config
    return str(resolved.get("bootstrap.servers") or DEFAULT_BOOTSTRAP)


# --------------------------------------------------------------------------- connection settings

#: A resolved set of librdkafka connection/security properties (dotted names, string values).
KafkaConfig = dict[str, Any]

ENV_PREFIX = "DURABLE_KAFKA_"
CONFIG_FILE_ENV = "DURABLE_KAFKA_CONFIG_FILE"

# Settings users may give: where and how to connect, never how the engine uses Kafka.
_ALLOWED_PREFIXES = ("security.protocol", "sasl.", "ssl.", "https.", "socket.", "reconnect.backoff.")
_ALLOWED_KEYS = frozenset({
    "bootstrap.servers", "client.id", "client.rack", "broker.address.family", "connections.max.idle.ms",
    "enable.ssl.certificate.verification", "enable.sasl.oauthbearer.unsecure.jwt", "metadata.max.age.ms",
    "topic.metadata.refresh.interval.ms", "api.version.request.timeout.ms", "client.dns.lookup",
})
# Environment names (after the prefix) that are not client properties.
_ENV_RESERVED = frozenset({"CONFIG_FILE", "STATE_DIR", "CACHE_DIR"})
# Which environment names become properties: the settings a deployment injects as secrets.
_ENV_PROPERTY_PREFIXES = ("SECURITY_", "SASL_", "SSL_", "HTTPS_", "ENABLE_SSL_", "ENABLE_SASL_")
_ENV_PROPERTY_NAMES = frozenset({"BOOTSTRAP", "CLIENT_ID", "CLIENT_RACK"})


def env_name(key: str) -> str:
    """The environment variable carrying property ``key``: ``sasl.username`` -> ``DURABLE_KAFKA_SASL_USERNAME``."""
    return ENV_PREFIX + ("BOOTSTRAP" if key == "bootstrap.servers" else key.upper().replace(".", "_"))


def _from_env(environ: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or value == "":
            continue
        suffix = name[len(ENV_PREFIX):]
        if suffix in _ENV_RESERVED:
            continue
        if suffix == "BOOTSTRAP":
            found["bootstrap.servers"] = value
        elif suffix in _ENV_PROPERTY_NAMES or suffix.startswith(_ENV_PROPERTY_PREFIXES):
            found[suffix.lower().replace("_", ".")] = value
    return found


def _check_allowed(settings: Mapping[str, Any], source: str) -> None:
    for key in settings:
        if not isinstance(key, str):
            raise ConfigurationError(f"{source}: property names must be strings, got {key!r}")
        if key in _ALLOWED_KEYS or key.startswith(_ALLOWED_PREFIXES):
            continue
        raise ConfigurationError(
            f"{source}: {key!r} is not a connection or security setting; durable-kafka sets how its "
            "clients use Kafka (groups, transactions, partitioner, acks...) itself. Accepted: "
            "bootstrap.servers, security.protocol, sasl.*, ssl.*, client.id and socket settings")


def resolve_kafka_config(
    explicit: Mapping[str, Any] | None = None,
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> KafkaConfig:
    """The connection/security settings every client gets, merged from three sources.

    Lowest precedence first: the properties file ``config_file`` (else ``$DURABLE_KAFKA_CONFIG_FILE``),
    ``DURABLE_KAFKA_*`` environment variables (:func:`env_name`), then ``explicit`` (the
    ``kafka_config`` dict of ``Worker``/``Client``). Java client names are translated in each
    source (``sasl.jaas.config``, PEM trust/key stores); settings librdkafka cannot use, and
    settings that are not about connecting, raise ``ConfigurationError`` naming the key.
    """
    environ = os.environ if environ is None else environ
    merged: KafkaConfig = {}
    path = config_file or environ.get(CONFIG_FILE_ENV)
    if path:
        source = f"Kafka properties file {str(path)!r}"
        from_file = translate_java_names(load_properties(path), source)
        _check_allowed(from_file, source)
        merged.update(from_file)
    from_env = translate_java_names(_from_env(environ), f"{ENV_PREFIX}* environment variables")
    _check_allowed(from_env, f"{ENV_PREFIX}* environment variables")
    merged.update(from_env)
    if explicit:
        if not isinstance(explicit, Mapping):
            raise ConfigurationError(f"kafka_config must be a dict of Kafka properties, got {type(explicit).__name__}")
        given = translate_java_names(dict(explicit), "kafka_config")
        _check_allowed(given, "kafka_config")
        merged.update(given)
    return merged


def _normalise(overrides: dict[str, Any]) -> dict[str, Any]:
    return {key.replace("_", "."): value for key, value in overrides.items()}


def _common(bootstrap: str, kafka_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    # A logger object makes confluent-kafka hand librdkafka's lines to Python logging instead
    # of printing them to stderr; log_level keeps the debug/info chatter from being produced.
    config = {
        "bootstrap.servers": bootstrap,
        "logger": logging.getLogger(LIBRDKAFKA_LOGGER_NAME),
        "log_level": _SYSLOG_WARNING,
        "statistics.interval.ms": 0,
        "socket.nagle.disable": True,
    }
    security = resolve_kafka_config() if kafka_config is None else kafka_config
    config.update({k: v for k, v in security.items() if k != "bootstrap.servers"})
    return config


def producer_config(bootstrap: str, *, kafka_config: Mapping[str, Any] | None = None,
                    **overrides: Any) -> dict[str, Any]:
    """Settings for a ``confluent_kafka.Producer``.

    murmur2_random hashes keys exactly like the Java client and aiokafka (librdkafka's own
    default, consistent_random, does not), so a key lands on the same partition whoever
    writes it. Idempotence (which implies acks=all) keeps retries from duplicating or
    reordering records. A 2 ms linger batches bursts without adding visible latency.
    ``kafka_config``: resolved connection settings (None: resolved from the environment).
    """
    config = _common(bootstrap, kafka_config)
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


def command_producer_config(bootstrap: str, *, kafka_config: Mapping[str, Any] | None = None,
                            **overrides: Any) -> dict[str, Any]:
    """Settings for producers of commands and results whose receivers drop duplicates by id.

    An idempotent producer spends about half a second acquiring its producer id before the first
    record leaves, which every new Client and every freshly started activity worker would pay
    on its first request. Receivers already drop redelivered records by message id (the
    orchestration processor by ``recent_ids`` and open task ids), so a retry duplicate is
    harmless; one request in flight per connection keeps retries from reordering records.
    """
    config = producer_config(bootstrap, kafka_config=kafka_config)
    config.update({"enable.idempotence": False, "max.in.flight.requests.per.connection": 1, "linger.ms": 0})
    config.update(_normalise(overrides))
    return config


def consumer_config(bootstrap: str, group_id: str, *, kafka_config: Mapping[str, Any] | None = None,
                    **overrides: Any) -> dict[str, Any]:
    """Settings for a ``confluent_kafka.Consumer`` in consumer group ``group_id``.

    Offsets are committed by the engine only after the work is durable (auto-commit off), a new
    group starts from the beginning so nothing written before it joined is skipped, and only
    committed transactional records are read (read_committed), so aborted work never appears.
    """
    config = _common(bootstrap, kafka_config)
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


def admin_config(bootstrap: str, *, kafka_config: Mapping[str, Any] | None = None,
                 **overrides: Any) -> dict[str, Any]:
    """Settings for a ``confluent_kafka.admin.AdminClient`` (quiet logging, the given broker)."""
    config = _common(bootstrap, kafka_config)
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
