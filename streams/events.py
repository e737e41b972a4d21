"""The event model: every record that crosses Kafka, as plain dataclasses.

This module is the contract between the executor, the processors, the client and the Avro
codec. Each dataclass here has an Avro schema of the same name in ``schemas/<Name>.avsc``
(namespace ``durable_kafka``) whose fields are exactly the dataclass fields, in order, with
the same names. Python types map to Avro as:

    str -> string, int -> long, bool -> boolean, bytes -> bytes,
    a str Enum (OrchestrationStatus) -> string holding the member's value,
    datetime -> long (logicalType timestamp-millis, always UTC),
    X | None -> ["null", X] with default null,
    dict[str, str] -> map<string> (default {}), list[X] -> array<X> (default []),
    a dataclass -> that record, a Union of dataclasses -> an Avro union of those records.

Names are past tense for facts (history events) and imperative for commands, as in the
Durable Task history model. User payloads (inputs, outputs, event data, custom status) are
JSON text, never decoded by the engine.

Every message carries an ``id`` that lets its consumer drop a duplicate delivery.
"""

from __future__ import annotations

import dataclasses
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from typing import Union

from durable_kafka.streams.failures import error_type_matches, qualified_name
from durable_kafka.streams.status import OrchestrationStatus

# --------------------------------------------------------------------------- shared records


@dataclass
class FailureDetails:
    """Why a task, an entity operation or an orchestration failed (kept in history).

    ``error_type`` is the qualified exception class name (``builtins.ValueError``), as
    durabletask records it; histories written before that hold bare names, which
    :meth:`is_caused_by` still matches. ``inner_failure`` is the cause chain
    (``__cause__`` / ``__context__``, or the failed task behind an orchestration failure).
    """

    message: str
    error_type: str
    stack_trace: str | None = None
    inner_failure: FailureDetails | None = None

    def is_caused_by(self, exception_type: str | type[BaseException]) -> bool:
        """True if this failure's own type is ``exception_type`` (a type: or a subclass of it).

        A type matches subclasses already loaded in this process; a name string matches the
        qualified or the short name. Inner failures are not searched (durabletask's rule).
        """
        return error_type_matches(self.error_type, exception_type)

    @classmethod
    def from_exception(cls, error: BaseException, *, stack_trace: str | None = None) -> FailureDetails:
        """The details of ``error``: qualified type name, message, stack, and its cause chain.

        The chain follows ``__cause__`` else ``__context__`` (not when suppressed with
        ``from None``), stops at a cycle and after 10 links, as durabletask does.
        """
        if stack_trace is None:
            stack_trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        seen = {id(error)}
        head = cls(message=str(error), error_type=qualified_name(type(error)), stack_trace=stack_trace)
        tail, current = head, error
        while len(seen) <= _MAX_INNER_FAILURES:
            inner = current.__cause__ if current.__cause__ is not None else (
                None if current.__suppress_context__ else current.__context__)
            if not isinstance(inner, Exception) or id(inner) in seen:
                break
            seen.add(id(inner))
            tail.inner_failure = cls(
                message=str(inner), error_type=qualified_name(type(inner)),
                stack_trace="".join(traceback.format_exception(type(inner), inner, inner.__traceback__, chain=False)))
            tail, current = tail.inner_failure, inner
        return head


_MAX_INNER_FAILURES = 10


# --------------------------------------------------------------------------- history events
# ``event_id`` is the sequence number of the action for scheduling events (TaskScheduled,
# TimerCreated, SubOrchestrationInstanceCreated, EventSent, EntityOperationCalled,
# EntityOperationSignaled, EntityLockRequested, EntityUnlockSent) and -1 for all others,
# as in Durable Task. Completion events point back through ``task_scheduled_id`` /
# ``timer_id`` / ``request_id``.


@dataclass
class HistoryEvent:
    """Base of every history event; not itself an Avro record."""

    event_id: int
    timestamp: datetime


@dataclass
class ExecutionStarted(HistoryEvent):
    name: str
    execution_id: str
    input: str | None = None
    parent_instance_id: str | None = None
    parent_execution_id: str | None = None
    parent_task_id: int | None = None
    scheduled_start_at: datetime | None = None
    tags: dict[str, str] = field(default_factory=dict)
    version: str | None = None


@dataclass
class ExecutionCompleted(HistoryEvent):
    runtime_status: OrchestrationStatus  # COMPLETED or FAILED
    result: str | None = None
    failure_details: FailureDetails | None = None


@dataclass
class ExecutionTerminated(HistoryEvent):
    input: str | None = None  # the output given to terminate()
    recurse: bool = True


@dataclass
class ExecutionSuspended(HistoryEvent):
    input: str | None = None  # reason


@dataclass
class ExecutionResumed(HistoryEvent):
    input: str | None = None  # reason


@dataclass
class TaskScheduled(HistoryEvent):
    name: str
    input: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class TaskCompleted(HistoryEvent):
    task_scheduled_id: int
    result: str | None = None


@dataclass
class TaskFailed(HistoryEvent):
    task_scheduled_id: int
    failure_details: FailureDetails


@dataclass
class SubOrchestrationInstanceCreated(HistoryEvent):
    name: str
    instance_id: str
    input: str | None = None


@dataclass
class SubOrchestrationInstanceCompleted(HistoryEvent):
    task_scheduled_id: int
    result: str | None = None


@dataclass
class SubOrchestrationInstanceFailed(HistoryEvent):
    task_scheduled_id: int
    failure_details: FailureDetails


@dataclass
class TimerCreated(HistoryEvent):
    fire_at: datetime


@dataclass
class TimerFired(HistoryEvent):
    timer_id: int
    fire_at: datetime


@dataclass
class EventRaised(HistoryEvent):
    name: str
    input: str | None = None


@dataclass
class EventSent(HistoryEvent):
    instance_id: str
    name: str
    input: str | None = None


@dataclass
class OrchestratorStarted(HistoryEvent):
    """Opens an episode; its timestamp is ``current_utc_datetime`` during that episode."""


@dataclass
class OrchestratorCompleted(HistoryEvent):
    """Closes an episode."""


@dataclass
class ContinueAsNew(HistoryEvent):
    input: str | None = None
    save_events: bool = False


@dataclass
class EntityOperationSignaled(HistoryEvent):
    request_id: str
    operation: str
    target_instance_id: str
    input: str | None = None
    scheduled_time: datetime | None = None


@dataclass
class EntityOperationCalled(HistoryEvent):
    request_id: str
    operation: str
    target_instance_id: str
    input: str | None = None
    parent_instance_id: str | None = None


@dataclass
class EntityOperationCompleted(HistoryEvent):
    request_id: str
    output: str | None = None


@dataclass
class EntityOperationFailed(HistoryEvent):
    request_id: str
    failure_details: FailureDetails


@dataclass
class EntityLockRequested(HistoryEvent):
    critical_section_id: str
    lock_set: list[str] = field(default_factory=list)
    position: int = 0
    parent_instance_id: str | None = None


@dataclass
class EntityLockGranted(HistoryEvent):
    critical_section_id: str


@dataclass
class EntityUnlockSent(HistoryEvent):
    critical_section_id: str
    target_instance_id: str
    parent_instance_id: str | None = None


@dataclass
class ExecutionRewound(HistoryEvent):
    """A FAILED execution runs again (``Client.rewind_orchestration``).

    The failures of ``reopened_task_ids`` recorded before this event, and the ExecutionCompleted
    before it, leave the effective history the executor replays; those tasks are scheduled again.
    """

    reason: str | None = None
    reopened_task_ids: list[int] = field(default_factory=list)


HISTORY_EVENT_TYPES: tuple[type[HistoryEvent], ...] = (
    ExecutionStarted,
    ExecutionCompleted,
    ExecutionTerminated,
    ExecutionSuspended,
    ExecutionResumed,
    TaskScheduled,
    TaskCompleted,
    TaskFailed,
    SubOrchestrationInstanceCreated,
    SubOrchestrationInstanceCompleted,
    SubOrchestrationInstanceFailed,
    TimerCreated,
    TimerFired,
    EventRaised,
    EventSent,
    OrchestratorStarted,
    OrchestratorCompleted,
    ContinueAsNew,
    EntityOperationSignaled,
    EntityOperationCalled,
    EntityOperationCompleted,
    EntityOperationFailed,
    EntityLockRequested,
    EntityLockGranted,
    EntityUnlockSent,
    ExecutionRewound,
)

AnyHistoryEvent = Union[
    ExecutionStarted,
    ExecutionCompleted,
    ExecutionTerminated,
    ExecutionSuspended,
    ExecutionResumed,
    TaskScheduled,
    TaskCompleted,
    TaskFailed,
    SubOrchestrationInstanceCreated,
    SubOrchestrationInstanceCompleted,
    SubOrchestrationInstanceFailed,
    TimerCreated,
    TimerFired,
    EventRaised,
    EventSent,
    OrchestratorStarted,
    OrchestratorCompleted,
    ContinueAsNew,
    EntityOperationSignaled,
    EntityOperationCalled,
    EntityOperationCompleted,
    EntityOperationFailed,
    EntityLockRequested,
    EntityLockGranted,
    EntityUnlockSent,
    ExecutionRewound,
]


@dataclass
class HistoryRecord:
    """One history event of one execution: the value on ``<hub>.history`` and in the changelog.

    ``id`` is ``"<instance_id>/<execution_id>/<index>"``: unique, so an auditor replaying the
    topic drops duplicates by it; ``index`` is the event's position in its execution's history.
    """

    id: str
    instance_id: str
    execution_id: str
    index: int
    event: AnyHistoryEvent


@dataclass
class HistoryBatch:
    """The history events one orchestration step recorded, in order: one record per step.

    Why a batch (docs/DECISIONS.md D20): a step records its events together (OrchestratorStarted,
    the completions it applied, the actions it scheduled, OrchestratorCompleted), and one record
    per event made history the bulk of what the engine wrote to Kafka, twice (``<hub>.history``
    and the changelog). Event ``i`` of the batch is at position ``index + i`` of its execution's
    history and keeps the per-event id ``"<instance_id>/<execution_id>/<index + i>"``, so readers
    that go through :func:`history_records` see exactly the ``HistoryRecord`` values a per-event
    writer would have produced. ``id`` is ``"<instance_id>/<execution_id>/<index>+<count>"``.
    """

    id: str
    instance_id: str
    execution_id: str
    index: int
    events: list[AnyHistoryEvent] = field(default_factory=list)


def batch_id(instance_id: str, execution_id: str, index: int, count: int) -> str:
    return f"{instance_id}/{execution_id}/{index}+{count}"


def history_records(value: object) -> list[HistoryRecord]:
    """The ``HistoryRecord`` of each event a value of ``<hub>.history`` (or its changelog) holds.

    A ``HistoryRecord`` (what releases before D20 wrote, and what entities still write) is
    itself; a ``HistoryBatch`` is expanded event by event; anything else (a tombstone, another
    record type) holds none.
    """
    if isinstance(value, HistoryRecord):
        return [value]
    if isinstance(value, HistoryBatch):
        iid, xid, first = value.instance_id, value.execution_id, value.index
        return [HistoryRecord(id=f"{iid}/{xid}/{first + i}", instance_id=iid, execution_id=xid, index=first + i, event=e)
                for i, e in enumerate(value.events)]
    return []


def history_events(value: object) -> list[AnyHistoryEvent]:
    """The events of one history value (``HistoryRecord`` or ``HistoryBatch``), in order."""
    if isinstance(value, HistoryBatch):
        return list(value.events)
    if isinstance(value, HistoryRecord):
        return [value.event]
    return []


# --------------------------------------------------------------------------- orchestrator commands
# Bodies of OrchestratorMessage on ``<hub>.orchestrator-events`` (key = target instance id).


@dataclass
class StartOrchestration:
    name: str
    execution_id: str
    input: str | None = None
    scheduled_start_at: datetime | None = None
    tags: dict[str, str] = field(default_factory=dict)
    parent_instance_id: str | None = None
    parent_execution_id: str | None = None
    parent_task_id: int | None = None
    carried_events: list[EventRaised] = field(default_factory=list)  # restart/continue_as_new
    if_exists: str | None = None  # trigger starts: None (client rule), "skip", "fail", "replace"
    source: str | None = None  # trigger starts: "route|topic|partition|offset"
    version: str | None = None  # the orchestration version (VersioningOptions, docs/VERSIONING.md)


@dataclass
class RaiseEvent:
    name: str
    input: str | None = None


@dataclass
class TerminateOrchestration:
    output: str | None = None
    recursive: bool = True


@dataclass
class SuspendOrchestration:
    reason: str | None = None


@dataclass
class ResumeOrchestration:
    reason: str | None = None


@dataclass
class PurgeOrchestration:
    recursive: bool = True


@dataclass
class RewindOrchestration:
    """Resume a FAILED instance as if its failed tasks had not failed yet (docs/REWIND.md)."""

    reason: str | None = None


@dataclass
class ActivityResult:
    """An activity worker's answer to an ActivityRequest (one of result / failure_details)."""

    execution_id: str
    task_id: int
    result: str | None = None
    failure_details: FailureDetails | None = None


@dataclass
class SubOrchestrationResult:
    """A child instance telling its parent how it ended."""

    execution_id: str  # the parent's execution id
    task_id: int
    result: str | None = None
    failure_details: FailureDetails | None = None


@dataclass
class EntityResponse:
    """An entity's answer to an orchestration's call (or a lock grant)."""

    execution_id: str
    request_id: str
    result: str | None = None
    failure_details: FailureDetails | None = None
    lock_granted: bool = False


OrchestratorCommand = Union[
    StartOrchestration,
    RaiseEvent,
    TerminateOrchestration,
    SuspendOrchestration,
    ResumeOrchestration,
    PurgeOrchestration,
    ActivityResult,
    SubOrchestrationResult,
    EntityResponse,
    RewindOrchestration,
]


@dataclass
class OrchestratorMessage:
    """Envelope of everything sent to an orchestration instance.

    ``reply_to`` names the client whose request wants an answer on ``<hub>.replies``.
    """

    id: str
    instance_id: str
    sent_at: datetime
    body: OrchestratorCommand
    reply_to: str | None = None


# --------------------------------------------------------------------------- activities


@dataclass
class ActivityRequest:
    """Work for an activity worker on ``<hub>.activity-requests`` (key = instance id)."""

    id: str  # "<instance>/<execution>/<task_id>": a redelivery has the same id
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    attempt: int = 1


# --------------------------------------------------------------------------- timers


@dataclass
class TimerRecord:
    """A durable timer in the partition-local due-time index (changelog value)."""

    instance_id: str
    execution_id: str
    timer_id: int
    fire_at: datetime


# --------------------------------------------------------------------------- entities


@dataclass
class SignalEntity:
    operation: str
    input: str | None = None
    scheduled_time: datetime | None = None
    parent_instance_id: str | None = None  # the sender, for ordering per sender


@dataclass
class CallEntity:
    operation: str
    request_id: str
    parent_instance_id: str
    parent_execution_id: str
    input: str | None = None


@dataclass
class LockEntities:
    """Acquire the lock on this entity, then pass the request to ``lock_set[position + 1]``."""

    critical_section_id: str
    lock_set: list[str]
    position: int
    parent_instance_id: str
    parent_execution_id: str


@dataclass
class UnlockEntity:
    critical_section_id: str
    parent_instance_id: str


EntityCommand = Union[SignalEntity, CallEntity, LockEntities, UnlockEntity]


@dataclass
class EntityMessage:
    """Envelope of everything sent to an entity on ``<hub>.entity-operations`` (key = @name@key)."""

    id: str
    entity_id: str
    sent_at: datetime
    body: EntityCommand


@dataclass
class EntityState:
    """An entity's durable state, lock and queued operations (changelog value)."""

    entity_id: str
    state: str | None = None
    last_modified: datetime | None = None
    lock_owner: str | None = None
    critical_section_id: str | None = None
    queued: list[EntityMessage] = field(default_factory=list)
    recent_ids: list[str] = field(default_factory=list)
    execution_id: str | None = None  # names this incarnation's history (new after a clean-up)
    history_length: int = 0  # operations recorded on <hub>.history (the next HistoryRecord.index)


# --------------------------------------------------------------------------- status, replies, dead letters


@dataclass
class InstanceStatus:
    """The status snapshot on the compacted ``<hub>.status`` topic (key = instance id)."""

    instance_id: str
    name: str
    execution_id: str
    runtime_status: OrchestrationStatus
    created_at: datetime
    last_updated_at: datetime
    input: str | None = None
    output: str | None = None
    custom_status: str | None = None
    failure_details: FailureDetails | None = None
    parent_instance_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    history_length: int = 0
    version: str | None = None


@dataclass
class ClientReply:
    """The owning processor's answer to a client request (``<hub>.replies``, key = client id)."""

    request_id: str
    instance_id: str
    accepted: bool
    error_type: str | None = None
    message: str | None = None


@dataclass
class DeadLetter:
    """A record that could not be decoded or applied, kept with the reason (``<hub>.deadletter``)."""

    id: str
    topic: str
    partition: int
    offset: int
    original: bytes
    reason: str
    error_type: str
    failed_at: datetime
    key: bytes | None = None
    instance_id: str | None = None
    original_size: int | None = None
    original_sha256: str | None = None
    original_truncated: bool = False
    key_truncated: bool = False
    timestamp: datetime | None = None


# --------------------------------------------------------------------------- processor state


@dataclass
class InstanceHeader:
    """An orchestration instance's state in the processor store (history kept under its own keys).

    ``pending`` holds new events not yet run by the orchestrator (while suspended or before a
    scheduled start); ``recent_ids`` the ids of the last messages applied, to drop redeliveries.
    """

    instance_id: str
    name: str
    execution_id: str
    runtime_status: OrchestrationStatus
    created_at: datetime
    last_updated_at: datetime
    input: str | None = None
    output: str | None = None
    custom_status: str | None = None
    failure_details: FailureDetails | None = None
    parent_instance_id: str | None = None
    parent_execution_id: str | None = None
    parent_task_id: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    history_length: int = 0
    pending: list[HistoryRecord] = field(default_factory=list)
    recent_ids: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    version: str | None = None
    #: events held because this worker's VersioningOptions reject the version (REJECT strategy);
    #: they run once a worker that accepts it owns the partition (docs/VERSIONING.md)
    parked: list[HistoryRecord] = field(default_factory=list)


# --------------------------------------------------------------------------- routing


@dataclass
class WorkerRegistration:
    """What one worker hosts, on ``<hub>.workers`` (compacted, key = worker id).

    Written when the worker starts and again every ``heartbeat_ms`` while it runs; a tombstone
    when it stops cleanly. Readers count a registration as live while its ``heartbeat_at`` is
    younger than three heartbeats (a worker killed with -9 leaves a record that goes stale).
    ``all_activities``: the worker cleared its work-item filters and takes every activity
    request of the hub (docs/ROUTING.md).
    """

    worker_id: str
    heartbeat_at: datetime
    heartbeat_ms: int
    orchestrations: list[str] = field(default_factory=list)
    activities: list[str] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)
    all_activities: bool = False


RECORD_TYPES: tuple[type, ...] = (
    FailureDetails,
    *HISTORY_EVENT_TYPES,
    HistoryRecord,
    HistoryBatch,
    StartOrchestration,
    RaiseEvent,
    TerminateOrchestration,
    SuspendOrchestration,
    ResumeOrchestration,
    PurgeOrchestration,
    ActivityResult,
    SubOrchestrationResult,
    EntityResponse,
    RewindOrchestration,
    OrchestratorMessage,
    ActivityRequest,
    TimerRecord,
    SignalEntity,
    CallEntity,
    LockEntities,
    UnlockEntity,
    EntityMessage,
    EntityState,
    InstanceStatus,
    ClientReply,
    DeadLetter,
    InstanceHeader,
    WorkerRegistration,
)
"""Every record type with its own schema file, dependencies first."""

#: The records a consumer may read as a top-level Kafka value (the codec registers these).
TOP_LEVEL_TYPES: tuple[type, ...] = (
    HistoryRecord,
    HistoryBatch,
    OrchestratorMessage,
    ActivityRequest,
    TimerRecord,
    EntityMessage,
    EntityState,
    InstanceStatus,
    ClientReply,
    DeadLetter,
    InstanceHeader,
    WorkerRegistration,
)


def fields_of(cls: type) -> list[dataclasses.Field]:
    """The Avro fields of a record type, in schema order."""
    return list(dataclasses.fields(cls))
