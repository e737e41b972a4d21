"""ensure_topics against an admin whose metadata lags the controller (no broker).

KRaft acknowledges a CreateTopics once the controller committed it; a broker's metadata cache
(what ``list_topics`` reads) learns of the topic a little later. A topic created just before
``ensure_topics`` runs must still have its partition count refused before anything is created.
"""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from durable_kafka.errors import PartitionCountMismatchError
from durable_kafka.streams import admin as admin_module
from durable_kafka.streams.admin import ensure_topics
from durable_kafka.streams.topics import catalog

HUB = "lagging"


class LaggingAdmin:
    """The controller's topics, and a metadata view that lists them only after ``lag`` reads."""

    def __init__(self, controller: dict[str, int], lag: int) -> None:
        self.controller = dict(controller)
        self.listed: dict[str, int] = {}
        self.lag = lag
        self.created: list[str] = []  # real (not validate-only) creations

    def list_topics(self, timeout: float) -> Any:
        if self.lag > 0:
            self.lag -= 1
        else:
            self.listed = dict(self.controller)
        topics = {n: SimpleNamespace(error=None, partitions=dict.fromkeys(range(c))) for n, c in self.listed.items()}
        return SimpleNamespace(topics=topics, brokers={1: object()})

    def create_topics(self, new_topics: list[NewTopic], request_timeout: float, operation_timeout: float,
                      validate_only: bool = False) -> dict[str, Future[None]]:
        futures = {}
        for t in new_topics:
            future: Future[None] = Future()
            if t.topic in self.controller:
                future.set_exception(KafkaException(KafkaError(KafkaError.TOPIC_ALREADY_EXISTS)))
            else:
                future.set_result(None)
                if not validate_only:
                    self.controller[t.topic] = t.num_partitions
                    self.created.append(t.topic)
            futures[t.topic] = future
        return futures


@pytest.fixture
def lagging(monkeypatch: pytest.MonkeyPatch) -> LaggingAdmin:
    fake = LaggingAdmin({f"{HUB}.deadletter": 2}, lag=2)  # unseen by the first two metadata reads
    monkeypatch.setattr(admin_module, "_admin", lambda bootstrap, kafka_config=None: fake)
    return fake


def test_a_just_created_topic_with_another_count_is_refused_before_creating_anything(lagging):
    with pytest.raises(PartitionCountMismatchError) as info:
        ensure_topics(HUB, partitions=4, bootstrap="fake:1", timeout=5)
    assert (info.value.topic, info.value.expected, info.value.actual) == (f"{HUB}.deadletter", 4, 2)
    assert lagging.created == []


def test_a_just_created_topic_with_the_right_count_is_kept_and_the_rest_created(lagging):
    lagging.controller[f"{HUB}.deadletter"] = 4
    created = ensure_topics(HUB, partitions=4, bootstrap="fake:1", timeout=5)
    assert created == [t.name for t in catalog(HUB, 4) if t.name != f"{HUB}.deadletter"]
    assert lagging.created == created
