"""Actions: what one executor step asks the orchestration processor to do.

Each scheduling action has the sequence number (``id``) the orchestrator code gave it, and
maps one-to-one to the history event the processor records for it (:func:`action_to_event`).
On replay those history events are matched back to the actions the code produces again, which
is how non-determinism is detected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Union

from durable_kafka.streams.events import (
    ContinueAsNew,
    EntityLockRequested,
    EntityOperationCalled,
    EntityOperationSignaled,
    EntityUnlockSent,
    EventRaised,
    EventSent,
    ExecutionCompleted,
    ExecutionTerminated,
    FailureDetails,
    HistoryEvent,
    SubOrchestrationInstanceCreated,
    TaskScheduled,
    TimerCreated,
)
from durable_kafka.streams.status import OrchestrationStatus


@dataclass(frozen=True)
class ScheduleTask:
    """Run an activity (``input`` is JSON text)."""

    id: int
    name: str
    input: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateTimer:
    """Wake the orchestration with TimerFired(timer_id=id) at ``fire_at``."""

    id: int
    fire_at: datetime


@dataclass(frozen=True)
class CreateSubOrchestration:
    """Start the child orchestration ``name`` as ``instance_id``."""

    id: int
    name: str
    instance_id: str
    input: str | None = None
    version: str | None = None  # the child's orchestration version (recorded in its ExecutionStarted)


@dataclass(frozen=True)
class SendEvent:
    """Raise event ``name`` on another instance (``data`` is JSON text)."""

    id: int
    instance_id: str
    name: str
    data: str | None = None


@dataclass(frozen=True)
class SignalEntityAction:
    """A one-way entity operation."""

    id: int
    entity_id: str
    operation: str
    input: str | None
    request_id: str
    scheduled_time: datetime | None = None


@dataclass(frozen=True)
class CallEntityAction:
    """An entity operation whose result comes back as EntityOperationCompleted/Failed(request_id)."""

    id: int
    entity_id: str
    operation: str
    input: str | None
    request_id: str


@dataclass(frozen=True)
class LockEntitiesAction:
    """Acquire the locks of ``lock_set`` (sorted, de-duplicated: the global lock order)."""

    id: int
    critical_section_id: str
    lock_set: tuple[str, ...]


@dataclass(frozen=True)
class UnlockEntityAction:
    """Release one entity locked by the critical section."""

    id: int
    entity_id: str
    critical_section_id: str


@dataclass(frozen=True)
class CompleteOrchestration:
    """End this execution.

    ``result`` is the JSON output (COMPLETED, TERMINATED); ``new_input`` the JSON input of the
    next execution and ``carryover_events`` the unconsumed events it starts with
    (CONTINUED_AS_NEW with ``save_events=True``).
    """

    status: OrchestrationStatus  # COMPLETED, FAILED, TERMINATED or CONTINUED_AS_NEW
    result: str | None = None
    failure_details: FailureDetails | None = None
    new_input: str | None = None
    carryover_events: list[EventRaised] = field(default_factory=list)
    save_events: bool = False


Action = Union[
    ScheduleTask,
    CreateTimer,
    CreateSubOrchestration,
    SendEvent,
    SignalEntityAction,
    CallEntityAction,
    LockEntitiesAction,
    UnlockEntityAction,
    CompleteOrchestration,
]

#: The actions that carry a sequence number and are matched against history on replay.
SCHEDULING_ACTIONS: tuple[type, ...] = (
    ScheduleTask,
    CreateTimer,
    CreateSubOrchestration,
    SendEvent,
    SignalEntityAction,
    CallEntityAction,
    LockEntitiesAction,
    UnlockEntityAction,
)


# --------------------------------------------------------------------------- action -> history event


def _schedule_task(a: ScheduleTask, ts: datetime, iid: str | None) -> HistoryEvent:
    return TaskScheduled(event_id=a.id, timestamp=ts, name=a.name, input=a.input, tags=dict(a.tags))


def _create_timer(a: CreateTimer, ts: datetime, iid: str | None) -> HistoryEvent:
    return TimerCreated(event_id=a.id, timestamp=ts, fire_at=a.fire_at)


def _create_sub(a: CreateSubOrchestration, ts: datetime, iid: str | None) -> HistoryEvent:
    return SubOrchestrationInstanceCreated(
        event_id=a.id, timestamp=ts, name=a.name, instance_id=a.instance_id, input=a.input
    )


def _send_event(a: SendEvent, ts: datetime, iid: str | None) -> HistoryEvent:
    return EventSent(event_id=a.id, timestamp=ts, instance_id=a.instance_id, name=a.name, input=a.data)


def _signal_entity(a: SignalEntityAction, ts: datetime, iid: str | None) -> HistoryEvent:
    return EntityOperationSignaled(
        event_id=a.id, timestamp=ts, request_id=a.request_id, operation=a.operation,
        target_instance_id=a.entity_id, input=a.input, scheduled_time=a.scheduled_time,
    )


def _call_entity(a: CallEntityAction, ts: datetime, iid: str | None) -> HistoryEvent:
    return EntityOperationCalled(
        event_id=a.id, timestamp=ts, request_id=a.request_id, operation=a.operation,
        target_instance_id=a.entity_id, input=a.input, parent_instance_id=iid,
    )


def _lock_entities(a: LockEntitiesAction, ts: datetime, iid: str | None) -> HistoryEvent:
    return EntityLockRequested(
        event_id=a.id, timestamp=ts, critical_section_id=a.critical_section_id,
        lock_set=list(a.lock_set), position=0, parent_instance_id=iid,
    )


def _unlock_entity(a: UnlockEntityAction, ts: datetime, iid: str | None) -> HistoryEvent:
    return EntityUnlockSent(
        event_id=a.id, timestamp=ts, critical_section_id=a.critical_section_id,
        target_instance_id=a.entity_id, parent_instance_id=iid,
    )


def _complete(a: CompleteOrchestration, ts: datetime, iid: str | None) -> HistoryEvent:
    return _COMPLETION_EVENTS[a.status](a, ts)


_COMPLETION_EVENTS: dict[OrchestrationStatus, Callable[[CompleteOrchestration, datetime], HistoryEvent]] = {
    OrchestrationStatus.COMPLETED: lambda a, ts: ExecutionCompleted(
        -1, ts, runtime_status=OrchestrationStatus.COMPLETED, result=a.result
    ),
    OrchestrationStatus.FAILED: lambda a, ts: ExecutionCompleted(
        -1, ts, runtime_status=OrchestrationStatus.FAILED, failure_details=a.failure_details
    ),
    OrchestrationStatus.TERMINATED: lambda a, ts: ExecutionTerminated(-1, ts, input=a.result),
    OrchestrationStatus.CONTINUED_AS_NEW: lambda a, ts: ContinueAsNew(
        -1, ts, input=a.new_input, save_events=a.save_events
    ),
}

_ACTION_EVENTS: dict[type, Callable[..., HistoryEvent]] = {
    ScheduleTask: _schedule_task,
    CreateTimer: _create_timer,
    CreateSubOrchestration: _create_sub,
    SendEvent: _send_event,
    SignalEntityAction: _signal_entity,
    CallEntityAction: _call_entity,
    LockEntitiesAction: _lock_entities,
    UnlockEntityAction: _unlock_entity,
    CompleteOrchestration: _complete,
}


def action_to_event(action: Action, timestamp: datetime, instance_id: str | None = None) -> HistoryEvent:
    """The history event the processor records for ``action`` at ``timestamp``.

    ``instance_id`` (the orchestration's own id) fills ``parent_instance_id`` of the entity
    events that need it.
    """
    return _ACTION_EVENTS[type(action)](action, timestamp, instance_id)
