"""The orchestration processor's router: topics created once per name, unhosted activities said once a minute."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaException

from durable_kafka.errors import KafkaAuthorizationError
from durable_kafka.processors.runtime import is_incurable
from durable_kafka.streams.connection import authorization_error

from durable_kafka.processors.routing import UNHOSTED_LOG_INTERVAL, ActivityRouter, hub_set_mismatch
from durable_kafka.streams.events import ActivityRequest, HistoryRecord


def _request(name: str, task_id: int = 1) -> ActivityRequest:
    return ActivityRequest(id=f"i/e/{task_id}", instance_id="i", execution_id="e", task_id=task_id, name=name)


class _Hosts:
    def __init__(self, hosted: dict[str, list[str]]) -> None:
        self.hosted = hosted

    def hosts_of_activity(self, name: str) -> list[str]:
        return self.hosted.get(name, [])


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_topics_are_ensured_once_per_name_and_only_for_requests() -> None:
    created: list[list[str]] = []
    router = ActivityRouter("shop", created.append, _Hosts({"charge": ["w1"], "ship": ["w2"]}))
    router.prepare([("shop.activity.charge", _request("charge")), ("shop.history", object()),
                    ("shop.activity.ship", _request("ship", 2)), ("shop.activity.charge", _request("charge", 3))])
    router.prepare([("shop.activity.charge", _request("charge", 4))])
    assert created == [["charge", "ship"]]


def test_a_failed_creation_is_retried_with_the_next_batch() -> None:
    calls: list[list[str]] = []

    def ensure(names: list[str]) -> None:
        calls.append(names)
        if len(calls) == 1:
            raise RuntimeError("broker unavailable")

    router = ActivityRouter("shop", ensure)
    with pytest.raises(KafkaException) as raised:  # curable: the runtime aborts and retries the batch
        router.prepare([("t", _request("charge"))])
    assert not is_incurable(raised.value) and authorization_error(raised.value) is None
    router.prepare([("t", _request("charge"))])
    assert calls == [["charge"], ["charge"]]


def test_an_acl_denial_stops_the_processor_instead_of_dead_lettering() -> None:
    def ensure(names: list[str]) -> None:
        raise KafkaAuthorizationError("not authorized to create topic", "topic", "shop.activity.charge")

    with pytest.raises(KafkaException) as raised:
        ActivityRouter("shop", ensure).prepare([("t", _request("charge"))])
    assert authorization_error(raised.value) is not None


def test_an_activity_without_a_live_host_is_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="durable_kafka.processors.routing")
    clock = _Clock()
    hosts = _Hosts({"charge": ["billing-1"]})
    router = ActivityRouter("shop", lambda names: None, hosts, clock=clock)
    for _ in range(3):
        router.prepare([("t", _request("ship")), ("t", _request("charge"))])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "activity 'ship'" in lines[0] and "shop" in lines[0]
    clock.now += UNHOSTED_LOG_INTERVAL
    router.prepare([("t", _request("ship"))])
    assert len(caplog.records) == 2
    hosts.hosted["ship"] = ["shipping-1"]
    clock.now += UNHOSTED_LOG_INTERVAL
    router.prepare([("t", _request("ship"))])
    assert len(caplog.records) == 2
    hosts.hosted["ship"] = []  # the host went away: said again (after the one-second memo)
    clock.now += 1
    router.prepare([("t", _request("ship"))])
    assert len(caplog.records) == 3


def test_records_without_requests_cost_nothing() -> None:
    router = ActivityRouter("shop", lambda names: pytest.fail("no topic to create"))
    router.prepare([("shop.history", HistoryRecord.__new__(HistoryRecord))])


@pytest.mark.parametrize("mine, theirs, conflict", [
    (["a", "b"], ["a", "b"], False),
    (["a", "b", "c"], ["a", "b"], False),  # a rolling deploy adding c
    (["a"], ["a", "b"], False),  # ... or removing b
    ([], ["a"], False),  # this worker does not run that processor
    (["a"], [], False),
    (["a", "b"], ["a", "c"], True),  # two services sharing one processor
    (["x"], ["y"], True),
])
def test_sets_conflict_only_when_each_side_lacks_some_of_the_other(mine, theirs, conflict) -> None:
    problem = hub_set_mismatch("orchestrators", mine, {"w2": theirs})
    assert (problem is not None) == conflict
    if conflict:
        assert "w2" in problem and "orchestrators" in problem and "ROUTING.md" in problem
