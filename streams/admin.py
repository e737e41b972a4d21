"""Create, inspect and delete the topics of a task hub on a broker.

``ensure_topics`` is safe to call on every worker start: it creates only what is missing and
refuses (before creating anything) when an existing hub topic has a different partition count,
because co-partitioning would silently break otherwise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from durable_kafka.errors import BrokerError, PartitionCountMismatchError
from durable_kafka.streams.config import admin_config, bootstrap_servers
from durable_kafka.streams.connection import authorization_error
from durable_kafka.streams.topics import (
    ACTIVITY_TOPIC_INFIX,
    DEFAULT_PARTITIONS,
    Durability,
    Topic,
    activity_topic,
    activity_topic_spec,
    catalog,
    durability_for,
)

__all__ = ["TopicReport", "activity_topics_of", "ensure_activity_topics", "ensure_topics", "describe_topics", "delete_hub", "existing_partitions", "hub_durability"]

log = logging.getLogger(__name__)


@dataclass
class TopicReport:
    """One catalog topic compared with what the broker has."""

    topic: Topic
    exists: bool
    partitions: int | None = None
    cleanup_policy: str | None = None
    retention_ms: int | None = None
    replication_factor: int | None = None
    min_insync_replicas: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def name(self) -> str:
        return self.topic.name


def _admin(bootstrap: str | None, kafka_config: Mapping[str, Any] | None = None) -> AdminClient:
    return AdminClient(admin_config(bootstrap_servers(bootstrap, kafka_config), kafka_config=kafka_config))


def _broker_error(what: str, exc: KafkaException, bootstrap: str | None, resource: str = "") -> BrokerError:
    """A ``KafkaAuthorizationError`` naming ``resource`` for an ACL denial, else a ``BrokerError``."""
    denied = authorization_error(exc, resource, what)
    if denied is not None:
        return denied
    return BrokerError(f"{what} failed on {bootstrap_servers(bootstrap)}: {exc.args[0] if exc.args else exc}")


def existing_partitions(
    admin: AdminClient, names: list[str], timeout: float, bootstrap: str | None = None
) -> dict[str, int]:
    """Partition counts of those ``names`` that exist on the broker (absent names are left out)."""
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise _broker_error("listing topics", exc, bootstrap) from exc
    found = {}
    for name in names:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None:
            continue
        found[name] = len(topic.partitions)
    return found


def _check_counts(topics: list[Topic], actual: dict[str, int]) -> None:
    for topic in topics:
        count = actual.get(topic.name)
        if count is not None and count != topic.partitions:
            raise PartitionCountMismatchError(topic.name, topic.partitions, count)


def hub_durability(
    admin: AdminClient,
    timeout: float,
    replication_factor: int | None = None,
    min_insync_replicas: int | None = None,
    bootstrap: str | None = None,
) -> Durability:
    """:func:`durability_for` the number of brokers the cluster's metadata lists right now.

    The metadata lists live brokers only: with one of three down, new topics would get two
    copies and min ISR 1, so that case is logged (and explicit arguments avoid it).
    """
    try:
        brokers = len(admin.list_topics(timeout=timeout).brokers)
    except KafkaException as exc:
        raise _broker_error("reading cluster metadata", exc, bootstrap) from exc
    chosen = durability_for(brokers, replication_factor, min_insync_replicas)
    if brokers < 3 and replication_factor is None:
        log.info("cluster lists %d broker(s): hub topics get replication factor %d, min.insync.replicas %d",
                 brokers, chosen.replication_factor, chosen.min_insync_replicas)
    return chosen


def ensure_topics(
    hub: str,
    partitions: int = DEFAULT_PARTITIONS,
    bootstrap: str | None = None,
    timeout: float = 30,
    replication_factor: int | None = None,
    min_insync_replicas: int | None = None,
    *,
    kafka_config: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create the missing topics of ``hub``; return the names created (empty when all existed).

    Raises ``PartitionCountMismatchError`` if any existing hub topic has another partition count
    (checked before anything is created), ``InvalidHubNameError`` for a bad hub name,
    ``ConfigurationError`` for a replication the cluster cannot give, and ``BrokerError`` when
    the broker cannot be reached or refuses (``KafkaAuthorizationError`` naming the topic when an
    ACL forbids creating it). By default the replication follows the cluster's size
    (:func:`durability_for`: RF 3 and min ISR 2 from three brokers up); the arguments override
    it. Existing topics are left as they are. ``kafka_config``: resolved connection settings.
    """
    topics = catalog(hub, partitions)
    admin = _admin(bootstrap, kafka_config)
    deadline = time.monotonic() + timeout
    names = [t.name for t in topics]
    existing = existing_partitions(admin, names, timeout, bootstrap)
    _check_counts(topics, existing)
    missing = [t for t in topics if t.name not in existing]
    if not missing:
        return []
    durability = hub_durability(admin, timeout, replication_factor, min_insync_replicas, bootstrap)
    missing = [t for t in catalog(hub, partitions, durability) if t.name not in existing]
    new_topics = [
        NewTopic(t.name, num_partitions=t.partitions, replication_factor=t.replication_factor, config=t.config)
        for t in missing
    ]
    unlisted = _known_to_controller(admin, new_topics, timeout, bootstrap)
    if unlisted:  # created just before, not in the metadata yet: their counts are checked first
        _check_counts(topics, _wait_listed(admin, unlisted, deadline, bootstrap))
        new_topics = [n for n in new_topics if n.topic not in unlisted]
    futures = admin.create_topics(new_topics, request_timeout=timeout, operation_timeout=timeout) if new_topics else {}
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # someone else created it concurrently; its count is checked below
            raise _broker_error("create topic", exc, bootstrap, name) from exc
    _wait_visible(admin, topics, deadline, bootstrap)
    if created:
        log.info("hub %s: created %d topics with %d partitions, replication factor %d, min.insync.replicas %d",
                 hub, len(created), partitions, durability.replication_factor, durability.min_insync_replicas)
    return [n for n in names if n in created]


def _known_to_controller(
    admin: AdminClient, new_topics: list[NewTopic], timeout: float, bootstrap: str | None
) -> list[str]:
    """Those of ``new_topics`` that already exist, as the controller sees it (a validate-only create).

    The metadata ``existing_partitions`` reads comes from a broker's cache, which learns of a
    topic shortly after the controller acknowledged its creation (KRaft: CreateTopics returns on
    the controller's commit). A topic created just before would otherwise look missing, and the
    other topics would be created before its partition count could be refused.
    """
    futures = admin.create_topics(new_topics, request_timeout=timeout, operation_timeout=timeout, validate_only=True)
    known = []
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                known.append(name)
                continue
            raise _broker_error("create topic", exc, bootstrap, name) from exc
    return sorted(known)


def _wait_listed(admin: AdminClient, names: list[str], deadline: float, bootstrap: str | None) -> dict[str, int]:
    """The partition counts of ``names`` once the metadata lists every one of them."""
    while True:
        actual = existing_partitions(admin, names, max(deadline - time.monotonic(), 0.5), bootstrap)
        if len(actual) == len(names):
            return actual
        if time.monotonic() >= deadline:
            missing = sorted(set(names) - set(actual))
            raise BrokerError(f"topics exist but are not listed in metadata in time: {', '.join(missing)}")
        time.sleep(0.05)


def _wait_visible(admin: AdminClient, topics: list[Topic], deadline: float, bootstrap: str | None) -> None:
    """Wait until metadata shows every topic with all its partitions, then re-check the counts."""
    names = [t.name for t in topics]
    while True:
        remaining = max(deadline - time.monotonic(), 0.5)
        actual = existing_partitions(admin, names, remaining, bootstrap)
        _check_counts(topics, actual)  # a concurrent creator may have used another count
        if len(actual) == len(names):
            return
        if time.monotonic() >= deadline:
            missing = sorted(set(names) - set(actual))
            raise BrokerError(f"topics created but not visible in metadata in time: {', '.join(missing)}")
        time.sleep(0.05)


def describe_topics(
    hub: str, partitions: int = DEFAULT_PARTITIONS, bootstrap: str | None = None, timeout: float = 30,
    *, kafka_config: Mapping[str, Any] | None = None,
) -> list[TopicReport]:
    """Compare the catalog of ``hub`` with the broker, topic by topic (nothing is changed)."""
    topics = catalog(hub, partitions)
    admin = _admin(bootstrap, kafka_config)
    deadline = time.monotonic() + timeout
    while True:
        actual = existing_partitions(admin, [t.name for t in topics], timeout, bootstrap)
        present = [t.name for t in topics if t.name in actual]
        configs = _topic_configs(admin, present, timeout, bootstrap)
        replicas = _replication_factors(admin, present, timeout, bootstrap)
        # each request may be answered by another broker, and a broker learns of a new topic a
        # moment after the controller created it: a topic one broker lists may not be described
        # by the next yet. Ask again until the answers agree (or the time is up).
        if all(n in replicas and "min.insync.replicas" in configs.get(n, {}) for n in present) \
                or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    reports = []
    for topic in topics:
        if topic.name not in actual:
            reports.append(TopicReport(topic, exists=False, problems=["missing"]))
            continue
        config = configs.get(topic.name, {})
        retention = config.get("retention.ms")
        min_isr = config.get("min.insync.replicas")
        report = TopicReport(
            topic,
            exists=True,
            partitions=actual[topic.name],
            cleanup_policy=config.get("cleanup.policy"),
            retention_ms=int(retention) if retention is not None else None,
            replication_factor=replicas.get(topic.name),
            min_insync_replicas=int(min_isr) if min_isr is not None else None,
        )
        report.problems = _problems(topic, report)
        reports.append(report)
    return reports


def _problems(topic: Topic, report: TopicReport) -> list[str]:
    problems = []
    if report.partitions != topic.partitions:
        problems.append(f"partitions {report.partitions}, expected {topic.partitions}")
    if report.cleanup_policy != topic.spec.cleanup_policy:
        problems.append(f"cleanup.policy {report.cleanup_policy}, expected {topic.spec.cleanup_policy}")
    expected_retention = topic.spec.retention_ms
    if expected_retention is not None and report.retention_ms != expected_retention:
        problems.append(f"retention.ms {report.retention_ms}, expected {expected_retention}")
    return problems


def _replication_factors(
    admin: AdminClient, names: list[str], timeout: float, bootstrap: str | None
) -> dict[str, int]:
    """The smallest replica count over each topic's partitions (what the topic was created with)."""
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise _broker_error("listing topics", exc, bootstrap) from exc
    found = {}
    for name in names:
        topic = metadata.topics.get(name)
        if topic is not None and topic.partitions:
            found[name] = min(len(p.replicas) for p in topic.partitions.values())
    return found


def _topic_configs(
    admin: AdminClient, names: list[str], timeout: float, bootstrap: str | None
) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    futures = admin.describe_configs(resources, request_timeout=timeout)
    result = {}
    for resource, future in futures.items():
        try:
            entries = future.result()
        except KafkaException as exc:
            raise _broker_error("describe configs of topic", exc, bootstrap, resource.name) from exc
        result[resource.name] = {key: entry.value for key, entry in entries.items()}
    return result


def ensure_activity_topics(
    hub: str,
    names: list[str],
    partitions: int,
    bootstrap: str | None = None,
    timeout: float = 30,
    *,
    kafka_config: Mapping[str, Any] | None = None,
    admin: AdminClient | None = None,
) -> list[str]:
    """Create the missing request topics of activities ``names`` (docs/ROUTING.md); return them.

    Called by a worker for the activities it hosts and by the orchestration processor before it
    writes the first request for an activity, so a request never targets a missing topic (a
    produce to one would stall the transaction). Same policy and replication as the hub's topics.
    An existing topic with another partition count is left alone: these topics are not
    co-partitioned with anything, so their count is free.
    """
    spec = activity_topic_spec()
    wanted = sorted({activity_topic(hub, n) for n in names})
    admin = admin or _admin(bootstrap, kafka_config)
    existing = existing_partitions(admin, wanted, timeout, bootstrap)
    missing = [n for n in wanted if n not in existing]
    if not missing:
        return wanted
    durability = hub_durability(admin, timeout, bootstrap=bootstrap)
    config = {**spec.broker_config(), "min.insync.replicas": str(durability.min_insync_replicas)}
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=durability.replication_factor, config=config)
         for n in missing],
        request_timeout=timeout, operation_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise _broker_error("create topic", exc, bootstrap, name) from exc
    deadline = time.monotonic() + timeout
    while len(existing_partitions(admin, missing, timeout, bootstrap)) < len(missing):
        if time.monotonic() >= deadline:
            raise BrokerError(f"activity topics created but not visible in metadata in time: {', '.join(missing)}")
        time.sleep(0.05)
    log.info("hub %s: created activity request topics %s", hub, ", ".join(missing))
    return wanted


def activity_topics_of(admin: AdminClient, hub: str, timeout: float, bootstrap: str | None = None) -> list[str]:
    """The per-activity request topics of ``hub`` that exist (``<hub>.activity.<name>``), sorted."""
    prefix = f"{hub}.{ACTIVITY_TOPIC_INFIX}"
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise _broker_error("listing topics", exc, bootstrap) from exc
    return sorted(name for name in metadata.topics if name.startswith(prefix))


def delete_hub(hub: str, bootstrap: str | None = None, timeout: float = 30, *,
               kafka_config: Mapping[str, Any] | None = None) -> list[str]:
    """Delete every existing topic of ``hub`` (for tests and teardown); return the names deleted.

    Waits until the deleted topics are gone from metadata so a caller can recreate them.
    """
    admin = _admin(bootstrap, kafka_config)
    names = [t.name for t in catalog(hub)] + activity_topics_of(admin, hub, timeout, bootstrap)
    existing = existing_partitions(admin, names, timeout, bootstrap)
    if not existing:
        return []
    futures = admin.delete_topics(list(existing), request_timeout=timeout, operation_timeout=timeout)
    deleted = []
    for name, future in futures.items():
        try:
            future.result()
            deleted.append(name)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue
            raise _broker_error("delete topic", exc, bootstrap, name) from exc
    deadline = time.monotonic() + timeout
    while existing_partitions(admin, deleted, timeout, bootstrap):
        if time.monotonic() >= deadline:
            raise BrokerError(f"deleted topics of hub {hub!r} still listed after {timeout}s")
        time.sleep(0.05)
    return [n for n in names if n in deleted]
