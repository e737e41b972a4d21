"""Every error durable-kafka raises on purpose, under one root.

    DurableKafkaError
    ├── ConfigurationError          bad settings: hub name, partition counts, bootstrap
    │   ├── InvalidHubNameError     a task hub name that cannot prefix topic names
    │   ├── PartitionCountMismatchError
    │   ├── WorkItemFilterError     filters naming what the worker lacks, or a hub set conflict
    │   └── TriggerConfigError      a trigger route (or routes file) that cannot work
    │       ├── InvalidRouteError   a route argument of the wrong type or value
    │       ├── TriggerFileError    a TOML routes file that is not valid (names the line/route)
    │       └── SourceTopicMissingError  a route's source topic does not exist
    ├── CodecError                  bytes that cannot become a record (or a record, bytes)
    │   ├── UnknownSchemaError      fingerprint not in the registry
    │   ├── CorruptRecordError      truncated, bad marker, undecodable body
    │   ├── RecordEncodeError       a record that does not fit its schema (a caller bug)
    │   └── IncompatibleSchemaError a writer schema the current schema cannot read
    ├── ClientError                 a client call that cannot be done as asked
    │   ├── InvalidInstanceIdError
    │   ├── InstanceAlreadyExistsError
    │   ├── InstanceNotFoundError
    │   ├── InvalidArgumentError
    │   ├── InstanceNotFailedError  rewind_orchestration on an instance that is not FAILED
    │   ├── InvalidEntityIdError    not an entity id of the form '@name@key'
    │   ├── OrchestrationFailedError  raise_if_failed() on a failed instance's state
    │   ├── PayloadTooLargeError    an input/event/state whose record cannot fit in Kafka
    │   └── TimeoutError            waiting on an instance took longer than allowed
    ├── OrchestrationError          raised inside orchestrator code
    │   ├── TaskFailedError         an awaited activity/sub-orchestration/entity call failed
    │   ├── TaskCancelledError      the result of a cancelled timer/event wait was asked for
    │   ├── NonDeterminismError     orchestrator code diverged from its history
    │   ├── OrchestratorNotRegisteredError  history names an orchestrator nobody registered
    │   └── OrchestrationStateError a call the orchestration's current state does not allow
    ├── TriggerRecordError          a source record a route cannot turn into a command (dead-lettered)
    │   ├── TriggerDecodeError      the decoder cannot read the record's value
    │   ├── TemplateFieldMissingError  a template names a field the record does not have
    │   ├── RouteCallableError      a route's callable (field or filter) raised
    │   └── InstanceExistsError     reuse="fail": the instance already exists
    ├── PayloadUnavailableError     a large-payload reference whose payload is missing or corrupt
    ├── EntityError                 raised while running an entity operation
    │   └── EntityOperationNotFoundError  the entity has no operation of that name
    └── BrokerError                 the broker cannot be assembled/started/reached or refuses
        ├── ProcessorStuckError     a transactional call blocked past its deadline
        ├── ChangelogStalledError   a changelog restore waited past every transaction's timeout
        ├── KafkaConnectionError    no working connection: unreachable, wrong security.protocol
        │   ├── KafkaTlsError       TLS handshake failed (untrusted CA, hostname, client cert)
        │   └── KafkaAuthenticationError  SASL refused (wrong password/user/mechanism)
        └── KafkaAuthorizationError an ACL denies an operation on a named topic/group/txn id

Recurring schedules add ``ScheduleError`` and its subclasses under the same root, in
``durable_kafka.scheduled`` (its module docstring draws them).

Callers catch the narrowest class they can act on; the messages name the specific thing
(the instance id, the sequence number, both partition counts) so the log line alone is enough.
"""

from __future__ import annotations

import builtins
from typing import Any


class DurableKafkaError(Exception):
    """Root of every error raised deliberately by durable-kafka."""


class ConfigurationError(DurableKafkaError, ValueError):
    """Settings that cannot work: fix the configuration, retrying will not help."""


class InvalidHubNameError(ConfigurationError):
    """A task hub name that breaks the naming rule (it prefixes every topic of the hub)."""


class PartitionCountMismatchError(ConfigurationError):
    """A hub's topics exist with a different partition count than configured.

    Co-partitioning (instance id -> partition) depends on one count for the whole hub, so
    silently using the broker's count would route records to the wrong processor state.
    """

    def __init__(self, topic: str, expected: int, actual: int) -> None:
        self.topic, self.expected, self.actual = topic, expected, actual
        super().__init__(
            f"topic {topic!r} has {actual} partitions but the hub is configured for {expected}; "
            f"use partitions={actual} or create a new hub"
        )


class WorkItemFilterError(ConfigurationError):
    """Work-item filters that cannot work (docs/ROUTING.md): a filter names an orchestrator,
    activity or entity this worker did not register, or this worker's orchestrators or entities
    conflict with those of another live worker of the hub."""


class TriggerConfigError(ConfigurationError):
    """A trigger route, or a routes file, that cannot work: found at start, before anything is consumed."""


class InvalidRouteError(TriggerConfigError):
    """A route argument of the wrong type or value (the message names the route and the argument)."""


class TriggerFileError(TriggerConfigError):
    """A TOML routes file that is not valid; the message names the file, the line or the route."""


class SourceTopicMissingError(TriggerConfigError):
    """A route reads a topic that does not exist (pass ``create_missing=True`` to create it)."""


class TriggerRecordError(DurableKafkaError):
    """A source record a route cannot turn into a command; it goes to ``<hub>.deadletter``."""


class TriggerDecodeError(TriggerRecordError):
    """The route's decoder cannot read the record's value (bad JSON, bad UTF-8, wrong Avro)."""


class TemplateFieldMissingError(TriggerRecordError):
    """A template names a field the decoded record does not have."""


class RouteCallableError(TriggerRecordError):
    """A callable of the route (a field or the filter) raised on the record."""


class InstanceExistsError(TriggerRecordError):
    """A trigger start with ``reuse="fail"`` met an instance that already exists."""


class CodecError(DurableKafkaError):
    """Bytes that cannot be turned into a record (they go to the dead-letter topic)."""


class UnknownSchemaError(CodecError):
    """The record's schema fingerprint is not one this codec knows."""


class CorruptRecordError(CodecError):
    """Truncated bytes, a wrong marker, or a body that does not decode with its schema."""


class RecordEncodeError(CodecError, ValueError):
    """A record that cannot be encoded: not a known record type, or a field of the wrong type.

    Unlike the decode errors this is a bug in the code that built the record, not bad input.
    """


class IncompatibleSchemaError(CodecError):
    """A writer schema that is not valid Avro or that the current schema cannot resolve."""


class ClientError(DurableKafkaError):
    """A client call that cannot be carried out as asked."""


class InvalidInstanceIdError(ClientError, ValueError):
    """An instance id that breaks the id rules (length, reserved characters, leading '@')."""


class InstanceAlreadyExistsError(ClientError):
    """Starting an id whose instance is still pending, running or suspended."""


class InstanceNotFoundError(ClientError, KeyError):
    """The named instance does not exist (never started, or purged)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class InvalidArgumentError(ClientError, ValueError):
    """A client argument of the wrong type or value."""


class InstanceNotFailedError(ClientError):
    """``rewind_orchestration`` on an instance that is not FAILED: only failures can be rewound."""


class InvalidEntityIdError(ClientError, ValueError):
    """A string that is not an entity id ``@name@key`` (or an entity name containing '@')."""


class OrchestrationFailedError(ClientError):
    """An orchestration instance ended FAILED; ``failure_details`` says why (as in durabletask).

    Raised by ``OrchestrationState.raise_if_failed()`` so callers can turn a failed state into
    an exception without inspecting the status themselves.
    """

    def __init__(self, message: str, failure_details: Any) -> None:
        super().__init__(message)
        self.failure_details = failure_details


class PayloadTooLargeError(ClientError, ValueError):
    """A payload whose Kafka record would exceed the engine's record size limit.

    Raised by clients before anything is sent (so a caller learns at once, not from a timeout),
    and by the engine when a record it must write (a status snapshot, a history event, an entity
    state) cannot fit: the instance or operation then ends FAILED with this error's message
    instead of stalling its partition. ``size`` and ``limit`` are in bytes.
    """

    def __init__(self, what: str, size: int, limit: int, *, topic: str | None = None) -> None:
        self.what, self.size, self.limit, self.topic = what, size, limit, topic
        where = f" for topic {topic!r}" if topic else ""
        super().__init__(
            f"{what} is {size:,} bytes as a Kafka record{where}, over the limit of {limit:,} bytes "
            "(Kafka's message.max.bytes); pass large data by reference (a URL or a storage key)")


class PayloadUnavailableError(DurableKafkaError):
    """A payload stored outside its event (docs/PAYLOADS.md) cannot be read back.

    Its chunks are missing (purged, or never committed), do not add up to the recorded size
    or digest, or the reference is not one this payload store knows. The message names the
    instance (or entity) the payload belongs to and the reference, so the failing instance is
    found from the log line alone. Raised by clients reading a state, and inside the worker,
    where it fails the instance or operation that needed the payload (never a retry loop).
    """

    def __init__(self, instance_id: str | None, reference: str, reason: str) -> None:
        self.instance_id, self.reference, self.reason = instance_id, reference, reason
        owner = f"of instance {instance_id!r} " if instance_id else ""
        super().__init__(f"the large payload {owner}({reference[:160]}) is unavailable: {reason}")


class TimeoutError(ClientError, builtins.TimeoutError):  # noqa: A001 - deliberate: also the builtin one
    """Waiting for an instance took longer than the caller allowed."""


class OrchestrationError(DurableKafkaError):
    """Errors surfaced inside orchestrator code."""


class TaskFailedError(OrchestrationError):
    """An awaited task (activity, sub-orchestration, entity call) failed.

    ``details`` carries the failure as recorded in history: ``message``, ``error_type`` (the
    qualified class name), ``stack_trace`` and ``inner_failure``, so orchestrators can branch on
    the remote error type with ``details.is_caused_by(SomeError)``. Given an exception instead,
    the details are built from it.
    """

    def __init__(self, message: str, details: Any) -> None:
        super().__init__(message)
        if isinstance(details, BaseException):  # durabletask accepts the exception itself
            from durable_kafka.streams.events import FailureDetails

            details = FailureDetails.from_exception(details)
        self.details = details


class TaskCancelledError(OrchestrationError):
    """The result of a task that was cancelled (``task.cancel()``) was asked for."""


class NonDeterminismError(OrchestrationError):
    """Orchestrator code asked for a different action than its history recorded."""


class OrchestratorNotRegisteredError(OrchestrationError):
    """An ExecutionStarted event names an orchestrator that is not in the registry."""


class OrchestrationStateError(OrchestrationError):
    """A call that the orchestration's current state does not allow.

    Examples: feeding events to a live orchestration that already finished, yielding something
    that is not a task, nesting entity locks or calling an unlocked entity inside a critical
    section.
    """


class EntityError(DurableKafkaError):
    """Errors raised by the engine while it runs an entity operation (they fail that operation)."""


class EntityOperationNotFoundError(EntityError, AttributeError):
    """An operation name the entity does not implement (no such public method / not handled)."""


class BrokerError(DurableKafkaError):
    """The local development broker could not be assembled, started or reached."""


class KafkaConnectionError(BrokerError):
    """No working connection to the brokers: unreachable, or a listener that speaks another
    ``security.protocol``. Retrying will not help until the settings (or the network) change."""


class KafkaTlsError(KafkaConnectionError):
    """The TLS handshake failed: the broker's certificate is not trusted (``ssl.ca.location``),
    does not match the host name, or the broker refused the client certificate."""


class KafkaAuthenticationError(KafkaConnectionError):
    """The broker refused the SASL credentials: user, password or mechanism."""


class KafkaAuthorizationError(BrokerError):
    """The authenticated principal is not allowed an operation on a named resource.

    ``resource_type`` is ``topic``, ``group``, ``transactional_id`` or ``cluster``; ``resource``
    its name. Not retried: an ACL has to change first (docs/SECURITY.md lists what a hub needs).
    """

    def __init__(self, message: str, resource_type: str = "", resource: str = "") -> None:
        super().__init__(message)
        self.resource_type, self.resource = resource_type, resource


class ConsumerFatalError(BrokerError):
    """A worker's Kafka consumer failed with a fatal error and cannot consume any more.

    The case met in practice: with static group membership, a group coordinator that moved to
    another broker can fence the consumer's old member id ("static consumer fenced by other
    consumer with same group.instance.id"). librdkafka then stops the consumer for good. The
    processor reports it through ``Worker.errors()`` (the CLI exits for its supervisor), rather
    than polling a dead consumer and looking idle.
    """


class ProcessorStuckError(BrokerError):
    """A processor has been blocked inside one Kafka transactional call for too long.

    librdkafka can block in ``send_offsets_to_transaction`` past its timeout when the group
    coordinator went away (librdkafka issue #5456). The call cannot be interrupted from Python,
    so the worker reports this error and ``python -m durable_kafka worker`` exits; the restarted
    process fences the old producer and resumes from the last committed transaction.
    """


class ChangelogStalledError(BrokerError):
    """A changelog partition could not be restored to its end: a transaction on it stayed open.

    A worker restores a partition's state up to the end of its changelog, including the records
    of any transaction written there but not yet resolved (docs/DECISIONS.md, D21), so it waits
    for the broker to commit or abort each one. The broker aborts every transaction after the
    transaction timeout, so the wait is bounded; this error means it was not (a hanging
    transaction on the broker). The worker stops rather than run on state that may miss a
    committed transaction; a restart tries again.
    """
