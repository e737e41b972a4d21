"""Fixtures for tests on the real local broker: fresh task hubs that clean up after themselves.

``hub`` gives each test its own hub (unique name ``t<hex>``, topics created with a small
partition count, deleted afterwards), so tests never see each other's records. Change the
count with ``@pytest.mark.hub_partitions(n)``. ``hub_factory`` makes as many hubs as a test
needs, optionally without creating their topics.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest

from durable_kafka.connectors import broker
from durable_kafka.errors import DurableKafkaError
from durable_kafka.streams.admin import delete_hub, ensure_topics
from durable_kafka.streams.topics import HubTopics

DEFAULT_TEST_PARTITIONS = 4


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "hub_partitions(n): partition count of the `hub` fixture's topics (default 4)"
    )


class TestHub(str):
    """A hub name (it *is* the string) that also carries what tests need alongside it."""

    __test__ = False  # not a test class, despite the name

    partitions: int
    bootstrap: str
    topics: HubTopics

    def __new__(cls, name: str, partitions: int, bootstrap: str) -> TestHub:
        self = super().__new__(cls, name)
        self.partitions = partitions
        self.bootstrap = bootstrap
        self.topics = HubTopics(name)
        return self

    @property
    def name(self) -> str:
        return str(self)


def unique_hub_name(prefix: str = "t") -> str:
    return f"{prefix}{secrets.token_hex(6)}"


def _probe_broker(bootstrap: str) -> str:
    """Fallback used only while tests/conftest.py has no ``bootstrap`` fixture."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from durable_kafka.streams.config import admin_config

    try:
        AdminClient(admin_config(bootstrap)).list_topics(timeout=5)
    except KafkaException as exc:
        pytest.fail(f"Kafka broker at {bootstrap} is not reachable ({exc}); start it with "
                    "`python -m durable_kafka.connectors.broker up`")
    return bootstrap


@pytest.fixture
def hub_bootstrap(request: pytest.FixtureRequest) -> str:
    """The shared ``bootstrap`` fixture when it exists, else a local reachability check."""
    try:
        return request.getfixturevalue("bootstrap")
    except pytest.FixtureLookupError:
        from durable_kafka.streams.config import bootstrap_servers

        return _probe_broker(bootstrap_servers())


@pytest.fixture
def hub_factory(hub_bootstrap: str) -> Iterator[Callable[..., TestHub]]:
    """``make(partitions=4, create=True, prefix="t") -> TestHub``; every hub made is deleted after."""
    made: list[TestHub] = []

    def make(partitions: int = DEFAULT_TEST_PARTITIONS, create: bool = True, prefix: str = "t") -> TestHub:
        test_hub = TestHub(unique_hub_name(prefix), partitions, hub_bootstrap)
        made.append(test_hub)
        if create:
            ensure_topics(test_hub, partitions=partitions, bootstrap=hub_bootstrap)
        return test_hub

    yield make
    failures = []
    for test_hub in made:
        try:
            delete_hub(test_hub, bootstrap=hub_bootstrap)
        except DurableKafkaError as exc:  # keep deleting the others, then report
            failures.append(f"{test_hub}: {exc}")
    if failures:
        pytest.fail("could not delete test hubs: " + "; ".join(failures))


@pytest.fixture(scope="module")
def module_hub(bootstrap: str) -> Iterator[TestHub]:
    """One fresh hub (4 partitions) for a whole module, deleted after it.

    For modules whose tests share one worker (each test's instance ids are its own and none
    asserts over the whole hub): the worker, its consumer groups and the topics start once per
    module instead of once per test. Tests that need a hub of their own keep using ``hub``.
    """
    test_hub = TestHub(unique_hub_name("m"), DEFAULT_TEST_PARTITIONS, bootstrap)
    ensure_topics(test_hub, partitions=DEFAULT_TEST_PARTITIONS, bootstrap=bootstrap)
    yield test_hub
    delete_hub(test_hub, bootstrap=bootstrap)


@pytest.fixture(scope="session")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[broker.BrokerConfig]:
    """A second single-node broker on free ports (state in a temporary directory), never the shared one.

    For the tests that start, stop and restart a broker (test_broker.py, test_broker_restart.py).
    They share it, so the suite pays for its first start (storage format, JVM) once, and the first
    test leaves it running for the next. Not started here: each test brings it up itself
    (``broker.up`` is idempotent) and may stop it; it is stopped after the session.
    """
    from netutil import free_ports  # tests/integration is on sys.path (rootdir-style tests)

    port, controller_port = free_ports(2)
    config = broker.BrokerConfig(port=port, controller_port=controller_port,
                                 state_dir=tmp_path_factory.mktemp("private-broker") / "kafka")
    assert config.cache_dir == broker.default_cache_dir()  # reuse the shared assembly
    yield config
    broker.down(config)


@pytest.fixture
def hub(request: pytest.FixtureRequest, hub_factory: Callable[..., TestHub]) -> TestHub:
    """A fresh hub with all its topics (``@pytest.mark.hub_partitions(n)``, default 4 partitions)."""
    marker = request.node.get_closest_marker("hub_partitions")
    partitions = marker.args[0] if marker else DEFAULT_TEST_PARTITIONS
    return hub_factory(partitions=partitions)
