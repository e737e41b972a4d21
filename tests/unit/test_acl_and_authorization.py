"""Pure parts of the security plumbing: the bindings a hub needs, and ACL denials made typed."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AclOperation, AclPermissionType, ResourcePatternType, ResourceType

from durable_kafka.connectors.acl import hub_bindings, kafka_acls_commands
from durable_kafka.errors import ConfigurationError, InvalidHubNameError, KafkaAuthorizationError
from durable_kafka.streams.connection import authorization_error


def test_hub_bindings_are_prefixed_allow_rules_on_the_hub_and_dot() -> None:
    bindings = hub_bindings("orders", "User:svc")
    assert {b.name for b in bindings} == {"orders."}
    assert all(b.resource_pattern_type == ResourcePatternType.PREFIXED and b.principal == "User:svc"
               and b.permission_type == AclPermissionType.ALLOW for b in bindings)
    by_type = {t: {b.operation for b in bindings if b.restype == t} for t in {b.restype for b in bindings}}
    assert by_type == {
        ResourceType.TOPIC: {AclOperation.CREATE, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
                             AclOperation.READ, AclOperation.WRITE},
        ResourceType.GROUP: {AclOperation.READ, AclOperation.DESCRIBE},
        ResourceType.TRANSACTIONAL_ID: {AclOperation.WRITE, AclOperation.DESCRIBE},
    }


def test_bad_hub_or_principal_is_refused() -> None:
    with pytest.raises(InvalidHubNameError):
        hub_bindings("a.b", "User:svc")
    with pytest.raises(ConfigurationError, match="User:name"):
        hub_bindings("orders", "svc")


def test_kafka_acls_commands_match_the_bindings() -> None:
    commands = kafka_acls_commands("orders", "User:svc", "admin.properties", "b:9092")
    assert len(commands) == 3
    assert all("--resource-pattern-type prefixed" in c and "--allow-principal User:svc" in c for c in commands)
    assert "--operation DescribeConfigs" in commands[0] and "--topic orders." in commands[0]
    assert "--group orders." in commands[1] and "--transactional-id orders." in commands[2]


@pytest.mark.parametrize("code, kind", [
    (KafkaError.TOPIC_AUTHORIZATION_FAILED, "topic"),
    (KafkaError.GROUP_AUTHORIZATION_FAILED, "group"),
    (KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "transactional_id"),
    (KafkaError.CLUSTER_AUTHORIZATION_FAILED, "cluster"),
])
def test_authorization_codes_become_typed_errors_naming_the_resource(code: int, kind: str) -> None:
    names = {"topic": "h.status", "group": "h.orchestrators", "transactional_id": "h.orchestrations.w1"}
    typed = authorization_error(KafkaException(KafkaError(code)), names, "do it")
    assert isinstance(typed, KafkaAuthorizationError)
    assert typed.resource_type == kind and typed.resource == names.get(kind, "")
    assert "not authorized to do it" in str(typed)


def test_other_errors_are_not_authorization_errors() -> None:
    assert authorization_error(KafkaError(KafkaError._TRANSPORT)) is None
    assert authorization_error(ValueError("x")) is None
