"""Every error durable-kafka raises on purpose, under one root.

    DurableKafkaError
    ├── ConfigurationError          bad settings: hub name, partition counts, bootstrap
    │   └── PartitionCountMismatchError
    ├── CodecError                  bytes that cannot become a record
    │   ├── UnknownSchemaError      fingerprint not in the registry
    │   └── CorruptRecordError      truncated, bad marker, undecodable body
    ├── ClientError                 a client call that cannot be done as asked
    │   ├── InvalidInstanceIdError
    │   ├── InstanceAlreadyExistsError
    │   ├── InstanceNotFoundError
    │   ├── InvalidArgumentError
    │   └── TimeoutError            waiting on an instance took longer than allowed
    ├── OrchestrationError          raised inside orchestrator code
    │   ├── TaskFailedError         an awaited activity/sub-orchestration/entity call failed
    │   └── NonDeterminismError     orchestrator code diverged from its history
    └── BrokerError                 the local broker cannot be assembled/started

Callers catch the narrowest class they can act on; the messages name the specific thing
(the instance id, the sequence number, both partition counts) so the log line alone is enough.
"""

from __future__ import annotations

from typing import Any


class DurableKafkaError(Exception):
    """Root of every error raised deliberately by durable-kafka."""


class ConfigurationError(DurableKafkaError, ValueError):
    """Settings that cannot work: fix the configuration, retrying will not help."""


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


class CodecError(DurableKafkaError):
    """Bytes that cannot be turned into a record (they go to the dead-letter topic)."""


class UnknownSchemaError(CodecError):
    """The record's schema fingerprint is not one this codec knows."""


class CorruptRecordError(CodecError):
    """Truncated bytes, a wrong marker, or a body that does not decode with its schema."""


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


class TimeoutError(ClientError, TimeoutError):  # noqa: A001 - deliberate: also a builtin TimeoutError
    """Waiting for an instance took longer than the caller allowed."""


class OrchestrationError(DurableKafkaError):
    """Errors surfaced inside orchestrator code."""


class TaskFailedError(OrchestrationError):
    """An awaited task (activity, sub-orchestration, entity call) failed.

    ``details`` carries the failure as recorded in history: ``message``, ``error_type`` and
    ``stack_trace``, so orchestrators can branch on the remote error type.
    """

    def __init__(self, message: str, details: Any) -> None:
        super().__init__(message)
        self.details = details


class NonDeterminismError(OrchestrationError):
    """Orchestrator code asked for a different action than its history recorded."""


class BrokerError(DurableKafkaError):
    """The local development broker could not be assembled, started or reached."""
