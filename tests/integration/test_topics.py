"""Topic catalog, admin and CLI against the real local broker."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from durable_kafka.errors import InvalidHubNameError, PartitionCountMismatchError
from durable_kafka.streams.admin import delete_hub, describe_topics, ensure_topics, existing_partitions
from durable_kafka.streams.config import admin_config, partition_for, producer_config
from durable_kafka.streams.topics import catalog

pytestmark = pytest.mark.integration

INVALID_HUBS = ["", "x" * 65, "9lives", "my.hub", "my hub"]


def _cli(*args: str, bootstrap: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "durable_kafka", *args, "--bootstrap", bootstrap],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def _present(hub: str, bootstrap: str) -> dict[str, int]:
    admin = AdminClient(admin_config(bootstrap))
    return existing_partitions(admin, [t.name for t in catalog(hub)], timeout=10)


def test_ensure_topics_is_idempotent(hub_factory: Callable[..., str]) -> None:
    hub = hub_factory(partitions=3, create=False)
    created = ensure_topics(hub, partitions=3, bootstrap=hub.bootstrap)
    assert created == [t.name for t in catalog(hub, 3)]
    assert ensure_topics(hub, partitions=3, bootstrap=hub.bootstrap) == []
    assert _present(hub, hub.bootstrap) == {t.name: 3 for t in catalog(hub, 3)}


def test_describe_matches_catalog(hub: str) -> None:
    reports = describe_topics(hub, partitions=hub.partitions, bootstrap=hub.bootstrap)
    assert [r.name for r in reports] == [t.name for t in catalog(hub)]
    for report in reports:
        assert report.ok, (report.name, report.problems)
        assert report.exists and report.partitions == hub.partitions == 4
        assert report.cleanup_policy == report.topic.spec.cleanup_policy
        if report.topic.spec.retention_ms is not None:
            assert report.retention_ms == report.topic.spec.retention_ms
    by_name = {r.name: r for r in reports}
    assert by_name[hub.topics.history].retention_ms == -1
    assert by_name[hub.topics.replies].retention_ms == 3_600_000
    assert by_name[hub.topics.status].cleanup_policy == "compact"


def test_describe_reports_missing_and_wrong_counts(hub: str) -> None:
    wrong = describe_topics(hub, partitions=6, bootstrap=hub.bootstrap)
    assert all(not r.ok and "partitions 4, expected 6" in r.problems for r in wrong)
    missing = describe_topics(hub + "x", partitions=4, bootstrap=hub.bootstrap)
    assert all(not r.exists and r.problems == ["missing"] for r in missing)


def test_partition_mismatch_names_both_counts(hub: str) -> None:
    with pytest.raises(PartitionCountMismatchError) as info:
        ensure_topics(hub, partitions=6, bootstrap=hub.bootstrap)
    assert (info.value.expected, info.value.actual) == (6, 4)
    assert "6" in str(info.value) and "4" in str(info.value)


def test_mismatch_on_any_topic_is_raised_before_creating_anything(
    hub_factory: Callable[..., str],
) -> None:
    hub = hub_factory(partitions=4, create=False)
    deadletter = f"{hub}.deadletter"
    admin = AdminClient(admin_config(hub.bootstrap))
    admin.create_topics([NewTopic(deadletter, num_partitions=2)])[deadletter].result()
    # no wait here on purpose: the broker's metadata may not list the topic yet (it lags the
    # controller's commit), and ensure_topics must refuse it all the same
    with pytest.raises(PartitionCountMismatchError) as info:
        ensure_topics(hub, partitions=4, bootstrap=hub.bootstrap)
    assert info.value.topic == deadletter
    assert (info.value.expected, info.value.actual) == (4, 2)
    assert _present(hub, hub.bootstrap) == {deadletter: 2}


def test_delete_hub_removes_every_topic(hub_factory: Callable[..., str]) -> None:
    hub = hub_factory(partitions=2)
    assert len(_present(hub, hub.bootstrap)) == 11
    assert len(delete_hub(hub, bootstrap=hub.bootstrap)) == 11
    assert _present(hub, hub.bootstrap) == {}
    assert delete_hub(hub, bootstrap=hub.bootstrap) == []


@pytest.mark.parametrize("bad", INVALID_HUBS)
def test_invalid_hub_names_raise_before_touching_the_broker(bad: str) -> None:
    # an unreachable bootstrap proves validation happens first
    for call in (ensure_topics, describe_topics, delete_hub):
        with pytest.raises(InvalidHubNameError):
            call(bad, bootstrap="127.0.0.1:1")


@pytest.mark.parametrize("bad", INVALID_HUBS)
def test_cli_rejects_invalid_hub_names(bad: str, hub_bootstrap: str) -> None:
    for action in ("create", "describe"):
        result = _cli("topics", action, "--hub", bad, bootstrap=hub_bootstrap)
        assert result.returncode == 2, result
        assert result.stderr.startswith("error: hub name"), result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout == ""


def test_cli_create_describe_and_mismatch(hub_factory: Callable[..., str]) -> None:
    hub = hub_factory(partitions=2, create=False)
    first = _cli("topics", "create", "--hub", hub, "--partitions", "2", bootstrap=hub.bootstrap)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count(f"{hub}.") == 11
    again = _cli("topics", "create", "--hub", hub, "--partitions", "2", bootstrap=hub.bootstrap)
    assert again.returncode == 0 and "already exist" in again.stdout
    described = _cli("topics", "describe", "--hub", hub, "--partitions", "2", bootstrap=hub.bootstrap)
    assert described.returncode == 0, described.stdout
    history_row = next(line for line in described.stdout.splitlines() if f"{hub}.history " in line)
    assert "HistoryRecord" in history_row and "2/2" in history_row and "unlimited" in history_row
    mismatch = _cli("topics", "create", "--hub", hub, "--partitions", "5", bootstrap=hub.bootstrap)
    assert mismatch.returncode == 2
    assert "has 2 partitions" in mismatch.stderr and "configured for 5" in mismatch.stderr
    assert "Traceback" not in mismatch.stderr


def _delivered_partitions(topic: str, keys: list[bytes], config: dict) -> dict[bytes, int]:
    producer = Producer(config)
    delivered: dict[bytes, int] = {}

    def on_delivery(err, msg) -> None:  # noqa: ANN001 - confluent-kafka callback
        assert err is None, err
        delivered[msg.key()] = msg.partition()

    for key in keys:
        producer.produce(topic, key=key, value=b"v", on_delivery=on_delivery)
    assert producer.flush(30) == 0
    return delivered


@pytest.mark.hub_partitions(7)
def test_confluent_murmur2_random_matches_partition_for(hub: str) -> None:
    keys = [f"instance-{i}".encode() for i in range(200)] + ["ü-ñ".encode(), b"x" * 300]
    topic = hub.topics.orchestrator_events
    delivered = _delivered_partitions(topic, keys, producer_config(hub.bootstrap))
    assert delivered == {key: partition_for(key, 7) for key in keys}
    # librdkafka's own default hashes differently, which is why producer_config overrides it
    crc = _delivered_partitions(
        topic, keys, producer_config(hub.bootstrap, partitioner="consistent_random")
    )
    assert crc != delivered
