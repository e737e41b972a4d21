"""Shared fixtures: the real local broker, and unique names so concurrent tests never collide.

Integration tests (everything under tests/integration) are marked ``integration`` here, so
``pytest -m 'not integration'`` (``make test-unit``) runs without a broker. When integration
tests do run and no broker answers, they FAIL rather than skip: a silently skipped suite would
look green while testing nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from durable_kafka.streams.config import bootstrap_servers

INTEGRATION_DIR = Path(__file__).parent / "integration"

_quiet = logging.getLogger("tests.conftest.librdkafka")
_quiet.addHandler(logging.NullHandler())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def bootstrap() -> str:
    """DURABLE_KAFKA_BOOTSTRAP (default 127.0.0.1:9092), checked to answer before tests use it."""
    address = bootstrap_servers()
    admin = AdminClient({"bootstrap.servers": address, "logger": _quiet})
    try:
        admin.list_topics(timeout=10)
    except KafkaException as exc:
        pytest.fail(f"no Kafka broker answers at {address} ({exc}); start it with make broker-up",
                    pytrace=False)
    return address


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Factory of names no other test (or concurrent run) uses: ``unique_name("hub")``.

    Lowercase letters and digits only, so the result is valid as a hub, topic or group name.
    """

    def make(prefix: str = "t") -> str:
        return f"{prefix}{uuid.uuid4().hex[:12]}"

    return make
