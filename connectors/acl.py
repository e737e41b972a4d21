"""The ACLs one task hub needs, granted (or revoked) for one principal.

Why prefixes: everything durable-kafka makes for hub ``H`` is named ``H.<something>``: its
topics (``H.orchestrator-events``...), its consumer groups (``H.orchestrators``,
``H.activity-workers``, ``H.entities``, the restore and client reader groups) and its
transactional ids (``H.orchestrations.<worker>``, ``H.entities.<worker>``). Hub names contain
no dot, so the PREFIXED pattern ``H.`` matches exactly one hub's resources (``a.`` does not
match hub ``ab``), and a service principal granted these bindings can run workers and clients
of that hub and nothing else.

What each binding is for:

* topic ``H.``: CREATE (``ensure_topics`` on worker start), DESCRIBE and DESCRIBE_CONFIGS
  (metadata, ``topics describe``), READ (processors, activity worker, client readers), WRITE
  (results, history, status, replies);
* group ``H.``: READ (join, fetch and commit offsets; implies DESCRIBE);
* transactional id ``H.``: WRITE and DESCRIBE (``init_transactions`` and every transaction of
  the orchestration and entity processors).

Creating ACLs needs ALTER on the cluster: run this as the admin (super user) principal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from durable_kafka.errors import BrokerError, ConfigurationError
from durable_kafka.streams.config import admin_config, bootstrap_servers, resolve_kafka_config
from durable_kafka.streams.connection import authorization_error
from durable_kafka.streams.topics import validate_hub_name

__all__ = ["HUB_OPERATIONS", "grant_hub", "hub_bindings", "kafka_acls_commands", "list_hub", "revoke_hub"]

#: resource type -> operations a hub's principal needs on the ``<hub>.`` prefix.
HUB_OPERATIONS: dict[ResourceType, tuple[AclOperation, ...]] = {
    ResourceType.TOPIC: (AclOperation.CREATE, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
                         AclOperation.READ, AclOperation.WRITE),
    ResourceType.GROUP: (AclOperation.READ, AclOperation.DESCRIBE),
    ResourceType.TRANSACTIONAL_ID: (AclOperation.WRITE, AclOperation.DESCRIBE),
}

_CLI_NAMES = {ResourceType.TOPIC: "--topic", ResourceType.GROUP: "--group",
              ResourceType.TRANSACTIONAL_ID: "--transactional-id"}


def _check_principal(principal: str) -> str:
    kind, _, name = principal.partition(":")
    if not kind or not name:
        raise ConfigurationError(f"principal must look like 'User:name', got {principal!r}")
    return principal


def hub_bindings(hub: str, principal: str, host: str = "*") -> list[AclBinding]:
    """Every ALLOW binding ``principal`` needs to run workers and clients of ``hub``."""
    prefix = validate_hub_name(hub) + "."
    _check_principal(principal)
    return [AclBinding(resource, prefix, ResourcePatternType.PREFIXED, principal, host, operation,
                       AclPermissionType.ALLOW)
            for resource, operations in HUB_OPERATIONS.items() for operation in operations]


def kafka_acls_commands(hub: str, principal: str, command_config: str = "admin.properties",
                        bootstrap: str = "BROKER:9092") -> list[str]:
    """The ``kafka-acls.sh`` commands granting the same bindings as :func:`grant_hub`."""
    prefix = validate_hub_name(hub) + "."
    _check_principal(principal)
    commands = []
    for resource, operations in HUB_OPERATIONS.items():
        # kafka-acls.sh spells operations in CamelCase: DESCRIBE_CONFIGS -> DescribeConfigs
        ops = " ".join("--operation " + op.name.title().replace("_", "") for op in operations)
        commands.append(f"kafka-acls.sh --bootstrap-server {bootstrap} --command-config {command_config} "
                        f"--add --allow-principal {principal} {ops} "
                        f"{_CLI_NAMES[resource]} {prefix} --resource-pattern-type prefixed")
    return commands


def _admin(bootstrap: str | None, kafka_config: Mapping[str, Any] | None) -> AdminClient:
    config = resolve_kafka_config(kafka_config)
    return AdminClient(admin_config(bootstrap_servers(bootstrap, config), kafka_config=config))


def _raise(exc: KafkaException, what: str) -> None:
    denied = authorization_error(exc, {"cluster": "kafka-cluster"}, what)
    if denied is not None:
        raise denied from exc
    raise BrokerError(f"{what} failed: {exc}") from exc


def grant_hub(hub: str, principal: str, *, bootstrap: str | None = None,
              kafka_config: Mapping[str, Any] | None = None, host: str = "*",
              timeout: float = 30.0) -> list[AclBinding]:
    """Create the hub's bindings for ``principal`` (idempotent: Kafka keeps one copy of each)."""
    bindings = hub_bindings(hub, principal, host)
    admin = _admin(bootstrap, kafka_config)  # kept referenced until the futures are done
    futures = admin.create_acls(bindings, request_timeout=timeout)
    for future in futures.values():
        try:
            future.result()
        except KafkaException as exc:
            _raise(exc, f"granting hub {hub!r} to {principal}")
    return bindings


def _hub_filter(hub: str, principal: str | None) -> list[AclBindingFilter]:
    prefix = validate_hub_name(hub) + "."
    return [AclBindingFilter(resource, prefix, ResourcePatternType.PREFIXED,
                             _check_principal(principal) if principal else None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
            for resource in HUB_OPERATIONS]


def revoke_hub(hub: str, principal: str, *, bootstrap: str | None = None,
               kafka_config: Mapping[str, Any] | None = None, timeout: float = 30.0) -> list[AclBinding]:
    """Delete every ``<hub>.``-prefixed binding of ``principal``; return what was deleted."""
    admin = _admin(bootstrap, kafka_config)  # kept referenced until the futures are done
    futures = admin.delete_acls(_hub_filter(hub, principal), request_timeout=timeout)
    deleted: list[AclBinding] = []
    for future in futures.values():
        try:
            deleted.extend(future.result())
        except KafkaException as exc:
            _raise(exc, f"revoking hub {hub!r} from {principal}")
    return deleted


def list_hub(hub: str, principal: str | None = None, *, bootstrap: str | None = None,
             kafka_config: Mapping[str, Any] | None = None, timeout: float = 30.0) -> list[AclBinding]:
    """The ``<hub>.``-prefixed bindings on the cluster (of ``principal``, if given)."""
    admin = _admin(bootstrap, kafka_config)
    found: list[AclBinding] = []
    for acl_filter in _hub_filter(hub, principal):
        try:
            found.extend(admin.describe_acls(acl_filter, request_timeout=timeout).result())
        except KafkaException as exc:
            _raise(exc, f"listing the ACLs of hub {hub!r}")
    return found
