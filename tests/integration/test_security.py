"""On the real secured broker (SASL_SSL, SCRAM-SHA-512, StandardAuthorizer): ACLs per hub, and
bad settings that fail fast with a typed error naming what failed.

The session fixture starts the secure broker (``make broker-up SECURE=1``: 127.0.0.1:9192, state
in .state/kafka-secure) unless it runs; .ci/run stops it. Every test uses fresh hub names, and
grants the service principal ``svc-a`` exactly one hub's prefixed ACLs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from durable_kafka import Client, EntityInstanceId, Worker
from durable_kafka.connectors import acl, broker, broker_security
from durable_kafka.connectors.audit import audit
from durable_kafka.errors import (
    KafkaAuthenticationError,
    KafkaAuthorizationError,
    KafkaConnectionError,
    KafkaTlsError,
)
from durable_kafka.streams.admin import delete_hub, ensure_topics
from durable_kafka.streams.connection import CONNECT_TIMEOUT

REPO = Path(__file__).resolve().parents[2]
SECURE_PORT = int(os.environ.get("DURABLE_KAFKA_SECURE_PORT", "9192"))
SECURE_CONTROLLER_PORT = int(os.environ.get("DURABLE_KAFKA_SECURE_CONTROLLER_PORT", "9193"))
SERVICE = "svc-a"
# A typed error must arrive well before librdkafka's own timeouts (10-30 s) would have fired.
FAST = CONNECT_TIMEOUT + 5


@pytest.fixture(scope="session")
def secure() -> broker.BrokerConfig:
    cfg = broker.BrokerConfig(port=SECURE_PORT, controller_port=SECURE_CONTROLLER_PORT,
                              state_dir=REPO / ".state" / "kafka-secure", secure=True)
    broker.up(cfg)
    return cfg


@pytest.fixture(scope="session")
def admin_config(secure: broker.BrokerConfig) -> dict[str, Any]:
    return secure.client_config()


@pytest.fixture(scope="session")
def svc_config(secure: broker.BrokerConfig) -> dict[str, Any]:
    return broker_security.client_config(secure.state_dir, SERVICE)


@pytest.fixture
def granted_hub(secure: broker.BrokerConfig, admin_config: dict[str, Any]) -> Iterator[str]:
    """A fresh hub whose prefixed ACLs are granted to svc-a (revoked and deleted afterwards)."""
    hub = f"a{uuid.uuid4().hex[:10]}"
    acl.grant_hub(hub, f"User:{SERVICE}", bootstrap=secure.bootstrap, kafka_config=admin_config)
    yield hub
    acl.revoke_hub(hub, f"User:{SERVICE}", bootstrap=secure.bootstrap, kafka_config=admin_config)
    delete_hub(hub, bootstrap=secure.bootstrap, kafka_config=admin_config)


def hello(ctx: Any, name: str) -> str:
    return f"Hello {name}!"


def greet(ctx: Any, name: str) -> Any:
    greeting = yield ctx.call_activity(hello, input=name)
    return greeting


def counter(ctx: Any, amount: Any) -> Any:
    if ctx.operation == "add":
        ctx.set_state((ctx.get_state(int) or 0) + amount)
    return ctx.get_state(int)


def _worker(bootstrap: str, hub: str, config: dict[str, Any], entities: bool = False) -> Worker:
    worker = Worker(bootstrap, hub, state_dir=tempfile.mkdtemp(prefix="dk-secure-"), partitions=2,
                    kafka_config=config)
    worker.add_orchestrator(greet)
    worker.add_activity(hello)
    if entities:
        worker.add_entity(counter)
    return worker


def _hub_resources(bootstrap: str, admin_config: dict[str, Any], hub: str) -> tuple[list[str], list[str]]:
    """Topics and consumer groups named ``<hub>.*``, as the super user sees them."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **admin_config})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{hub}.")]
    groups = [g.group_id for g in admin.list_consumer_groups(request_timeout=10).result().valid
              if g.group_id.startswith(f"{hub}.")]
    return topics, groups


def _timed(action: Callable[[], Any]) -> float:
    began = time.monotonic()
    action()
    return time.monotonic() - began


# --------------------------------------------------------------------------- ACLs


def test_worker_and_client_of_their_own_hub_work_end_to_end(
        secure: broker.BrokerConfig, svc_config: dict[str, Any], granted_hub: str) -> None:
    with _worker(secure.bootstrap, granted_hub, svc_config, entities=True), \
            Client(secure.bootstrap, granted_hub, kafka_config=svc_config) as client:
        iid = client.schedule_new_orchestration(greet, input="Tokyo")
        state = client.wait_for_orchestration_completion(iid, timeout=60)
        assert state.runtime_status.name == "COMPLETED"
        assert state.get_output() == "Hello Tokyo!"
        history = client.get_orchestration_history(iid)  # the history reader's group is hub-prefixed too
        assert any(type(e).__name__ == "TaskCompleted" for e in history)
        entity = EntityInstanceId("counter", "k")
        client.signal_entity(entity, "add", 2, wait_for_delivery=True)  # the entity processor, too
        deadline = time.monotonic() + 60
        while (meta := client.get_entity(entity)) is None or meta.get_state(int) != 2:
            assert time.monotonic() < deadline, f"entity state never reached 2: {meta!r}"
            time.sleep(0.1)
    report = audit(granted_hub, secure.bootstrap, kafka_config=svc_config)  # the audit readers as svc-a
    assert report.ok and report.instances >= 1, report.problems


def test_another_hub_is_refused_by_name_and_nothing_is_created(
        secure: broker.BrokerConfig, svc_config: dict[str, Any], admin_config: dict[str, Any],
        granted_hub: str) -> None:
    other = f"b{uuid.uuid4().hex[:10]}"  # svc-a holds the ACLs of granted_hub only
    worker = _worker(secure.bootstrap, other, svc_config)
    with pytest.raises(KafkaAuthorizationError) as refused:
        worker.start()
    assert refused.value.resource_type == "group" and refused.value.resource.startswith(f"{other}.")
    assert not worker.is_running
    with pytest.raises(KafkaAuthorizationError) as refused:
        ensure_topics(other, 2, bootstrap=secure.bootstrap, kafka_config=svc_config)
    assert refused.value.resource_type == "topic" and refused.value.resource.startswith(f"{other}.")
    with Client(secure.bootstrap, other, kafka_config=svc_config) as client, \
            pytest.raises(KafkaAuthorizationError, match=f"{other}.orchestrator-events"):
        client.schedule_new_orchestration(greet, input="nobody")
    assert _hub_resources(secure.bootstrap, admin_config, other) == ([], [])


def test_existing_hub_of_someone_else_is_refused_to_the_client(
        secure: broker.BrokerConfig, svc_config: dict[str, Any], admin_config: dict[str, Any]) -> None:
    other = f"c{uuid.uuid4().hex[:10]}"
    ensure_topics(other, 2, bootstrap=secure.bootstrap, kafka_config=admin_config)  # exists, not svc-a's
    try:
        with Client(secure.bootstrap, other, kafka_config=svc_config) as client, \
                pytest.raises(KafkaAuthorizationError) as refused:
            client.get_orchestration_state("someone-elses-instance")
        assert refused.value.resource == f"{other}.orchestrator-events"
    finally:
        delete_hub(other, bootstrap=secure.bootstrap, kafka_config=admin_config)


def test_missing_transactional_id_acl_is_refused_by_name(
        secure: broker.BrokerConfig, svc_config: dict[str, Any], admin_config: dict[str, Any]) -> None:
    hub = f"d{uuid.uuid4().hex[:10]}"
    partial = [b for b in acl.hub_bindings(hub, f"User:{SERVICE}") if b.restype.name != "TRANSACTIONAL_ID"]
    admin = AdminClient({"bootstrap.servers": secure.bootstrap, **admin_config})
    for future in admin.create_acls(partial).values():
        future.result()
    worker = _worker(secure.bootstrap, hub, svc_config)
    try:
        with pytest.raises(KafkaAuthorizationError) as refused:
            worker.start()
        assert refused.value.resource_type == "transactional_id"
        assert refused.value.resource == f"{hub}.orchestrations.{worker.worker_id}"
        assert not worker.is_running
    finally:
        worker.stop()
        acl.revoke_hub(hub, f"User:{SERVICE}", bootstrap=secure.bootstrap, kafka_config=admin_config)
        delete_hub(hub, bootstrap=secure.bootstrap, kafka_config=admin_config)


def test_running_worker_stops_with_a_typed_error_when_its_group_acl_is_revoked(
        secure: broker.BrokerConfig, svc_config: dict[str, Any], admin_config: dict[str, Any],
        granted_hub: str) -> None:
    worker = _worker(secure.bootstrap, granted_hub, svc_config)
    worker.start()
    try:
        admin = AdminClient({"bootstrap.servers": secure.bootstrap, **admin_config})
        groups = AclBindingFilter(ResourceType.GROUP, f"{granted_hub}.", ResourcePatternType.PREFIXED,
                                  None, None, AclOperation.ANY, AclPermissionType.ANY)
        assert admin.delete_acls([groups])[groups].result(), "no group ACL was revoked"
        deadline = time.monotonic() + 60  # the next heartbeat/rejoin meets the denial
        while not worker.errors() and time.monotonic() < deadline:
            time.sleep(0.2)
        errors = worker.errors()
        assert errors, "the worker kept running without its group ACL"
        assert all(isinstance(e, KafkaAuthorizationError) and e.resource_type == "group" for e in errors), errors
        assert {e.resource for e in errors} <= {f"{granted_hub}.orchestrators", f"{granted_hub}.activity-workers"}
    finally:
        worker.stop()


# --------------------------------------------------------------------------- bad settings, fast


def _untrusted_ca(directory: Path) -> str:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(directory / "k.pem"),
                    "-out", str(directory / "ca.pem"), "-days", "2", "-subj", "/CN=someone else"],
                   check=True, capture_output=True)
    return str(directory / "ca.pem")


@pytest.mark.parametrize("case", ["wrong password", "wrong user", "untrusted CA", "PLAINTEXT", "SSL without SASL"])
def test_bad_settings_fail_fast_with_a_typed_error(
        case: str, secure: broker.BrokerConfig, svc_config: dict[str, Any], tmp_path: Path) -> None:
    bad, expected, words = {
        "wrong password": ({**svc_config, "sasl.password": "not-the-password"}, KafkaAuthenticationError,
                           "invalid credentials"),
        "wrong user": ({**svc_config, "sasl.username": "nobody"}, KafkaAuthenticationError, "Authentication failed"),
        "untrusted CA": ({**svc_config, "ssl.ca.location": _untrusted_ca(tmp_path)} if case == "untrusted CA"
                         else {}, KafkaTlsError, "certificate verify failed"),
        "PLAINTEXT": ({}, KafkaConnectionError, "security.protocol"),
        "SSL without SASL": ({"security.protocol": "SSL", "ssl.ca.location": svc_config["ssl.ca.location"]},
                             KafkaConnectionError, "security.protocol"),
    }[case]
    errors: list[BaseException] = []

    def connect() -> None:
        try:
            with Client(secure.bootstrap, "anyhub", kafka_config=bad) as client:
                client.schedule_new_orchestration(greet, input="x")
        except KafkaConnectionError as exc:
            errors.append(exc)

    elapsed = _timed(connect)
    assert errors, f"{case}: the client was created"
    assert type(errors[0]) is expected, errors[0]
    assert words in str(errors[0]) and secure.bootstrap in str(errors[0])
    assert elapsed < FAST, f"{case}: {elapsed:.1f}s"


def test_worker_start_with_a_wrong_password_fails_fast(
        secure: broker.BrokerConfig, svc_config: dict[str, Any]) -> None:
    worker = _worker(secure.bootstrap, f"e{uuid.uuid4().hex[:10]}", {**svc_config, "sasl.password": "nope"})
    began = time.monotonic()
    with pytest.raises(KafkaAuthenticationError, match="sasl.username=svc-a"):
        worker.start()
    assert time.monotonic() - began < FAST


# --------------------------------------------------------------------------- env and properties file


_APP = textwrap.dedent('''
    import os
    from durable_kafka import Worker

    def hello(ctx, name):
        return f"Hello {name}!"

    def greet(ctx, name):
        greeting = yield ctx.call_activity(hello, input=name)
        return greeting

    # no bootstrap, no kafka_config: both come from the --kafka-config file
    worker = Worker(hub=os.environ["SECURE_TEST_HUB"], partitions=2)
    worker.add_orchestrator(greet)
    worker.add_activity(hello)
''')


def _cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_KAFKA_")}
    env.update({"DURABLE_KAFKA_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(tmp_path), **extra})
    return env


def test_cli_reads_the_properties_file_and_the_client_reads_env_vars(
        secure: broker.BrokerConfig, granted_hub: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    java_file = broker_security.client_properties_file(secure.state_dir, SERVICE, java=True)
    native_file = broker_security.client_properties_file(secure.state_dir, SERVICE)
    # topics create with the Java-named file (sasl.jaas.config, PEM truststore): translated
    created = subprocess.run([sys.executable, "-m", "durable_kafka", "topics", "create", "--hub", granted_hub,
                              "--partitions", "2", "--kafka-config", str(java_file)],
                             env=_cli_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    assert f"{granted_hub}.orchestrator-events" in created.stdout
    refused = subprocess.run([sys.executable, "-m", "durable_kafka", "topics", "create", "--hub",
                              f"x{uuid.uuid4().hex[:10]}", "--kafka-config", str(java_file)],
                             env=_cli_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "not authorized" in refused.stderr, refused.stderr
    (tmp_path / "secure_app.py").write_text(_APP)
    worker = subprocess.Popen([sys.executable, "-m", "durable_kafka", "worker", "secure_app:worker",
                               "--kafka-config", str(native_file)], cwd=tmp_path,
                              env=_cli_env(tmp_path, SECURE_TEST_HUB=granted_hub),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = worker.stdout.readline() if worker.stdout else ""
        assert "running on hub" in line and secure.bootstrap in line, (line, worker.poll())
        secrets = broker_security.client_config(secure.state_dir, SERVICE)
        for key, value in secrets.items():  # the client gets everything from the environment
            monkeypatch.setenv("DURABLE_KAFKA_" + key.upper().replace(".", "_"), value)
        monkeypatch.setenv("DURABLE_KAFKA_BOOTSTRAP", secure.bootstrap)
        monkeypatch.delenv("DURABLE_KAFKA_CONFIG_FILE", raising=False)
        with Client(hub=granted_hub) as client:
            iid = client.schedule_new_orchestration("greet", input="Oslo")
            state = client.wait_for_orchestration_completion(iid, timeout=60)
        assert state.get_output() == "Hello Oslo!"
    finally:
        worker.terminate()
        try:
            worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.communicate()
