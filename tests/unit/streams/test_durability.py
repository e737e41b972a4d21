"""How a hub's replication follows the cluster's size, and when explicit settings are refused."""

from __future__ import annotations

import pytest

from durable_kafka.__main__ import build_parser
from durable_kafka.errors import ConfigurationError
from durable_kafka.streams.topics import Durability, catalog, durability_for


@pytest.mark.parametrize(
    ("brokers", "expected"),
    [(1, Durability(1, 1)), (2, Durability(2, 1)), (3, Durability(3, 2)), (5, Durability(3, 2))],
)
def test_defaults_follow_the_broker_count(brokers: int, expected: Durability) -> None:
    assert durability_for(brokers) == expected


def test_explicit_factor_sets_the_min_isr_default_from_itself() -> None:
    assert durability_for(5, replication_factor=5) == Durability(5, 2)
    assert durability_for(3, replication_factor=2) == Durability(2, 1)
    assert durability_for(3, replication_factor=1) == Durability(1, 1)


def test_explicit_min_isr_overrides_the_default() -> None:
    assert durability_for(3, min_insync_replicas=1) == Durability(3, 1)
    assert durability_for(3, replication_factor=3, min_insync_replicas=3) == Durability(3, 3)
    assert durability_for(1, min_insync_replicas=1) == Durability(1, 1)


@pytest.mark.parametrize(
    ("brokers", "rf", "min_isr", "words"),
    [
        (1, 3, None, "needs 3 brokers"),
        (3, 2, 3, "above the replication factor"),
        (1, None, 2, "above the replication factor"),
        (3, 0, None, "positive integer"),
        (3, None, 0, "positive integer"),
        (3, True, None, "positive integer"),
        (0, None, None, "no live broker"),
    ],
)
def test_impossible_settings_are_refused(brokers: int, rf, min_isr, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        durability_for(brokers, rf, min_isr)


def test_catalog_carries_the_durability_into_every_topic() -> None:
    topics = catalog("hub", 4, Durability(3, 2))
    assert {t.replication_factor for t in topics} == {3}
    assert {t.config["min.insync.replicas"] for t in topics} == {"2"}
    plain = catalog("hub", 4)
    assert {t.replication_factor for t in plain} == {-1}
    assert all("min.insync.replicas" not in t.config for t in plain)


def test_cli_create_takes_the_overrides() -> None:
    args = build_parser().parse_args(
        ["topics", "create", "--hub", "h", "--replication-factor", "2", "--min-insync-replicas", "1"]
    )
    assert (args.replication_factor, args.min_insync_replicas) == (2, 1)
    defaults = build_parser().parse_args(["topics", "create", "--hub", "h"])
    assert (defaults.replication_factor, defaults.min_insync_replicas) == (None, None)
