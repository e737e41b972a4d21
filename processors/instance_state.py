"""How each history event changes an orchestration instance's state: the one applier table.

Read this file to learn what an instance *is* between steps. :class:`InstanceState` holds the
instance's header (status, output, failure, children ...) and the work it is waiting for (open
tasks, timers, entity requests, held locks). :data:`APPLIERS` maps every history event type
that changes it to one small function; an event type not in the table changes nothing.

The same table runs in three places, so "state is a fold of history" holds by construction:

* the live step (:mod:`.instance`) applies each event as it appends it to history (Zeebe's
  event-applying state writer: recording and applying are one operation);
* recovery after an executor-cache miss folds the stored history of the current execution
  (:func:`recover_open_work`);
* the audit (:mod:`durable_kafka.connectors.audit`) folds ``<hub>.history`` and compares the
  result with the status snapshots.

Two kinds of state are *not* history: a step's bookkeeping (recent message ids, events held
before a scheduled start, ``last_updated_at``, the custom status an episode reports) and the
header a StartOrchestration creates before its ExecutionStarted is recorded; the step in
:mod:`.instance` owns those. Appliers are pure functions of (state, event): no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from durable_kafka.streams import events as ev
from durable_kafka.streams.events import HistoryEvent, InstanceHeader
from durable_kafka.streams.status import OrchestrationStatus

__all__ = ["APPLIERS", "InstanceState", "apply_event", "fold_history", "recover_open_work", "to_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_ms(t: datetime) -> int:
    """Milliseconds since the epoch, rounded UP: a timer due at x.9995 s must not fire at x.999 s."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    delta = t - _EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1000 + -(-delta.microseconds // 1000)


@dataclass(kw_only=True)
class InstanceState:
    """One instance's state: its header and the work its current execution waits for."""

    instance_id: str
    header: InstanceHeader | None = None
    open_tasks: set[int] = field(default_factory=set)  # activity / sub-orchestration ids
    open_timers: dict[int, int] = field(default_factory=dict)  # timer id -> due ms
    open_requests: set[str] = field(default_factory=set)  # entity call / lock request ids
    locks: list[str] = field(default_factory=list)  # entities this instance holds locked
    #: events raised before the instance existed (not history: step bookkeeping, like the events
    #: held before a scheduled start); delivered after ExecutionStarted when the instance starts
    waiting: list[ev.HistoryRecord] = field(default_factory=list)

    @property
    def status(self) -> OrchestrationStatus:
        """The runtime status (PENDING while no header exists yet)."""
        return self.header.runtime_status if self.header is not None else OrchestrationStatus.PENDING


# --------------------------------------------------------------------------- the appliers


def _execution_started(s: InstanceState, e: ev.ExecutionStarted) -> None:
    """A new execution runs: a fresh header (unless the step already made it) and no open work."""
    h = s.header
    if h is None or h.execution_id != e.execution_id:
        h = s.header = InstanceHeader(
            instance_id=s.instance_id, name=e.name, execution_id=e.execution_id,
            runtime_status=OrchestrationStatus.RUNNING, created_at=e.timestamp, last_updated_at=e.timestamp,
            input=e.input, parent_instance_id=e.parent_instance_id, parent_execution_id=e.parent_execution_id,
            parent_task_id=e.parent_task_id, tags=dict(e.tags), version=e.version)
    h.runtime_status = OrchestrationStatus.RUNNING
    h.output = h.failure_details = None
    s.open_tasks, s.open_timers, s.open_requests, s.locks = set(), {}, set(), []


def _execution_completed(s: InstanceState, e: ev.ExecutionCompleted) -> None:
    """The code returned or failed. Open work is left as it was: the step reads it to cancel it."""
    if s.header is not None:
        s.header.runtime_status = e.runtime_status
        s.header.output, s.header.failure_details = e.result, e.failure_details


def _execution_terminated(s: InstanceState, e: ev.ExecutionTerminated) -> None:
    if s.header is not None:
        s.header.runtime_status = OrchestrationStatus.TERMINATED
        s.header.output, s.header.failure_details = e.input, None


def _continued_as_new(s: InstanceState, e: ev.ContinueAsNew) -> None:
    if s.header is not None:
        s.header.runtime_status = OrchestrationStatus.CONTINUED_AS_NEW


def _execution_rewound(s: InstanceState, e: ev.ExecutionRewound) -> None:
    """A FAILED execution runs again: RUNNING, no failure, its failed tasks open again. The
    locks it held were released when it failed."""
    if s.header is not None:
        s.header.runtime_status = OrchestrationStatus.RUNNING
        s.header.output = s.header.failure_details = None
    s.open_tasks.update(e.reopened_task_ids)
    s.locks = []


def _suspended(s: InstanceState, e: ev.ExecutionSuspended) -> None:
    # only a running execution suspends: one that ended earlier in the same episode stays ended
    if s.header is not None and s.header.runtime_status == OrchestrationStatus.RUNNING:
        s.header.runtime_status = OrchestrationStatus.SUSPENDED


def _resumed(s: InstanceState, e: ev.ExecutionResumed) -> None:
    if s.header is not None and s.header.runtime_status == OrchestrationStatus.SUSPENDED:
        s.header.runtime_status = OrchestrationStatus.RUNNING


def _task_scheduled(s: InstanceState, e: ev.TaskScheduled) -> None:
    s.open_tasks.add(e.event_id)


def _sub_orchestration_created(s: InstanceState, e: ev.SubOrchestrationInstanceCreated) -> None:
    s.open_tasks.add(e.event_id)
    if s.header is not None and e.instance_id not in s.header.children:
        s.header.children.append(e.instance_id)


def _task_done(s: InstanceState, e: Any) -> None:
    """TaskCompleted/Failed and SubOrchestrationInstanceCompleted/Failed: the task is no longer open."""
    s.open_tasks.discard(e.task_scheduled_id)


def _timer_created(s: InstanceState, e: ev.TimerCreated) -> None:
    s.open_timers[e.event_id] = to_ms(e.fire_at)


def _timer_fired(s: InstanceState, e: ev.TimerFired) -> None:
    s.open_timers.pop(e.timer_id, None)


def _entity_called(s: InstanceState, e: ev.EntityOperationCalled) -> None:
    s.open_requests.add(e.request_id)


def _entity_answered(s: InstanceState, e: Any) -> None:
    """EntityOperationCompleted/Failed: the call is no longer open."""
    s.open_requests.discard(e.request_id)


def _lock_requested(s: InstanceState, e: ev.EntityLockRequested) -> None:
    s.open_requests.add(e.critical_section_id)
    s.locks = list(e.lock_set)  # held from the request on: an end releases them even if not yet granted


def _lock_granted(s: InstanceState, e: ev.EntityLockGranted) -> None:
    s.open_requests.discard(e.critical_section_id)


def _unlock_sent(s: InstanceState, e: ev.EntityUnlockSent) -> None:
    if e.target_instance_id in s.locks:
        s.locks.remove(e.target_instance_id)


APPLIERS: dict[type, Callable[[InstanceState, Any], None]] = {
    ev.ExecutionStarted: _execution_started,
    ev.ExecutionCompleted: _execution_completed,
    ev.ExecutionTerminated: _execution_terminated,
    ev.ContinueAsNew: _continued_as_new,
    ev.ExecutionSuspended: _suspended,
    ev.ExecutionResumed: _resumed,
    ev.TaskScheduled: _task_scheduled,
    ev.TaskCompleted: _task_done,
    ev.TaskFailed: _task_done,
    ev.SubOrchestrationInstanceCreated: _sub_orchestration_created,
    ev.SubOrchestrationInstanceCompleted: _task_done,
    ev.SubOrchestrationInstanceFailed: _task_done,
    ev.TimerCreated: _timer_created,
    ev.TimerFired: _timer_fired,
    ev.EntityOperationCalled: _entity_called,
    ev.EntityOperationCompleted: _entity_answered,
    ev.EntityOperationFailed: _entity_answered,
    ev.EntityLockRequested: _lock_requested,
    ev.EntityLockGranted: _lock_granted,
    ev.EntityUnlockSent: _unlock_sent,
    ev.ExecutionRewound: _execution_rewound,
}
"""Event type -> applier. Not listed (no effect on instance state): OrchestratorStarted,
OrchestratorCompleted, EventRaised, EventSent, EntityOperationSignaled."""


def apply_event(state: InstanceState, event: HistoryEvent) -> None:
    """Apply one history event to ``state`` through its applier (no-op for the others)."""
    applier = APPLIERS.get(type(event))
    if applier is not None:
        applier(state, event)


def fold_history(state: InstanceState, events: Iterable[HistoryEvent]) -> InstanceState:
    """Apply ``events`` in order to ``state`` and return it."""
    for event in events:
        apply_event(state, event)
    return state


def recover_open_work(instance_id: str, history: Iterable[HistoryEvent]) -> InstanceState:
    """The state the current execution's stored history folds to (after an executor-cache miss).

    The stored header stays authoritative for the header fields; what recovery takes from the
    fold is the open work (tasks, timers, entity requests, locks), which is not stored apart.
    """
    return fold_history(InstanceState(instance_id=instance_id), history)
