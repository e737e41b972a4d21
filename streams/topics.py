"""The topics of a task hub, declared once: names, keys, value records and broker policies.

Every component (processors, workers, client, admin CLI) derives topic names from this catalog,
so a hub is always the same set of topics. All topics of a hub share one partition count:
records for one instance id must land on the same partition number in every topic (the
processor that owns the partition owns the instance), which only holds when the counts agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from durable_kafka.errors import ConfigurationError, InvalidHubNameError
from durable_kafka.streams import events

__all__ = [
    "HUB_NAME_MAX_LENGTH",
    "DEFAULT_PARTITIONS",
    "Durability",
    "TopicSpec",
    "Topic",
    "HubTopics",
    "SPECS",
    "catalog",
    "durability_for",
    "validate_hub_name",
    "ACTIVITY_TOPIC_INFIX",
    "activity_topic",
    "activity_topic_spec",
]

HUB_NAME_MAX_LENGTH = 64
DEFAULT_PARTITIONS = 12

_DAY_MS = 24 * 60 * 60 * 1000
_HOUR_MS = 60 * 60 * 1000
_ALLOWED = re.compile(r"[A-Za-z0-9_-]")


def validate_hub_name(hub: str) -> str:
    """Return ``hub`` if it is a valid task hub name, else raise ``InvalidHubNameError``.

    A hub name is 1-64 letters, digits, '-' or '_', starting with a letter. It becomes the
    prefix of topic names, consumer groups and transactional ids, so it excludes '.' (the
    separator before the topic suffix) and anything Kafka would reject in a topic name.
    """
    if not isinstance(hub, str):
        raise InvalidHubNameError(f"hub name must be a string, got {type(hub).__name__}")
    if not hub:
        raise InvalidHubNameError("hub name is empty; use 1-64 letters, digits, '-' or '_'")
    if len(hub) > HUB_NAME_MAX_LENGTH:
        raise InvalidHubNameError(
            f"hub name {hub[:20]!r}... is {len(hub)} characters long; "
            f"at most {HUB_NAME_MAX_LENGTH} are allowed"
        )
    if not ("A" <= hub[0] <= "Z" or "a" <= hub[0] <= "z"):
        raise InvalidHubNameError(f"hub name {hub!r} must start with a letter, not {hub[0]!r}")
    for position, char in enumerate(hub):
        if not _ALLOWED.fullmatch(char):
            raise InvalidHubNameError(
                f"hub name {hub!r} contains {char!r} at position {position}; "
                "only letters, digits, '-' and '_' are allowed"
            )
    return hub


@dataclass(frozen=True)
class TopicSpec:
    """What one hub topic is for and how the broker keeps it.

    ``retention_ms`` is -1 for unlimited, ``None`` when the policy is compact-only (retention
    does not apply). ``partitions`` is ``"hub"`` for the hub-wide count.
    """

    name_suffix: str
    key: str
    value_types: tuple[type, ...]
    cleanup_policy: Literal["delete", "compact"]
    retention_ms: int | None
    description: str
    partitions: Literal["hub"] | int = "hub"
    #: further topic configs, as (name, value) pairs
    extra_config: tuple[tuple[str, str], ...] = ()

    def broker_config(self) -> dict[str, str]:
        """Topic-level configs to create the topic with (all values as strings, as Kafka wants)."""
        config = {"cleanup.policy": self.cleanup_policy, **dict(self.extra_config)}
        if self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        return config


@dataclass(frozen=True)
class Durability:
    """How many copies of each hub partition the brokers keep, and how many must acknowledge.

    ``min_insync_replicas`` is what makes ``acks=all`` (every durable-kafka producer) mean
    something: with replication factor 3 and min ISR 2 an acknowledged record is on two brokers,
    so losing any one broker loses nothing and stops nothing.
    """

    replication_factor: int
    min_insync_replicas: int


def _positive(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    return value


def durability_for(
    brokers: int, replication_factor: int | None = None, min_insync_replicas: int | None = None
) -> Durability:
    """The replication of a hub's topics on a cluster of ``brokers`` brokers.

    Defaults: three copies with two in sync when there are at least three brokers (one broker
    may fail or restart without stopping writes), otherwise one copy per broker and min ISR 1
    (a development broker or a pair, where min ISR 2 would stop all writes when one is down).
    Explicit values win, but a factor above the broker count or a min ISR above the factor is
    refused here: the broker would refuse the topic, or accept it and then refuse every write.
    """
    if isinstance(brokers, bool) or not isinstance(brokers, int) or brokers < 1:
        raise ConfigurationError(f"the cluster has no live broker (got {brokers!r})")
    rf = _positive("replication factor", replication_factor)
    min_isr = _positive("min.insync.replicas", min_insync_replicas)
    if rf is None:
        rf = min(3, brokers)
    elif rf > brokers:
        raise ConfigurationError(f"replication factor {rf} needs {rf} brokers, the cluster has {brokers}")
    if min_isr is None:
        min_isr = 2 if rf >= 3 else 1
    elif min_isr > rf:
        raise ConfigurationError(
            f"min.insync.replicas {min_isr} is above the replication factor {rf}: every write would fail"
        )
    return Durability(rf, min_isr)


@dataclass(frozen=True)
class Topic:
    """One concrete topic of a hub: full name, its spec, partition count and broker configs.

    ``replication_factor`` is -1 (the broker's default) unless the catalog was given a
    :class:`Durability`, which also puts ``min.insync.replicas`` into ``config``.
    """

    name: str
    spec: TopicSpec
    partitions: int
    config: dict[str, str] = field(hash=False, compare=False)
    replication_factor: int = -1


SPECS: tuple[TopicSpec, ...] = (
    TopicSpec(
        "orchestrator-events",
        "instance id",
        (events.OrchestratorMessage,),
        "delete",
        7 * _DAY_MS,
        "everything sent to an orchestration instance (starts, events, results, control)",
    ),
    TopicSpec(
        "activity-requests",
        "instance id",
        (events.ActivityRequest,),
        "delete",
        7 * _DAY_MS,
        "work for activity workers",
    ),
    TopicSpec(
        "entity-operations",
        "entity id @name@key",
        (events.EntityMessage,),
        "delete",
        7 * _DAY_MS,
        "signals, calls and lock requests for entities",
    ),
    TopicSpec(
        "history",
        "instance id",
        (events.HistoryBatch, events.HistoryRecord),
        "delete",
        -1,
        "every history event, kept forever for audit replay: one HistoryBatch per orchestration step, one HistoryRecord per entity event",
    ),
    TopicSpec(
        "status",
        "instance id / entity id",
        (events.InstanceStatus, events.EntityState),
        "compact",
        None,
        "latest status snapshot per instance and per entity (tombstone on purge)",
    ),
    TopicSpec(
        "replies",
        "client id",
        (events.ClientReply,),
        "delete",
        _HOUR_MS,
        "answers to client requests",
    ),
    TopicSpec(
        "deadletter",
        "original key",
        (events.DeadLetter,),
        "delete",
        -1,
        "records that could not be decoded or applied, with the reason",
    ),
    TopicSpec(
        "orchestrations-changelog",
        "store key",
        (events.InstanceHeader, events.HistoryBatch, events.HistoryRecord, events.TimerRecord),
        "compact",
        None,
        "orchestration processor state (RocksDB is a cache of it)",
    ),
    TopicSpec(
        "entities-changelog",
        "store key",
        (events.EntityState, events.EntityMessage),
        "compact",
        None,
        "entity processor state (RocksDB is a cache of it)",
    ),
    TopicSpec(
        "payloads",
        "payload id:chunk index",
        (),  # raw bytes: chunks of JSON text too large for an event (docs/PAYLOADS.md)
        "compact",
        None,
        "large payloads in chunks, referenced from events (tombstoned when their owner is purged)",
    ),
    TopicSpec(
        "workers",
        "worker id",
        (events.WorkerRegistration,),
        "compact",
        None,
        "what each live worker hosts (routing of activity requests, hub consistency checks)",
        # heartbeats every few seconds: roll segments hourly so compaction keeps the topic (and
        # what a starting worker reads) to about one record per worker
        extra_config=(("segment.ms", str(_HOUR_MS)),),
    ),
)


def _check_partitions(partitions: int) -> int:
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise ConfigurationError(f"partition count must be a positive integer, got {partitions!r}")
    return partitions


def catalog(hub: str, partitions: int = DEFAULT_PARTITIONS, durability: Durability | None = None) -> list[Topic]:
    """Every topic of ``hub`` with ``partitions`` partitions each, in catalog order."""
    validate_hub_name(hub)
    _check_partitions(partitions)
    topics = []
    for spec in SPECS:
        config = spec.broker_config()
        if durability is not None:
            config["min.insync.replicas"] = str(durability.min_insync_replicas)
        topics.append(
            Topic(
                name=f"{hub}.{spec.name_suffix}",
                spec=spec,
                partitions=partitions if spec.partitions == "hub" else spec.partitions,
                config=config,
                replication_factor=durability.replication_factor if durability is not None else -1,
            )
        )
    return topics


class HubTopics:
    """The topic names of one hub as attributes, so call sites never format names by hand."""

    __slots__ = (
        "hub",
        "orchestrator_events",
        "activity_requests",
        "entity_operations",
        "history",
        "status",
        "replies",
        "deadletter",
        "orchestrations_changelog",
        "entities_changelog",
        "payloads",
        "workers",
    )

    hub: str
    orchestrator_events: str
    activity_requests: str
    entity_operations: str
    history: str
    status: str
    replies: str
    deadletter: str
    orchestrations_changelog: str
    entities_changelog: str
    payloads: str
    workers: str

    def __init__(self, hub: str) -> None:
        self.hub = validate_hub_name(hub)
        for spec in SPECS:
            setattr(self, spec.name_suffix.replace("-", "_"), f"{hub}.{spec.name_suffix}")

    def activity_topic(self, name: str) -> str:
        """The request topic of activity ``name`` (:func:`activity_topic`)."""
        return activity_topic(self.hub, name)

    def all(self) -> list[str]:
        """Every topic name of the hub, in catalog order."""
        return [f"{self.hub}.{spec.name_suffix}" for spec in SPECS]

    def __repr__(self) -> str:
        return f"HubTopics({self.hub!r})"


# --------------------------------------------------------------------------- per-activity topics

#: ``<hub>.activity.<name>``: one request topic per activity name (docs/ROUTING.md)
ACTIVITY_TOPIC_INFIX = "activity."
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,120}")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_-]")


def activity_topic(hub: str, name: str) -> str:
    """The topic that carries the requests of activity ``name`` on ``hub``.

    A name of letters, digits, '-' and '_' (up to 120) is used as is, so operators recognise
    it; any other name is sanitised and suffixed with 12 hex digits of its SHA-256, so distinct
    names never share a topic and the result is always a legal topic name. A pure function of
    the name: every writer and reader computes the same topic without asking anyone.
    """
    import hashlib

    if _SAFE_NAME.fullmatch(name):
        suffix = name
    else:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]
        suffix = f"{_UNSAFE_CHAR.sub('_', name)[:80]}-{digest}"
    return f"{hub}.{ACTIVITY_TOPIC_INFIX}{suffix}"


def activity_topic_spec() -> TopicSpec:
    """How the broker keeps a per-activity request topic (created on demand, not in the catalog)."""
    return TopicSpec("activity.<name>", "instance id", (events.ActivityRequest,), "delete", 7 * _DAY_MS,
                     "requests for one activity, read by the workers that host it")
