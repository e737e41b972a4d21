"""Fail fast and by name: a preflight connection check, and Kafka errors turned into typed ones.

Why: librdkafka retries every connection problem forever. A wrong password, an untrusted CA or
a PLAINTEXT client on a SASL_SSL port then surfaces 10-30 s later as "Broker transport
failure", or never (a consumer just sees no records). The reasons are known within a second:
librdkafka reports them through ``error_cb`` and its log. :func:`check_connection` asks for
metadata while listening to both, and raises :class:`KafkaAuthenticationError`,
:class:`KafkaTlsError` or :class:`KafkaConnectionError` naming what failed.

Authorization is per resource and shows up in responses, not in the connection:
:func:`authorization_error` turns a librdkafka ``*_AUTHORIZATION_FAILED`` error into a
:class:`KafkaAuthorizationError` naming the topic, group or transactional id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient

from durable_kafka.errors import (
    ConfigurationError,
    KafkaAuthenticationError,
    KafkaAuthorizationError,
    KafkaConnectionError,
    KafkaTlsError,
)
from durable_kafka.streams.config import admin_config

__all__ = ["CONNECT_TIMEOUT", "authorization_error", "check_connection", "raise_if_unauthorized"]

#: Seconds the preflight waits for a broker that does not answer at all.
CONNECT_TIMEOUT = 10.0
# A listener that closes the connection during the first request this many times in a row is
# speaking another protocol (PLAINTEXT client on a TLS port and the like), not restarting.
_HANDSHAKE_CLOSES = 3

_AUTHORIZATION = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "group",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional_id",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster",
}


class _Recorder(logging.Logger):
    """Keeps librdkafka's log lines of one preflight client (connection failures name the state)."""

    def __init__(self) -> None:
        super().__init__("durable_kafka.preflight")
        self.lines: list[str] = []

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:  # noqa: D102
        try:
            self.lines.append(str(msg) % args if args else str(msg))
        except (TypeError, ValueError):
            self.lines.append(str(msg))


def _described(config: Mapping[str, Any]) -> str:
    protocol = str(config.get("security.protocol", "PLAINTEXT")).upper()
    mechanism = config.get("sasl.mechanism")
    user = config.get("sasl.username")
    parts = [f"security.protocol={protocol}"]
    if "SASL" in protocol:
        parts.append(f"sasl.mechanism={mechanism or 'GSSAPI'}")
        if user:
            parts.append(f"sasl.username={user}")
    return ", ".join(parts)


def check_connection(bootstrap: str, kafka_config: Mapping[str, Any] | None,
                     timeout: float = CONNECT_TIMEOUT, *, topics: Sequence[str] = (),
                     groups: Sequence[str] = ()) -> None:
    """Return once the brokers answer a metadata request with these settings; else raise.

    ``KafkaAuthenticationError`` (SASL refused), ``KafkaTlsError`` (handshake failed) and
    ``KafkaConnectionError`` (wrong protocol for the listener, or nothing answering within
    ``timeout``) name the bootstrap address and the settings used; ``ConfigurationError`` when
    librdkafka rejects a setting itself. Then ``topics`` and ``groups`` are described: an ACL
    that hides one raises ``KafkaAuthorizationError`` naming it (a topic or group that does not
    exist yet is fine: creating it is someone else's step).
    """
    admin = _connected_admin(bootstrap, kafka_config, timeout)
    if topics:
        _check_topics(admin, topics, timeout)
    if groups:
        _check_groups(admin, groups, timeout)


def _check_topics(admin: AdminClient, topics: Sequence[str], timeout: float) -> None:
    futures = admin.describe_topics(TopicCollection(list(topics)), request_timeout=timeout)
    for topic, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            raise_if_unauthorized(exc, {"topic": topic}, "describe topic")


def _check_groups(admin: AdminClient, groups: Sequence[str], timeout: float) -> None:
    # Describing a group needs the DESCRIBE that READ implies; a consumer denied its group only
    # logs and waits, so asking first turns a hang into an error naming the group.
    futures = admin.describe_consumer_groups(list(groups), request_timeout=timeout)
    for group, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            raise_if_unauthorized(exc, {"group": group}, "use consumer group")


def _connected_admin(bootstrap: str, kafka_config: Mapping[str, Any] | None, timeout: float) -> AdminClient:
    errors: list[KafkaError] = []
    recorder = _Recorder()
    config = admin_config(bootstrap, kafka_config=kafka_config)
    config.update({"logger": recorder, "error_cb": errors.append, "log_level": 6})
    try:
        admin = AdminClient(config)
    except (KafkaException, ValueError, TypeError) as exc:
        raise ConfigurationError(f"Kafka settings rejected by librdkafka: {exc}") from exc
    used = _described(config)
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=min(0.25, max(0.1, deadline - time.monotonic())))
            return admin
        except KafkaException:
            pass
        admin.poll(0.05)  # serves error_cb
        for err in errors:
            if err.code() == KafkaError._AUTHENTICATION:
                raise KafkaAuthenticationError(f"authentication to {bootstrap} failed ({used}): {err.str()}")
            if err.code() == KafkaError._SSL:
                raise KafkaTlsError(f"TLS connection to {bootstrap} failed ({used}): {err.str()}")
        closes = [line for line in recorder.lines if "APIVERSION_QUERY" in line or "SSL connection closed" in line]
        if len(closes) >= _HANDSHAKE_CLOSES:
            raise KafkaConnectionError(
                f"{bootstrap} closed every connection during the first request ({used}): the listener "
                f"expects another security.protocol (e.g. SASL_SSL). librdkafka: {closes[-1]}")
        if time.monotonic() >= deadline:
            last = recorder.lines[-1] if recorder.lines else (errors[-1].str() if errors else "no answer")
            raise KafkaConnectionError(f"no Kafka broker answered at {bootstrap} within {timeout:.0f}s "
                                       f"({used}): {last}")


def authorization_error(error: KafkaError | KafkaException | BaseException,
                        resource: str | Mapping[str, str] = "",
                        operation: str = "") -> KafkaAuthorizationError | None:
    """A ``KafkaAuthorizationError`` if ``error`` is an ACL denial, else None.

    ``resource`` names what was asked for (the topic, group or transactional id), or maps each
    kind (``topic``, ``group``, ``transactional_id``) to the name the caller used for it;
    ``operation`` says what was being done ("create topic", "join group"...).
    """
    if isinstance(error, KafkaException):
        error = error.args[0] if error.args else error
    if not isinstance(error, KafkaError):
        return None
    kind = _AUTHORIZATION.get(error.code())
    if kind is None:
        return None
    if isinstance(resource, Mapping):
        resource = resource.get(kind, "")
    what = f"{kind} {resource!r}" if resource else kind
    doing = f" to {operation}" if operation else ""
    return KafkaAuthorizationError(
        f"not authorized{doing}: {what} ({error.name()}: {error.str()}); grant the principal this "
        "hub's ACLs (python -m durable_kafka acl grant, docs/SECURITY.md)", kind, resource)


def raise_if_unauthorized(error: BaseException, resource: str | Mapping[str, str] = "",
                          operation: str = "") -> None:
    """Raise the typed authorization error for ``error`` (chained), or do nothing."""
    typed = authorization_error(error, resource, operation)
    if typed is not None:
        raise typed from error
