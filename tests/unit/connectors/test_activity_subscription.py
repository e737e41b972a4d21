"""Which topics an activity worker reads: its activities' own topics, or all of them as a pattern."""

from __future__ import annotations

import re

from durable_kafka.connectors.activities import ActivityRegistry, ActivityWorker


def _registry(*names: str) -> ActivityRegistry:
    registry = ActivityRegistry()
    for name in names:
        registry.add_activity(lambda ctx, x: x, name=name)
    return registry


def test_a_worker_reads_the_topics_of_what_it_hosts_and_the_shared_topic_of_earlier_releases() -> None:
    worker = ActivityWorker("127.0.0.1:1", "shop", _registry("ship", "charge"))
    assert worker.subscription() == ["shop.activity.charge", "shop.activity.ship", "shop.activity-requests"]
    assert worker.hosts("ship") and not worker.hosts("refund")


def test_filters_narrow_the_subscription() -> None:
    worker = ActivityWorker("127.0.0.1:1", "shop", _registry("ship", "charge"), hosted=["charge"])
    assert worker.subscription() == ["shop.activity.charge", "shop.activity-requests"]
    assert not worker.hosts("ship")


def test_cleared_filters_subscribe_to_every_activity_topic_of_the_hub_only() -> None:
    worker = ActivityWorker("127.0.0.1:1", "shop", _registry("charge"), hosted=["*"])
    pattern, shared = worker.subscription()
    assert shared == "shop.activity-requests" and pattern.startswith("^")
    regex = re.compile(pattern[1:])
    assert regex.match("shop.activity.anything") and not regex.match("shopx.activity.a")
    assert not regex.match("shop.activity-requests")
    assert worker.hosts("whatever")
