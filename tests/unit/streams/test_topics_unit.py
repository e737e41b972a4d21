"""The hub topic catalog, hub-name rules and Kafka client config defaults (no broker)."""

from __future__ import annotations

import logging

import pytest

from durable_kafka.errors import ConfigurationError, InvalidHubNameError
from durable_kafka.streams import events
from durable_kafka.streams.config import (
    BOOTSTRAP_ENV,
    bootstrap_servers,
    consumer_config,
    producer_config,
)
from durable_kafka.streams.topics import HubTopics, catalog, validate_hub_name

ARCHITECTURE_TABLE = {
    # suffix: (cleanup.policy, retention.ms or None)
    "orchestrator-events": ("delete", 604_800_000),
    "activity-requests": ("delete", 604_800_000),
    "entity-operations": ("delete", 604_800_000),
    "history": ("delete", -1),
    "status": ("compact", None),
    "replies": ("delete", 3_600_000),
    "deadletter": ("delete", -1),
    "orchestrations-changelog": ("compact", None),
    "entities-changelog": ("compact", None),
    "payloads": ("compact", None),
    "workers": ("compact", None),
}


def test_catalog_has_every_documented_topic_with_its_policy() -> None:
    topics = catalog("orders", partitions=6)
    assert [t.name for t in topics] == [f"orders.{suffix}" for suffix in ARCHITECTURE_TABLE]
    for topic in topics:
        policy, retention = ARCHITECTURE_TABLE[topic.spec.name_suffix]
        assert topic.config["cleanup.policy"] == policy
        if retention is None:
            assert "retention.ms" not in topic.config
        else:
            assert topic.config["retention.ms"] == str(retention)


def test_the_registration_topic_rolls_segments_so_compaction_keeps_it_small() -> None:
    (workers,) = [t for t in catalog("orders") if t.spec.name_suffix == "workers"]
    assert workers.config["segment.ms"] == "3600000" and workers.config["cleanup.policy"] == "compact"


def test_every_topic_uses_the_hub_partition_count() -> None:
    assert {t.partitions for t in catalog("orders", partitions=7)} == {7}
    assert {t.partitions for t in catalog("orders")} == {12}


def test_value_types_are_top_level_records() -> None:
    for topic in catalog("orders"):
        if topic.spec.name_suffix == "payloads":  # raw chunks of large payloads, not Avro
            assert topic.spec.value_types == () and topic.spec.cleanup_policy == "compact"
            continue
        assert topic.spec.value_types, topic.name
        for value_type in topic.spec.value_types:
            assert value_type in events.TOP_LEVEL_TYPES, (topic.name, value_type)
    by_suffix = {t.spec.name_suffix: t.spec.value_types for t in catalog("orders")}
    assert by_suffix["orchestrator-events"] == (events.OrchestratorMessage,)
    assert by_suffix["orchestrations-changelog"] == (
        events.InstanceHeader,
        events.HistoryBatch,
        events.HistoryRecord,
        events.TimerRecord,
    )
    assert by_suffix["history"] == (events.HistoryBatch, events.HistoryRecord)


def test_hub_topics_names_match_catalog() -> None:
    names = HubTopics("orders")
    assert names.orchestrator_events == "orders.orchestrator-events"
    assert names.activity_requests == "orders.activity-requests"
    assert names.workers == "orders.workers"
    assert names.entity_operations == "orders.entity-operations"
    assert names.history == "orders.history"
    assert names.status == "orders.status"
    assert names.replies == "orders.replies"
    assert names.deadletter == "orders.deadletter"
    assert names.orchestrations_changelog == "orders.orchestrations-changelog"
    assert names.entities_changelog == "orders.entities-changelog"
    assert names.all() == [t.name for t in catalog("orders")]


@pytest.mark.parametrize("hub", ["a", "Orders", "t0123abcd", "my-hub_2", "x" * 64])
def test_valid_hub_names(hub: str) -> None:
    assert validate_hub_name(hub) == hub
    assert HubTopics(hub).hub == hub


@pytest.mark.parametrize(
    ("hub", "says"),
    [
        ("", "empty"),
        ("x" * 65, "65 characters"),
        ("1hub", "start with a letter"),
        ("-hub", "start with a letter"),
        ("my.hub", "'.'"),
        ("my hub", "' '"),
        ("hub/1", "'/'"),
        ("hüb", "'ü'"),
    ],
)
def test_invalid_hub_names_say_what_is_wrong(hub: str, says: str) -> None:
    for call in (validate_hub_name, HubTopics, catalog):
        with pytest.raises(InvalidHubNameError) as info:
            call(hub)
        assert says in str(info.value)
        assert isinstance(info.value, ConfigurationError)


def test_hub_name_must_be_a_string() -> None:
    with pytest.raises(InvalidHubNameError, match="string"):
        validate_hub_name(12)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -3, True, 2.0])
def test_bad_partition_counts(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="partition count"):
        catalog("orders", partitions=bad)  # type: ignore[arg-type]


def test_bootstrap_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)
    assert bootstrap_servers() == "127.0.0.1:9092"
    monkeypatch.setenv(BOOTSTRAP_ENV, "h1:1,h2:2")
    assert bootstrap_servers() == "h1:1,h2:2"
    assert bootstrap_servers("x:3") == "x:3"


def test_producer_defaults_and_overrides() -> None:
    config = producer_config("b:1")
    assert config["bootstrap.servers"] == "b:1"
    assert config["partitioner"] == "murmur2_random"
    assert config["enable.idempotence"] is True
    assert 0 < config["linger.ms"] <= 5
    assert isinstance(config["logger"], logging.Logger)
    assert config["statistics.interval.ms"] == 0
    tuned = producer_config("b:1", linger_ms=20, **{"transactional.id": "t-1"})
    assert tuned["linger.ms"] == 20 and tuned["transactional.id"] == "t-1"


def test_consumer_defaults() -> None:
    config = consumer_config("b:1", "g1", max_poll_interval_ms=60000)
    assert config["group.id"] == "g1"
    assert config["auto.offset.reset"] == "earliest"
    assert config["enable.auto.commit"] is False
    assert config["isolation.level"] == "read_committed"
    assert config["max.poll.interval.ms"] == 60000


def test_configs_are_accepted_by_librdkafka() -> None:
    """Creating clients validates every property name and value (no connection is made)."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient

    from durable_kafka.streams.config import admin_config

    Producer(producer_config("127.0.0.1:1", transactional_id="probe")).flush(0)
    Consumer(consumer_config("127.0.0.1:1", "g")).close()
    AdminClient(admin_config("127.0.0.1:1"))
