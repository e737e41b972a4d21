"""The orchestration client: start, query, signal and manage instances of a task hub.

Names and semantics follow durabletask-python's ``TaskHubGrpcClient``; where that client calls
a sidecar over gRPC, this one writes commands to ``<hub>.orchestrator-events`` (keyed by
instance id, so they reach the processor that owns the instance) and reads answers from Kafka:

* requests that need an answer (start, purge) carry ``reply_to`` = this client's id, and the
  processor answers on ``<hub>.replies`` inside the transaction that applied the request;
* states come from a local cache of the compacted ``<hub>.status`` topic (see
  ``_client_status``), so reads and waits cost no broker round trip per instance;
* history is read from the instance's partition of ``<hub>.history``.

Kafka objects are created on first use and ``close()`` stops every thread, so a Client is cheap
to make and several can live in one process.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Literal

from confluent_kafka import KafkaException, Producer

from durable_kafka._tracing import client_headers
from durable_kafka._client_entities import EntityClientMixin
from durable_kafka._client_history import read_history
from durable_kafka._client_kafka import Metadata
from durable_kafka._client_models import (
    TERMINAL_STATUSES,
    OrchestrationQuery,
    OrchestrationState,
    OrchestrationStatus,
    PurgeInstancesResult,
    page_of,
    state_from_status,
    validate_query,
)
from durable_kafka._client_replies import ReplyListener
from durable_kafka._client_status import StatusCache
from durable_kafka.errors import (
    BrokerError,
    ClientError,
    InstanceAlreadyExistsError,
    InstanceNotFailedError,
    InstanceNotFoundError,
    InvalidArgumentError,
    InvalidInstanceIdError,
    OrchestrationFailedError,
    TimeoutError,
)
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import bootstrap_servers, command_producer_config, resolve_kafka_config
from durable_kafka.streams.connection import check_connection, raise_if_unauthorized
from durable_kafka.streams.events import (
    ClientReply,
    HistoryEvent,
    OrchestratorCommand,
    OrchestratorMessage,
    PurgeOrchestration,
    RaiseEvent,
    ResumeOrchestration,
    RewindOrchestration,
    StartOrchestration,
    SuspendOrchestration,
    TerminateOrchestration,
)
from durable_kafka.streams.ids import validate_instance_id
from durable_kafka.streams.limits import check_payload_size, check_record_size
from durable_kafka.streams.payloads import PayloadCodec, PayloadStore, resolve_fields
from durable_kafka.streams.topics import HubTopics
from durable_kafka.payload import payload_codec

__all__ = [
    "Client",
    "OrchestrationFailedError",
    "OrchestrationQuery",
    "OrchestrationState",
    "OrchestrationStatus",
    "PurgeInstancesResult",
]

log = logging.getLogger(__name__)

#: How long a read waits for the status cache to catch up before answering from what it has.
DEFAULT_SYNC_TIMEOUT = 5.0
#: How long producing one request may take before the broker is considered unreachable.
DELIVERY_TIMEOUT = 30.0

#: error_type names in a ClientReply that map to a typed client error.
_REPLY_ERRORS: dict[str, type[ClientError]] = {
    "InstanceAlreadyExistsError": InstanceAlreadyExistsError,
    "InstanceNotFoundError": InstanceNotFoundError,
    "InstanceNotFailedError": InstanceNotFailedError,
    "InvalidArgumentError": InvalidArgumentError,
    "InvalidInstanceIdError": InvalidInstanceIdError,
}


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _to_json(value: Any, what: str, payloads: PayloadCodec | None = None, owner: str | None = None) -> str | None:
    """User payloads travel as JSON text; None stays None (no payload).

    Text above the payload store's threshold is stored there first (owned by ``owner``) and a
    reference travels instead (docs/PAYLOADS.md); what still cannot fit is refused here.
    """
    if value is None:
        return None
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(f"{what} is not JSON-serializable: {error}") from None
    if payloads is not None:
        text = payloads.externalize(text, owner)
    check_payload_size(f"the {what} (as JSON)", text)
    return text


def _check_str(value: Any, what: str, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a str, got {type(value).__name__}: {value!r}")


def _check_timeout(timeout: Any) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise InvalidArgumentError(f"timeout must be a non-negative number, got {timeout!r}")
    return float(timeout)


def _orchestrator_name(orchestrator: Callable[..., Any] | str) -> str:
    if isinstance(orchestrator, str):
        if not orchestrator:
            raise InvalidArgumentError("orchestrator name must not be empty")
        return orchestrator
    if callable(orchestrator):
        from durable_kafka.task import get_name  # the task model owns naming rules

        return get_name(orchestrator)
    raise InvalidArgumentError(
        f"orchestrator must be a function or a name, got {type(orchestrator).__name__}"
    )


def _check_tags(tags: Any) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise InvalidArgumentError(f"tags must be a dict[str, str], got {tags!r}")
    return dict(tags)


def _check_start_at(start_at: Any) -> datetime | None:
    if start_at is None:
        return None
    if not isinstance(start_at, datetime):
        raise InvalidArgumentError(
            f"start_at must be a datetime, got {type(start_at).__name__}: {start_at!r}"
        )
    # Naive datetimes are taken as UTC: the engine keeps every time in UTC.
    return start_at.replace(tzinfo=timezone.utc) if start_at.tzinfo is None else start_at


def _reply_error(reply: ClientReply) -> ClientError:
    error_class = _REPLY_ERRORS.get(reply.error_type or "", ClientError)
    message = reply.message or f"request for instance {reply.instance_id!r} was rejected"
    if error_class is ClientError and reply.error_type:
        message = f"{reply.error_type}: {message}"
    return error_class(message)


class Client(EntityClientMixin):
    """A client of one task hub; use as a context manager or call ``close()``.

    ``kafka_config``: connection and security settings (``security.protocol``, ``sasl.*``,
    ``ssl.*``...) for every Kafka client it makes, over ``DURABLE_KAFKA_*`` variables and the
    ``DURABLE_KAFKA_CONFIG_FILE`` properties file (docs/SECURITY.md). The client checks the
    connection and that the hub's topics are not hidden by ACLs before its first Kafka call,
    raising a typed error (``KafkaAuthenticationError``, ``KafkaTlsError``,
    ``KafkaConnectionError``, ``KafkaAuthorizationError``) within seconds.
    """

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        hub: str = "default",
        *,
        sync_timeout: float = DEFAULT_SYNC_TIMEOUT,
        kafka_config: Mapping[str, Any] | None = None,
        default_version: str | None = None,
        payload_store: PayloadStore | Literal[False] | None = None,
    ) -> None:
        _check_str(default_version, "default_version", optional=True)
        #: the version of instances started without one (durabletask's ``default_version``)
        self.default_version = default_version
        self._kafka_config = resolve_kafka_config(kafka_config)
        self._bootstrap = _resolve_bootstrap(bootstrap_servers, self._kafka_config)
        self._topics = HubTopics(hub)
        #: large payloads (docs/PAYLOADS.md): None = the hub's Kafka-native store, False = off
        self._payloads = payload_codec(payload_store, self._bootstrap, hub, self._kafka_config)
        self._connected = False
        self.hub = hub
        self.client_id = f"client-{uuid.uuid4().hex}"
        self._sync_timeout = _check_timeout(sync_timeout)
        self._codec = Codec.default()
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._closed = False
        self._metadata = Metadata(self._bootstrap, self._kafka_config, hub, preflight=self._ensure_connected)
        self._status = StatusCache(self._bootstrap, self._topics.status, self._codec, self._metadata)
        self._replies = ReplyListener(
            self._bootstrap, self._topics.replies, self.client_id, self._codec, self._metadata
        )

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the reader threads and flush the producer; the client cannot be used after."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            producer, self._producer = self._producer, None
        self._replies.close()
        self._status.close()
        self._metadata.close()
        if producer is not None:
            producer.flush(DELIVERY_TIMEOUT)
        self._payloads.close()

    def flush(self, timeout: float = DELIVERY_TIMEOUT) -> None:
        """Wait until requests queued by ``wait_for_acceptance=False`` starts are on the broker."""
        with self._lock:
            producer = self._producer
        if producer is not None and producer.flush(_check_timeout(timeout)) > 0:
            raise TimeoutError(f"requests still undelivered after {timeout}s")

    # ------------------------------------------------------------------ starting

    def schedule_new_orchestration(
        self,
        orchestrator: Callable[..., Any] | str,
        *,
        input: Any = None,  # noqa: A002 - durabletask's name
        instance_id: str | None = None,
        start_at: datetime | None = None,
        tags: dict[str, str] | None = None,
        wait_for_acceptance: bool = True,
        timeout: float = 30,
        version: str | None = None,
    ) -> str:
        """Start a new instance and return its id.

        ``version``: the orchestration version recorded in its ExecutionStarted and compared by
        workers that ``use_versioning`` (default: the client's ``default_version``).

        ``start_at``: the instance starts no earlier than this time truncated to the millisecond
        (the engine records every time as Avro timestamp-millis, start_at included).

        With ``wait_for_acceptance`` (the default) this returns once the owning processor has
        accepted the start, and raises InstanceAlreadyExistsError if an instance with that id
        is still pending, running or suspended. ``wait_for_acceptance=False`` only queues the
        request, to start many instances quickly (``flush()`` or ``close()`` waits until the
        broker has them all); a rejection is then not reported.
        """
        name = _orchestrator_name(orchestrator)
        if input is not None and instance_id is None:  # a stored input is owned by its instance
            instance_id = uuid.uuid4().hex
        return self._start(
            name,
            _to_json(input, "input", self._payloads, instance_id),
            instance_id,
            _check_start_at(start_at),
            _check_tags(tags),
            wait_for_acceptance,
            _check_timeout(timeout),
            _version(version, self.default_version),
        )

    def _start(
        self,
        name: str,
        serialized_input: str | None,
        instance_id: str | None,
        start_at: datetime | None,
        tags: dict[str, str],
        wait: bool,
        timeout: float,
        version: str | None = None,
    ) -> str:
        instance_id = uuid.uuid4().hex if instance_id is None else validate_instance_id(instance_id)
        body = StartOrchestration(
            name=name,
            execution_id=uuid.uuid4().hex,
            input=serialized_input,
            scheduled_start_at=start_at,
            tags=tags,
            version=version,
        )
        if wait:
            self._request(instance_id, body, timeout)
        else:  # the bulk path: queued, delivered in the background, flushed by flush()/close()
            self._produce(self._message(instance_id, body, None), wait=False)
        log.debug("started %r instance %s", name, instance_id)
        return instance_id

    def restart_orchestration(
        self, instance_id: str, *, restart_with_new_instance_id: bool = False
    ) -> str:
        """Run an existing instance's orchestrator again with its original input.

        Same id (default): the instance must have ended, as for any start with an existing id.
        Returns the id of the restarted instance.
        """
        validate_instance_id(instance_id)
        status = self._current_status(instance_id)
        if status is None:
            raise InstanceNotFoundError(f"instance {instance_id!r} does not exist")
        new_id = uuid.uuid4().hex if restart_with_new_instance_id else instance_id
        return self._start(
            status.name, status.input, new_id, None, dict(status.tags), True, 30.0, status.version
        )

    # ------------------------------------------------------------------ reading

    def get_orchestration_state(
        self, instance_id: str, *, fetch_payloads: bool = True
    ) -> OrchestrationState | None:
        """The instance's state as of now (including anything committed before the call)."""
        validate_instance_id(instance_id)
        status = self._current_status(instance_id)
        return None if status is None else state_from_status(status, fetch_payloads=fetch_payloads,
                                                             payloads=self._payloads)

    def wait_for_orchestration_start(
        self, instance_id: str, *, fetch_payloads: bool = False, timeout: float = 60
    ) -> OrchestrationState:
        """Wait until the instance exists and is no longer PENDING; TimeoutError otherwise."""
        return self._wait(
            instance_id,
            lambda s: s.runtime_status != OrchestrationStatus.PENDING,
            "start",
            fetch_payloads,
            timeout,
        )

    def wait_for_orchestration_completion(
        self, instance_id: str, *, fetch_payloads: bool = True, timeout: float = 60
    ) -> OrchestrationState:
        """Wait until the instance is COMPLETED, FAILED or TERMINATED; TimeoutError otherwise."""
        return self._wait(
            instance_id, lambda s: s.runtime_status in TERMINAL_STATUSES, "complete", fetch_payloads, timeout
        )

    def _wait(
        self,
        instance_id: str,
        predicate: Callable[[Any], bool],
        what: str,
        fetch_payloads: bool,
        timeout: float,
    ) -> OrchestrationState:
        validate_instance_id(instance_id)
        timeout = _check_timeout(timeout)
        self._ensure_open()
        # Catch up first, so an old snapshot (say, a previous run's COMPLETED) is not mistaken
        # for the answer when a newer one was committed before this call.
        self._status.sync([self._status.partition_of(instance_id)], min(timeout, self._sync_timeout))
        status = self._status.wait_for(instance_id, predicate, timeout, what)
        return state_from_status(status, fetch_payloads=fetch_payloads, payloads=self._payloads)

    def query_orchestration_states(
        self, query: OrchestrationQuery | None = None
    ) -> tuple[list[OrchestrationState], str | None]:
        """One page of matching states, ordered by created_at then instance id, and the token
        for the next page (None on the last page)."""
        query = OrchestrationQuery() if query is None else query
        validate_query(query)
        self._ensure_open()
        self._status.sync(None, self._sync_timeout)
        return page_of(self._status.snapshot(), query, self._payloads)

    def get_all_orchestration_states(
        self, query: OrchestrationQuery | None = None
    ) -> list[OrchestrationState]:
        """Every matching state, following the pages of ``query_orchestration_states``."""
        query = OrchestrationQuery() if query is None else query
        validate_query(query)
        self._ensure_open()
        self._status.sync(None, self._sync_timeout)
        snapshot = self._status.snapshot()  # one snapshot, so pages never overlap or skip
        states: list[OrchestrationState] = []
        token = query.continuation_token
        while True:
            page_query = OrchestrationQuery(**{**vars(query), "continuation_token": token})
            page, token = page_of(snapshot, page_query, self._payloads)
            states.extend(page)
            if token is None:
                return states

    def get_orchestration_history(self, instance_id: str) -> list[HistoryEvent]:
        """The current execution's history events, in order (large payloads resolved, as in
        durabletask: the history topic keeps references, callers see the values)."""
        validate_instance_id(instance_id)
        status = self._current_status(instance_id)
        if status is None:
            raise InstanceNotFoundError(f"instance {instance_id!r} does not exist")
        return resolve_fields(read_history(
            self._bootstrap,
            self._metadata,
            self._topics.history,
            self._status.partition_of(instance_id),
            instance_id,
            status.execution_id,
            self._codec,
            timeout=60.0,
            settle=self._sync_timeout,
        ), self._payloads, instance_id)

    def _current_status(self, instance_id: str) -> Any:
        self._ensure_open()
        self._status.sync([self._status.partition_of(instance_id)], self._sync_timeout)
        return self._status.get(instance_id)

    # ------------------------------------------------------------------ commands

    def raise_orchestration_event(
        self, instance_id: str, event_name: str, *, data: Any = None
    ) -> None:
        """Send an external event to the instance (buffered until it waits for that name)."""
        validate_instance_id(instance_id)
        _check_str(event_name, "event_name")
        if not event_name:
            raise InvalidArgumentError("event_name must not be empty")
        self._send(instance_id, RaiseEvent(name=event_name, input=_to_json(data, "data", self._payloads, instance_id)))

    def terminate_orchestration(
        self, instance_id: str, *, output: Any = None, recursive: bool = True
    ) -> None:
        """Terminate the instance (and, if ``recursive``, its sub-orchestrations)."""
        validate_instance_id(instance_id)
        if not isinstance(recursive, bool):
            raise InvalidArgumentError(f"recursive must be a bool, got {recursive!r}")
        self._send(
            instance_id,
            TerminateOrchestration(output=_to_json(output, "output", self._payloads, instance_id),
                                   recursive=recursive),
        )

    def suspend_orchestration(self, instance_id: str, *, reason: str | None = None) -> None:
        """Suspend the instance: new events are kept but not processed until resumed."""
        validate_instance_id(instance_id)
        _check_str(reason, "reason", optional=True)
        self._send(instance_id, SuspendOrchestration(reason=reason))

    def resume_orchestration(self, instance_id: str, *, reason: str | None = None) -> None:
        """Resume a suspended instance."""
        validate_instance_id(instance_id)
        _check_str(reason, "reason", optional=True)
        self._send(instance_id, ResumeOrchestration(reason=reason))

    def rewind_orchestration(
        self, instance_id: str, *, reason: str | None = None, timeout: float = 30
    ) -> None:
        """Resume a FAILED instance as if its failed activities and sub-orchestrations had not
        failed yet (recursive into failed sub-orchestrations); docs/REWIND.md.

        Returns once the owning processor has rewound it (the instance is RUNNING again).
        Raises InstanceNotFailedError if it is not FAILED, InstanceNotFoundError if unknown.
        """
        validate_instance_id(instance_id)
        _check_str(reason, "reason", optional=True)
        self._request(instance_id, RewindOrchestration(reason=reason), _check_timeout(timeout))

    def purge_orchestration(
        self, instance_id: str, recursive: bool = True, *, timeout: float = 30
    ) -> PurgeInstancesResult:
        """Delete the instance's state (and its children's, if ``recursive``).

        The owning processor refuses to purge an instance that has not ended.
        """
        validate_instance_id(instance_id)
        if not isinstance(recursive, bool):
            raise InvalidArgumentError(f"recursive must be a bool, got {recursive!r}")
        try:
            reply = self._request(
                instance_id, PurgeOrchestration(recursive=recursive), _check_timeout(timeout)
            )
        except InstanceNotFoundError:
            return PurgeInstancesResult(deleted_instance_count=0)
        return PurgeInstancesResult(deleted_instance_count=_deleted_count(reply))

    # ------------------------------------------------------------------ Kafka plumbing

    def _ensure_open(self) -> None:
        if self._closed:
            raise ClientError("the client is closed")

    def _ensure_connected(self) -> None:
        """Before the first Kafka call: wrong credentials, TLS or protocol, or ACLs hiding this
        hub become a typed error naming it within seconds (constructing a client stays offline)."""
        if self._connected:
            return
        check_connection(self._bootstrap, self._kafka_config,
                         topics=[self._topics.orchestrator_events, self._topics.status, self._topics.replies])
        self._connected = True

    def _get_producer(self) -> Producer:
        self._ensure_connected()
        with self._lock:
            if self._closed:
                raise ClientError("the client is closed")
            if self._producer is None:
                self._producer = Producer(command_producer_config(self._bootstrap, kafka_config=self._kafka_config))
            return self._producer

    def _message(
        self, instance_id: str, body: OrchestratorCommand, reply_to: str | None
    ) -> OrchestratorMessage:
        return OrchestratorMessage(
            id=str(uuid.uuid4()),
            instance_id=instance_id,
            sent_at=_utcnow(),
            body=body,
            reply_to=reply_to,
        )

    def _send(self, instance_id: str, body: OrchestratorCommand, reply_to: str | None = None) -> str:
        """Produce one command to the instance and wait for the broker's acknowledgement."""
        message = self._message(instance_id, body, reply_to)
        self._produce(message)
        return message.id

    def _produce(self, message: OrchestratorMessage, *, wait: bool = True) -> None:
        producer = self._get_producer()
        outcome: list[Any] = []

        def delivered(error: Any, _record: Any) -> None:
            outcome.append(error)
            if error is not None and not wait:
                log.error("request to instance %s was not delivered: %s", message.instance_id, error)

        value = self._codec.encode(message)
        key = message.instance_id.encode("utf-8")
        check_record_size(self._topics.orchestrator_events, key, value,
                          f"the {type(message.body).__name__} command to instance {message.instance_id!r}")
        while True:
            try:
                producer.produce(
                    self._topics.orchestrator_events,
                    key=key,
                    value=value,
                    on_delivery=delivered,
                    headers=client_headers(),  # the caller's trace context goes on (durable_kafka._tracing)
                )
                break
            except BufferError:  # the local queue is full (bulk starts): let deliveries drain
                producer.poll(0.1)
            except KafkaException as error:
                raise_if_unauthorized(error, {"topic": self._topics.orchestrator_events}, "write")
                raise BrokerError(
                    f"could not send to {self._topics.orchestrator_events}: {error}"
                ) from error
        if not wait:
            producer.poll(0)
            return
        producer.flush(DELIVERY_TIMEOUT)
        if not outcome:
            raise BrokerError(
                f"no acknowledgement from {self._bootstrap} within {DELIVERY_TIMEOUT}s for a "
                f"message to instance {message.instance_id!r}"
            )
        if outcome[0] is not None:
            raise_if_unauthorized(outcome[0], {"topic": self._topics.orchestrator_events}, "write")
            raise BrokerError(
                f"message to instance {message.instance_id!r} was not delivered: {outcome[0]}"
            )

    def _request(self, instance_id: str, body: OrchestratorCommand, timeout: float) -> ClientReply:
        """Send a command that carries reply_to and wait for the processor's answer."""
        self._ensure_open()
        message = self._message(instance_id, body, self.client_id)
        self._replies.expect(message.id)  # the reader is positioned before the request exists
        try:
            self._produce(message)
        except BaseException:
            self._replies.forget(message.id)
            raise
        reply = self._replies.wait(message.id, timeout)
        if reply is None:
            raise TimeoutError(
                f"no answer to {type(body).__name__} for instance {instance_id!r} within "
                f"{timeout}s; is a worker running for hub {self.hub!r}?"
            )
        if not reply.accepted:
            raise _reply_error(reply)
        return reply


def _version(version: str | None, default: str | None) -> str | None:
    """The version a start carries: the given one, else the client's default."""
    _check_str(version, "version", optional=True)
    return version if version else default


def _resolve_bootstrap(explicit: str | None, kafka_config: Mapping[str, Any]) -> str:
    if explicit is not None and not isinstance(explicit, str):
        raise InvalidArgumentError(f"bootstrap_servers must be a str, got {explicit!r}")
    return bootstrap_servers(explicit, kafka_config)


def _deleted_count(reply: ClientReply) -> int:
    try:
        count = json.loads(reply.message or "{}").get("deleted", 0)
    except (ValueError, AttributeError) as error:
        raise ClientError(f"unexpected purge reply {reply.message!r}: {error}") from None
    if not isinstance(count, int):
        raise ClientError(f"unexpected purge reply {reply.message!r}")
    return count
