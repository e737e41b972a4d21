"""The pure replay executor: (history, new events) -> (actions, status).

No Kafka, no store, no clock: time comes only from OrchestratorStarted timestamps. The
orchestration processor calls it; tests call it with plain event lists.

Two forms:

* ``OrchestrationExecutor(registry).execute(instance_id, old_events, new_events)`` replays
  ``old_events`` and returns the actions caused by ``new_events`` (durabletask's shape).
* The incremental form that keeps a running orchestration between batches, so an execution of
  n steps costs O(n) overall instead of O(n^2) re-replays::

      live = executor.start(instance_id)
      live.apply(history)            # replay (is_replaying True); only on a cache miss
      result = live.step(new_events) # the NEW actions only

  Actions returned by ``step`` count as recorded: the processor writes
  ``action_to_event(action, ts)`` for them into history, and need not feed those events back
  (a fed-back scheduling event for an already returned action is ignored). A live
  orchestration whose end has been returned (or replayed from history) is finished:
  ``apply``/``step`` on it raise :class:`OrchestrationStateError` (check ``is_finished``).

Replay semantics follow durabletask-python: scheduling events are matched by sequence number to
the actions the code makes again; a mismatch fails the instance with a NonDeterminismError
naming the position, the call in history and the call made now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from durable_kafka.errors import (
    ConfigurationError,
    NonDeterminismError,
    OrchestrationStateError,
    OrchestratorNotRegisteredError,
)
from durable_kafka.streams import events as ev
from durable_kafka.streams.events import FailureDetails, HistoryEvent
from durable_kafka.streams.status import OrchestrationStatus
from durable_kafka.task import RetryableTask, TimerTask, get_name
from durable_kafka.versioning import VersioningOptions, version_failure

from .actions import (
    Action,
    CallEntityAction,
    CompleteOrchestration,
    CreateSubOrchestration,
    CreateTimer,
    LockEntitiesAction,
    ScheduleTask,
    SendEvent,
    SignalEntityAction,
    UnlockEntityAction,
)
from .context import ExecutionState, fold_entity_name, loads, to_utc

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

__all__ = [
    "DEFAULT_MAXIMUM_TIMER_INTERVAL",
    "ExecutionResult",
    "LiveOrchestration",
    "OrchestrationExecutor",
    "OrchestratorRegistry",
]


#: durabletask-python's default: timers longer than this are chained in pieces of at most this.
DEFAULT_MAXIMUM_TIMER_INTERVAL = timedelta(days=3)


def check_maximum_timer_interval(value: timedelta | None) -> timedelta | None:
    """``maximum_timer_interval`` as given, if it is None (never split) or a positive timedelta."""
    if value is not None and (not isinstance(value, timedelta) or value <= timedelta(0)):
        raise ConfigurationError(f"maximum_timer_interval must be a positive timedelta or None, got {value!r}")
    return value


class OrchestratorRegistry:
    """Orchestrator functions by name (shared with the Worker)."""

    def __init__(self) -> None:
        self._orchestrators: dict[str, Callable[..., Any]] = {}
        #: the worker's VersioningOptions (Worker.use_versioning), read at each ExecutionStarted
        self.versioning: VersioningOptions | None = None
        #: explicit work-item filters (Worker.use_work_item_filters): whether this worker takes an
        #: orchestration of (name, version); None takes every registered one
        self.accepts: Callable[[str, str | None], bool] | None = None

    def add_orchestrator(self, fn: Callable[..., Any], name: str | None = None) -> str:
        """Register ``fn`` under ``name`` (default: ``get_name(fn)``); returns the name."""
        key = name if name is not None else get_name(fn)
        if not key:
            raise ConfigurationError("an orchestrator name cannot be empty")
        if key in self._orchestrators:
            raise ConfigurationError(f"an orchestrator named {key!r} is already registered")
        self._orchestrators[key] = fn
        return key

    def get(self, name: str) -> Callable[..., Any] | None:
        """The orchestrator registered as ``name``, or None."""
        return self._orchestrators.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._orchestrators

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._orchestrators)


@dataclass
class ExecutionResult:
    """What one executor step produced and where the execution stands.

    ``runtime_status`` is PENDING (not started), RUNNING, SUSPENDED, or the end status:
    COMPLETED, FAILED, TERMINATED, CONTINUED_AS_NEW. ``custom_status`` and ``output`` are JSON.
    """

    actions: list[Action]
    runtime_status: OrchestrationStatus
    custom_status: str | None = None
    output: str | None = None
    failure_details: FailureDetails | None = None
    is_suspended: bool = False
    completion: CompleteOrchestration | None = None

    @property
    def is_complete(self) -> bool:
        """True if this execution has ended (any end status)."""
        return self.runtime_status.is_terminal or self.runtime_status == OrchestrationStatus.CONTINUED_AS_NEW


# --------------------------------------------------------------------------- non-determinism checks


@dataclass(frozen=True)
class _Expectation:
    """How a scheduling event must match the action the code made at its sequence number."""

    action_type: type
    method: str
    describe_event: Callable[[Any], str]
    describe_action: Callable[[Any], str]


_EXPECTATIONS: dict[type, _Expectation] = {
    ev.TaskScheduled: _Expectation(ScheduleTask, "call_activity", lambda e: f"name='{e.name}'", lambda a: f"name='{a.name}'"),
    ev.TimerCreated: _Expectation(CreateTimer, "create_timer", lambda e: "", lambda a: ""),
    ev.SubOrchestrationInstanceCreated: _Expectation(
        CreateSubOrchestration, "call_sub_orchestrator", lambda e: f"name='{e.name}'", lambda a: f"name='{a.name}'"
    ),
    ev.EventSent: _Expectation(
        SendEvent, "send_event",
        lambda e: f"instance_id='{e.instance_id}', name='{e.name}'",
        lambda a: f"instance_id='{a.instance_id}', name='{a.name}'",
    ),
    ev.EntityOperationSignaled: _Expectation(
        SignalEntityAction, "signal_entity",
        lambda e: f"entity='{fold_entity_name(e.target_instance_id)}', operation='{e.operation}'",
        lambda a: f"entity='{a.entity_id}', operation='{a.operation}'",
    ),
    ev.EntityOperationCalled: _Expectation(
        CallEntityAction, "call_entity",
        lambda e: f"entity='{fold_entity_name(e.target_instance_id)}', operation='{e.operation}'",
        lambda a: f"entity='{a.entity_id}', operation='{a.operation}'",
    ),
    ev.EntityLockRequested: _Expectation(
        LockEntitiesAction, "lock_entities", lambda e: f"lock_set={sorted({fold_entity_name(x) for x in e.lock_set})}", lambda a: f"lock_set={sorted(a.lock_set)}"
    ),
    ev.EntityUnlockSent: _Expectation(
        UnlockEntityAction, "unlock_entity", lambda e: f"entity='{fold_entity_name(e.target_instance_id)}'", lambda a: f"entity='{a.entity_id}'"
    ),
}

_RECORDED_ID: dict[type, Callable[[Any], str]] = {
    ev.EntityOperationCalled: lambda e: e.request_id,
    ev.EntityLockRequested: lambda e: e.critical_section_id,
}

_MISMATCH_ADVICE = (
    "This happens when orchestrator code is non-deterministic or was changed while an instance "
    "of it was running."
)


_EXPECTATIONS_BY_ACTION: dict[type, _Expectation] = {x.action_type: x for x in _EXPECTATIONS.values()}


def _describe_action(action: Action) -> str:
    """The call the code made, in the same shape as the recorded one (``method(args)``)."""
    expect = _EXPECTATIONS_BY_ACTION[type(action)]
    return f"{expect.method}({expect.describe_action(action)})"


def _check_scheduling_event(ctx: ExecutionState, event: HistoryEvent) -> None:
    """Match a scheduling event against the action the code made at the same sequence number."""
    expect = _EXPECTATIONS[type(event)]
    seq = event.event_id
    recorded = f"{expect.method}({expect.describe_event(event)})"
    action = ctx.pending_actions.pop(seq, None)
    if action is None:
        if seq <= ctx.emitted_max_id:
            return  # an action this live orchestration already returned, fed back: recorded
        raise NonDeterminismError(
            f"Non-deterministic orchestration {ctx.instance_id!r}: at sequence number {seq} the history "
            f"has {recorded}, but the current code made no call with sequence number {seq}. {_MISMATCH_ADVICE}"
        )
    actual = _describe_action(action)
    if type(action) is not expect.action_type or actual != recorded:
        raise NonDeterminismError(
            f"Non-deterministic orchestration {ctx.instance_id!r}: at sequence number {seq} the history "
            f"has {recorded}, but the current code calls {actual}. {_MISMATCH_ADVICE}"
        )
    recorded_id = _RECORDED_ID.get(type(event))
    if recorded_id is not None:
        ctx.rekey_from_history(action, recorded_id(event))


# --------------------------------------------------------------------------- event handlers
# One small handler per event type, registered in _HANDLERS. Completion events that differ
# only in which field holds the task id share a handler.


def _on_orchestrator_started(live: LiveOrchestration, e: ev.OrchestratorStarted) -> None:
    live.execution.set_time(e.timestamp)


def _on_ignored(live: LiveOrchestration, e: HistoryEvent) -> None:
    """Events with no effect on a running execution (episode ends, generic markers)."""


def _on_execution_started(live: LiveOrchestration, e: ev.ExecutionStarted) -> None:
    ctx = live.execution
    if ctx.started:
        log.warning("%s: ignoring a second ExecutionStarted", ctx.instance_id)
        return
    if not live.saw_episode_start:  # history without OrchestratorStarted: use the start time
        ctx.set_time(e.timestamp)
    fn = live.registry.get(e.name)
    ctx.set_parent(e.parent_instance_id)
    ctx.version = e.version
    versioning = live.registry.versioning
    ctx.default_version = versioning.default_version if versioning is not None else None
    if fn is None:
        ctx.started = True
        raise OrchestratorNotRegisteredError(f"no orchestrator named {e.name!r} is registered")
    mismatch = version_failure(versioning, e.version)
    if mismatch is not None and versioning is not None and not versioning.rejects:
        # VersionFailureStrategy.FAIL (REJECT never gets here: the step parks such instances)
        ctx.started = True
        ctx.set_failed(mismatch)
        return
    ctx.start(fn, loads(e.input))


def _on_scheduling_event(live: LiveOrchestration, e: HistoryEvent) -> None:
    _check_scheduling_event(live.execution, e)


def _on_task_completed(live: LiveOrchestration, e: Any) -> None:
    """TaskCompleted and SubOrchestrationInstanceCompleted: complete the task, run the code."""
    task = live.execution.pending_tasks.pop(e.task_scheduled_id, None)
    if task is None or isinstance(task, TimerTask):
        live.ignore(e, f"no pending task #{e.task_scheduled_id}")
        return
    task.complete(loads(e.result))
    live.execution.resume()


def _failure_message(live: LiveOrchestration, e: Any, task_id: int) -> str:
    """durabletask's wording: a task is named by the sequence number of its first attempt.

    Activity failures carry the instance id as a prefix, sub-orchestration failures do not
    (durabletask-python's ``_OrchestrationExecutor`` words them that way).
    """
    if isinstance(e, ev.TaskFailed):
        return f"{live.execution.instance_id}: Activity task #{task_id} failed: {e.failure_details.message}"
    return f"Sub-orchestration task #{task_id} failed: {e.failure_details.message}"


def _on_task_failed(live: LiveOrchestration, e: Any) -> None:
    """TaskFailed and SubOrchestrationInstanceFailed: retry per policy, or fail the task."""
    ctx = live.execution
    task = ctx.pending_tasks.pop(e.task_scheduled_id, None)
    if task is None or isinstance(task, TimerTask):
        live.ignore(e, f"no pending task #{e.task_scheduled_id}")
        return
    first_id = e.task_scheduled_id
    if isinstance(task, RetryableTask):
        first_id = task.schedule.id if task.schedule is not None else first_id
        delay = task.compute_next_delay(ctx.current_utc_datetime)
        if delay is not None:
            task.increment_attempt_count()
            ctx.create_timer_internal(delay, retryable=task)
            return
    task.fail(_failure_message(live, e, first_id), e.failure_details)
    ctx.resume()


def _is_intermediate_piece(task: TimerTask, e: ev.TimerFired) -> bool:
    """True if the durable timer that fired ends before its long timer does.

    Decided from the fire time recorded in history (to the millisecond, as Avro keeps it), not
    from this worker's ``maximum_timer_interval``: a history chunked by one worker replays
    the same on a worker configured otherwise.
    """
    final = task.final_fire_at
    if final is None or e.fire_at is None:
        return False
    return _floor_ms(e.fire_at) < _floor_ms(final)


def _floor_ms(value: datetime) -> int:
    return (to_utc(value) - _EPOCH) // timedelta(milliseconds=1)


def _on_timer_fired(live: LiveOrchestration, e: ev.TimerFired) -> None:
    ctx = live.execution
    task = ctx.pending_tasks.get(e.timer_id)
    if not isinstance(task, TimerTask):
        live.ignore(e, f"no pending timer #{e.timer_id}")
        return
    del ctx.pending_tasks[e.timer_id]
    if _is_intermediate_piece(task, e):
        ctx.schedule_timer_chunk(task)  # a long timer: not there yet, the next piece follows
        return
    if task.retryable_parent is not None:
        ctx.reschedule(task.retryable_parent)
        return
    task.complete(None)
    ctx.resume()


def _on_event_raised(live: LiveOrchestration, e: ev.EventRaised) -> None:
    if live.execution.deliver_event(e):
        live.execution.resume()


def _on_suspended(live: LiveOrchestration, e: ev.ExecutionSuspended) -> None:
    live.suspended = True


def _on_resumed(live: LiveOrchestration, e: ev.ExecutionResumed) -> None:
    live.suspended = False
    held, live.held = live.held, []
    for event in held:
        live.process(event)


def _on_terminated(live: LiveOrchestration, e: ev.ExecutionTerminated) -> None:
    live.execution.set_terminated(e.input)


def _on_entity_completed(live: LiveOrchestration, e: ev.EntityOperationCompleted) -> None:
    entry = live.execution.entity_call_done(e.request_id)
    if entry is None:
        live.ignore(e, f"no pending entity call {e.request_id}")
        return
    entry[0].complete(loads(e.output))
    live.execution.resume()


def _on_entity_failed(live: LiveOrchestration, e: ev.EntityOperationFailed) -> None:
    ctx = live.execution
    entry = ctx.entity_call_done(e.request_id)
    if entry is None:
        live.ignore(e, f"no pending entity call {e.request_id}")
        return
    task, target, operation = entry
    task.fail(
        f"{ctx.instance_id}: Entity operation '{operation}' on {target} failed: {e.failure_details.message}",
        e.failure_details,
    )
    ctx.resume()


def _on_lock_granted(live: LiveOrchestration, e: ev.EntityLockGranted) -> None:
    if live.execution.lock_granted(e.critical_section_id):
        live.execution.resume()
    else:
        live.ignore(e, f"no pending lock request {e.critical_section_id}")


_HANDLERS: dict[type, Callable[[LiveOrchestration, Any], None]] = {
    ev.OrchestratorStarted: _on_orchestrator_started,
    ev.OrchestratorCompleted: _on_ignored,
    ev.ExecutionStarted: _on_execution_started,
    ev.ExecutionCompleted: _on_ignored,
    ev.ContinueAsNew: _on_ignored,
    ev.ExecutionTerminated: _on_terminated,
    ev.ExecutionSuspended: _on_suspended,
    ev.ExecutionResumed: _on_resumed,
    ev.TaskCompleted: _on_task_completed,
    ev.SubOrchestrationInstanceCompleted: _on_task_completed,
    ev.TaskFailed: _on_task_failed,
    ev.SubOrchestrationInstanceFailed: _on_task_failed,
    ev.TimerFired: _on_timer_fired,
    ev.EventRaised: _on_event_raised,
    ev.EntityOperationCompleted: _on_entity_completed,
    ev.EntityOperationFailed: _on_entity_failed,
    ev.EntityLockGranted: _on_lock_granted,
    ev.ExecutionRewound: _on_ignored,  # a marker: processors/rewind.py applies it before replay
    **{event_type: _on_scheduling_event for event_type in _EXPECTATIONS},
}

#: Events held back while the instance is suspended (everything that would run user code).
_SUSPENDABLE: frozenset[type] = frozenset(
    {
        ev.ExecutionStarted,
        ev.TaskCompleted,
        ev.TaskFailed,
        ev.SubOrchestrationInstanceCompleted,
        ev.SubOrchestrationInstanceFailed,
        ev.TimerFired,
        ev.EventRaised,
        ev.EntityOperationCompleted,
        ev.EntityOperationFailed,
        ev.EntityLockGranted,
    }
)

#: Events that record an execution's end: after the end they mark it as already recorded.
_END_RECORDS: frozenset[type] = frozenset({ev.ExecutionCompleted, ev.ContinueAsNew, ev.ExecutionTerminated})


# --------------------------------------------------------------------------- live orchestration


class LiveOrchestration:
    """One execution kept running between batches (generator and state stay in memory)."""

    def __init__(self, instance_id: str, registry: OrchestratorRegistry,
                 maximum_timer_interval: timedelta | None = DEFAULT_MAXIMUM_TIMER_INTERVAL) -> None:
        self.registry = registry
        self.execution = ExecutionState(instance_id, maximum_timer_interval)
        self.suspended = False
        self.held: list[HistoryEvent] = []
        self.saw_episode_start = False
        self.events_applied = 0

    @property
    def instance_id(self) -> str:
        """The orchestration instance this execution belongs to."""
        return self.execution.instance_id

    @property
    def is_done(self) -> bool:
        """True once the execution's end is decided (the end action may still be unreturned)."""
        return self.execution.is_done

    @property
    def is_finished(self) -> bool:
        """True once the end was returned by ``step`` or found recorded in history: feed no more."""
        return self.execution.is_done and self.execution.completion_emitted

    @property
    def resume_count(self) -> int:
        """How many times the orchestrator generator body has been entered (for cost checks)."""
        return self.execution.resume_count

    def apply(self, events: Iterable[HistoryEvent], replaying: bool = True) -> None:
        """Apply events from committed history (``is_replaying`` True by default); no actions returned."""
        if self.is_finished:
            raise OrchestrationStateError(
                f"{self.instance_id}: the execution has already ended; start a new live orchestration"
            )
        self.execution.is_replaying_flag = replaying
        for event in events:
            self.process(event)

    def step(self, new_events: Iterable[HistoryEvent]) -> ExecutionResult:
        """Apply new events (not replaying) and return the actions they caused."""
        if self.is_finished:
            raise OrchestrationStateError(
                f"{self.instance_id}: the execution has already ended and its end was returned"
            )
        self.execution.is_replaying_flag = False
        for event in new_events:
            self.process(event)
        return self.result(self.execution.take_new_actions())

    def result(self, actions: list[Action]) -> ExecutionResult:
        """The current status with ``actions`` attached."""
        ctx = self.execution
        completion = next((a for a in actions if isinstance(a, CompleteOrchestration)), None)
        if ctx.status is not None:
            status = ctx.status
        elif not ctx.started:
            status = OrchestrationStatus.PENDING
        else:
            status = OrchestrationStatus.SUSPENDED if self.suspended else OrchestrationStatus.RUNNING
        return ExecutionResult(
            actions=actions,
            runtime_status=status,
            custom_status=ctx.custom_status,
            output=ctx.output,
            failure_details=ctx.failure,
            is_suspended=self.suspended and not ctx.is_done,
            completion=completion,
        )

    def process(self, event: HistoryEvent) -> None:
        """Apply one event through its handler; an exception from code or replay fails the instance."""
        self.events_applied += 1
        ctx = self.execution
        if ctx.is_done:
            self._after_end(event)
            return
        if self.suspended and type(event) in _SUSPENDABLE:
            self.held.append(event)
            return
        if isinstance(event, ev.OrchestratorStarted):
            self.saw_episode_start = True
        handler = _HANDLERS.get(type(event))
        if handler is None:
            log.debug("%s: ignoring event of unknown type %s", ctx.instance_id, type(event).__name__)
            return
        try:
            handler(self, event)
        except Exception as ex:  # noqa: BLE001 - user code or replay divergence: it fails the instance
            log.debug("%s: orchestration failed: %r", ctx.instance_id, ex)
            ctx.set_failed(ex)

    def _after_end(self, event: HistoryEvent) -> None:
        if type(event) in _END_RECORDS:
            self.execution.completion_emitted = True
        elif type(event) in _EXPECTATIONS:
            # actions made in the final episode (send_event, unlocks, ...) are recorded after
            # the code ended; match them so replay does not hand them out again
            try:
                _check_scheduling_event(self.execution, event)
            except NonDeterminismError as ex:
                if self.execution.completion_emitted:
                    log.warning("%s: history diverges after the recorded end: %s", self.instance_id, ex)
                elif self.execution.failure is not None and self.execution.failure.is_caused_by(NonDeterminismError):
                    pass  # the first divergence is the one worth reporting
                else:  # the code now ends earlier than its history says: that is divergence too
                    self.execution.replace_end_with_failure(ex)
        elif isinstance(event, ev.EventRaised) and self.execution.keeps_late_events():
            self.execution.deliver_event(event)
        elif isinstance(event, ev.OrchestratorStarted):
            self.execution.set_time(event.timestamp)
        else:
            self.ignore(event, "the execution has ended")

    def ignore(self, event: HistoryEvent, why: str) -> None:
        """Log (outside replay) an event that has no effect, e.g. a duplicate completion."""
        if not self.execution.is_replaying:
            log.info("%s: ignoring %s: %s", self.instance_id, type(event).__name__, why)


class OrchestrationExecutor:
    """Runs orchestrations of a registry against history (see the module docstring)."""

    def __init__(self, registry: OrchestratorRegistry, *,
                 maximum_timer_interval: timedelta | None = DEFAULT_MAXIMUM_TIMER_INTERVAL) -> None:
        self.registry = registry
        self.maximum_timer_interval = check_maximum_timer_interval(maximum_timer_interval)

    def start(self, instance_id: str) -> LiveOrchestration:
        """A fresh live orchestration for ``instance_id`` (feed it history with ``apply``)."""
        return LiveOrchestration(instance_id, self.registry, self.maximum_timer_interval)

    def execute(
        self, instance_id: str, old_events: Iterable[HistoryEvent], new_events: Iterable[HistoryEvent]
    ) -> ExecutionResult:
        """Replay ``old_events``, apply ``new_events``; return the actions not recorded in history.

        If the history already records the execution's end, the new events are ignored and the
        result has no actions.
        """
        live = self.start(instance_id)
        live.apply(old_events)
        if live.is_finished:
            return live.result([])
        return live.step(new_events)
