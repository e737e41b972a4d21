"""Shared fixtures: the real local broker, and unique names so concurrent tests never collide.

Integration tests (everything under tests/integration) are marked ``integration`` here, so
``pytest -m 'not integration'`` (``make test-unit``) runs without a broker. When integration
tests do run and no broker answers, they FAIL rather than skip: a silently skipped suite would
look green while testing nothing.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from durable_kafka.connectors import cluster
from durable_kafka.errors import BrokerError
from durable_kafka.streams.config import bootstrap_servers

INTEGRATION_DIR = Path(__file__).parent / "integration"
CHAOS_DIR = Path(__file__).parent / "chaos"

_quiet = logging.getLogger("tests.conftest.librdkafka")
_quiet.addHandler(logging.NullHandler())


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos", action="store_true", default=False,
                     help="also collect the full cluster failure runs (tests/chaos/test_cluster_chaos.py: minutes "
                          "of broker failures on the cluster; `make chaos`)")


#: collected only with --chaos: the normal suite has scaled-down versions (tests/integration/test_cluster.py)
FULL_ONLY = {CHAOS_DIR / "test_cluster_chaos.py"}


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The full cluster runs need --chaos; the other chaos scenarios run scaled down in `make test`."""
    if collection_path in FULL_ONLY and not config.getoption("--chaos"):
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(INTEGRATION_DIR) or item.path.is_relative_to(CHAOS_DIR):
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


@pytest.fixture(scope="session")
def kafka_cluster() -> cluster.ClusterConfig:
    """The local three-node cluster (``make cluster-up``), started here when it is not running.

    Ports from DURABLE_KAFKA_CLUSTER_BASE_PORT (default 9292), state in .state/cluster. It is
    left running for the next run (`.ci/run` and `make cluster-down` stop it), and it is
    healed first: a node a previous run left dead is started and replicas are waited in sync.
    """
    base = int(os.environ.get("DURABLE_KAFKA_CLUSTER_BASE_PORT") or cluster.DEFAULT_BASE_PORT)
    cfg = cluster.ClusterConfig(base_port=base)

    def say(line: str) -> None:  # startup takes ~30 s: show it even under pytest -q
        print(f"\ncluster: {line}", file=sys.__stderr__, flush=True)

    try:
        cluster.up(cfg, progress=say)
        cluster.wait_in_sync(cfg)
    except BrokerError as exc:
        pytest.fail(f"the local cluster did not come up: {exc}", pytrace=False)
    return cfg


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Factory of names no other test (or concurrent run) uses: ``unique_name("hub")``.

    Lowercase letters and digits only, so the result is valid as a hub, topic or group name.
    """

    def make(prefix: str = "t") -> str:
        return f"{prefix}{uuid.uuid4().hex[:12]}"

    return make
