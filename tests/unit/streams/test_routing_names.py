"""Per-activity topic names and registration liveness: pure functions every reader and writer agrees on."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from durable_kafka.streams.events import WorkerRegistration
from durable_kafka.streams.registrations import is_live
from durable_kafka.streams.topics import HubTopics, activity_topic

_LEGAL = re.compile(r"[A-Za-z0-9._-]{1,249}")


@pytest.mark.parametrize("name", ["charge", "Charge_Card-2", "x" * 120])
def test_plain_names_are_used_as_they_are(name: str) -> None:
    assert activity_topic("shop", name) == f"shop.activity.{name}"
    assert HubTopics("shop").activity_topic(name) == f"shop.activity.{name}"


@pytest.mark.parametrize("name", ["send email", "a.b", "ä", "x" * 121, "Orders/ship", "/", "a:b"])
def test_other_names_are_sanitised_legal_and_distinct(name: str) -> None:
    topic = activity_topic("shop", name)
    assert _LEGAL.fullmatch(topic), topic
    assert topic.startswith("shop.activity.") and "." not in topic[len("shop.activity."):]
    assert activity_topic("shop", name) == topic  # deterministic
    assert topic != activity_topic("shop", name + " ")


def test_names_that_sanitise_alike_get_different_topics() -> None:
    assert activity_topic("h", "a b") != activity_topic("h", "a:b") != activity_topic("h", "a_b")


def test_a_registration_is_live_for_three_heartbeats() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    r = WorkerRegistration("w1", t0, 5000, [], ["charge"])
    assert is_live(r, t0 + timedelta(seconds=14.9))
    assert not is_live(r, t0 + timedelta(seconds=15))
