"""One running execution's state, and the ``ctx`` orchestrator code receives.

:class:`ExecutionState` is the engine's side: the generator, the sequence counter, the actions
not yet handed to the processor, the tasks waiting for history events, buffered external events
and the entity critical section. The executor (:mod:`.executor`) changes it by applying history
events; orchestrator code changes it only through :class:`RuntimeOrchestrationContext`, a thin
facade that exposes exactly the documented :class:`~durable_kafka.task.OrchestrationContext`
API and none of the bookkeeping (user code cannot read or set the engine's attributes by
accident).
"""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import GeneratorType
from typing import Any

from durable_kafka.entities import EntityInstanceId
from durable_kafka.errors import (
    InvalidArgumentError,
    InvalidEntityIdError,
    OrchestrationStateError,
    TaskFailedError,
)
from durable_kafka.streams.events import EventRaised, FailureDetails
from durable_kafka.streams.payloads import externalize, resolve
from durable_kafka.streams.status import OrchestrationStatus
from durable_kafka.task import (
    CancellableTask,
    CompletableTask,
    EntityLock,
    OrchestrationContext,
    RetryableTask,
    RetryPolicy,
    Task,
    TimerTask,
    get_name,
)

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

log = logging.getLogger(__name__)

_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_OID, "9e952958-5e33-4daf-827f-2fa12937b875")
_UUID_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def to_utc(value: datetime) -> datetime:
    """Treat naive datetimes as UTC so orchestration time compares with event timestamps."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def ceil_to_ms(value: datetime) -> datetime:
    """``value`` rounded up to the millisecond the wire keeps, so a scheduled time never moves earlier."""
    extra = value.microsecond % 1000
    return value if extra == 0 else value + timedelta(microseconds=1000 - extra)


def dumps(value: Any, owner: str | None = None, *, store: bool = True, transactional: bool = True) -> str | None:
    """Encode a user value as the JSON text carried in events (None stays None).

    Text above the bound payload store's threshold becomes a reference to the stored payload
    (docs/PAYLOADS.md), owned by ``owner`` (default: the instance being run). ``store=False``
    while replaying: a replayed action's input is matched against history, never sent.
    """
    if value is None:
        return None
    text = json.dumps(value)
    return externalize(text, owner, transactional=transactional) if store else text


def loads(text: str | None) -> Any:
    """Decode JSON text from an event (None or empty stays None); references are resolved."""
    return None if text is None or text == "" else json.loads(resolve(text) or "")


def failure_details_of(ex: BaseException) -> FailureDetails:
    """Failure details of an exception that escaped orchestrator (or entity) code.

    ``error_type`` is the qualified class name and ``inner_failure`` the cause chain. An
    unhandled :class:`TaskFailedError` keeps the failed task's own details as its inner failure
    (and its stack trace under a "Caused by" line), so the instance's failure still names the
    root cause.
    """
    stack = "".join(traceback.format_exception(type(ex), ex, ex.__traceback__))
    inner = getattr(ex, "details", None)
    if isinstance(ex, TaskFailedError) and isinstance(inner, FailureDetails):
        stack += f"Caused by {inner.error_type}: {inner.message}\n{inner.stack_trace or ''}"
        details = FailureDetails.from_exception(ex, stack_trace=stack)
        details.inner_failure = inner
        return details
    return FailureDetails.from_exception(ex, stack_trace=stack)


def entity_key(entity_id: Any) -> str:
    """The canonical ``@name@key`` of an entity id (a string or an EntityInstanceId).

    Entity names are case-insensitive (the key is not), as in Durable Task: the name is
    lower-cased here exactly as the client and entity code do, so ``@Counter@c1`` from an
    orchestration reaches the same entity as ``EntityInstanceId("Counter", "c1")``.
    """
    text = str(entity_id)
    if not text.startswith("@") or text.count("@") < 2:
        raise InvalidArgumentError(f"entity id {text!r} is not of the form '@name@key'")
    try:
        return str(EntityInstanceId.parse(text))
    except InvalidEntityIdError as error:
        raise InvalidArgumentError(str(error)) from None


def fold_entity_name(entity_id: str) -> str:
    """``entity_id`` with its name lower-cased, never raising (for ids read back from history)."""
    name, sep, key = entity_id[1:].partition("@")
    return f"@{name.lower()}@{key}" if entity_id.startswith("@") and sep else entity_id


class ExecutionState:
    """The engine's state of one execution (see module docstring); never handed to user code."""

    def __init__(self, instance_id: str, maximum_timer_interval: timedelta | None = None) -> None:
        self.context = RuntimeOrchestrationContext(self)
        self._instance_id = instance_id
        self.maximum_timer_interval = maximum_timer_interval  # longer timers are chained (None: never)
        self._parent_instance_id: str | None = None
        self.is_replaying_flag = True
        self._now = _EPOCH
        self._sequence_number = 0
        self._uuid_counter = 0
        self.emitted_max_id = 0  # highest action id already handed to the processor
        self.pending_actions: dict[int, Action] = {}
        self.pending_tasks: dict[int, CompletableTask[Any]] = {}
        self.entity_calls: dict[str, tuple[CompletableTask[Any], str, str]] = {}
        self.lock_request: tuple[str, CompletableTask[Any], tuple[str, ...]] | None = None
        self._critical_section: str | None = None
        self._locked: set[str] = set()
        self._calls_outstanding: set[str] = set()
        self._waiters: dict[str, deque[CancellableTask[Any]]] = {}
        self._buffered: dict[str, deque[tuple[int, EventRaised]]] = {}
        self._arrivals = 0
        self._generator: Generator[Task[Any], Any, Any] | None = None
        self._previous: Task[Any] | None = None
        self.custom_status: str | None = None
        self.started = False
        self.status: OrchestrationStatus | None = None
        self.output: str | None = None
        self.failure: FailureDetails | None = None
        self._new_input: str | None = None
        self._save_events = False
        self.completion_emitted = False
        self.resume_count = 0
        self.version: str | None = None  # this instance's orchestration version (ExecutionStarted)
        self.default_version: str | None = None  # VersioningOptions.default_version, for children

    # ------------------------------------------------------------------ user-facing properties

    @property
    def instance_id(self) -> str:
        return self._instance_id

    @property
    def parent_instance_id(self) -> str | None:
        return self._parent_instance_id

    @property
    def current_utc_datetime(self) -> datetime:
        return self._now

    @property
    def is_replaying(self) -> bool:
        return self.is_replaying_flag

    @property
    def is_done(self) -> bool:
        """True once the execution's end (completed, failed, terminated, continued) is decided."""
        return self.status is not None

    # ------------------------------------------------------------------ executor-facing setters

    def set_time(self, value: datetime) -> None:
        """Move orchestration time to an OrchestratorStarted timestamp."""
        self._now = to_utc(value)

    def set_parent(self, parent_instance_id: str | None) -> None:
        """Record the parent instance from ExecutionStarted."""
        self._parent_instance_id = parent_instance_id

    def next_id(self) -> int:
        """The next action sequence number."""
        self._sequence_number += 1
        return self._sequence_number

    def _add(self, action: Action) -> None:
        self.pending_actions[action.id] = action  # type: ignore[union-attr]

    # ------------------------------------------------------------------ running the generator

    def start(self, fn: Callable[..., Any], input_value: Any) -> None:
        """Call the orchestrator function; run a generator up to its first pending task."""
        self.started = True
        result = fn(self.context, input_value)
        if not isinstance(result, GeneratorType):
            self.set_complete(result)
            return
        self._generator = result
        self.resume_count += 1
        try:
            first = next(result)
        except StopIteration as stop:
            self.set_complete(stop.value)
            return
        self._previous = self._check_task(first)
        self.resume()

    def resume(self) -> None:
        """Feed completed results into the generator until it waits on an incomplete task."""
        while not self.is_done and self._previous is not None and self._previous.is_complete:
            previous = self._previous
            assert self._generator is not None
            self.resume_count += 1
            try:
                if previous._exception is not None:
                    nxt = self._generator.throw(previous._exception)
                else:
                    nxt = self._generator.send(previous._result)
            except StopIteration as stop:
                self.set_complete(stop.value)
                return
            self._previous = self._check_task(nxt)

    @staticmethod
    def _check_task(value: Any) -> Task[Any]:
        if not isinstance(value, Task):
            raise OrchestrationStateError(
                f"the orchestrator yielded {type(value).__name__!s}; orchestrators may only yield tasks"
            )
        return value

    # ------------------------------------------------------------------ completion

    def _finish(self, status: OrchestrationStatus) -> bool:
        if self.is_done:
            return False
        self._exit_critical_section()
        self.status = status
        return True

    def set_complete(self, result: Any) -> None:
        """The code returned ``result``: COMPLETED (FAILED if the result is not JSON-serializable)."""
        if self.is_done:
            return
        try:
            encoded = dumps(result)
        except (TypeError, ValueError) as ex:
            self.set_failed(ex)
            return
        if self._finish(OrchestrationStatus.COMPLETED):
            self.output = encoded

    def set_failed(self, ex: BaseException | FailureDetails) -> None:
        """The code raised (or replay diverged): FAILED with the failure details."""
        details = ex if isinstance(ex, FailureDetails) else failure_details_of(ex)
        if self._finish(OrchestrationStatus.FAILED):
            self.failure = details

    def replace_end_with_failure(self, ex: BaseException) -> None:
        """Replay found the code ended where history goes on: the end becomes FAILED."""
        self.status, self.output = OrchestrationStatus.FAILED, None
        self.failure = failure_details_of(ex)

    def set_terminated(self, output: str | None) -> None:
        """ExecutionTerminated arrived: TERMINATED with the given (JSON) output."""
        if self._finish(OrchestrationStatus.TERMINATED):
            self.output = output

    def completion_action(self) -> CompleteOrchestration:
        """The CompleteOrchestration action for the decided end (carry-over computed now)."""
        assert self.status is not None
        if self.status != OrchestrationStatus.CONTINUED_AS_NEW:
            return CompleteOrchestration(self.status, result=self.output, failure_details=self.failure)
        carry: list[EventRaised] = []
        if self._save_events:
            ordered = sorted(item for queue in self._buffered.values() for item in queue)
            carry = [event for _, event in ordered]
        return CompleteOrchestration(
            OrchestrationStatus.CONTINUED_AS_NEW, new_input=self._new_input, carryover_events=carry,
            save_events=self._save_events,
        )

    def keeps_late_events(self) -> bool:
        """True if events arriving after the end must still be buffered (continue_as_new + save_events)."""
        return self.status == OrchestrationStatus.CONTINUED_AS_NEW and self._save_events

    def take_new_actions(self) -> list[Action]:
        """Hand over the actions produced since the last call (completion last) and forget them."""
        actions: list[Action] = list(self.pending_actions.values())
        self.pending_actions.clear()
        self.emitted_max_id = self._sequence_number
        if self.is_done and not self.completion_emitted:
            actions.append(self.completion_action())
            self.completion_emitted = True
        return actions

    # ------------------------------------------------------------------ user API

    def set_custom_status(self, custom_status: Any) -> None:
        self.custom_status = dumps(custom_status)

    def create_timer(self, fire_at: datetime | timedelta) -> TimerTask:
        return self.create_timer_internal(fire_at)

    def create_timer_internal(
        self, fire_at: datetime | timedelta, retryable: RetryableTask[Any] | None = None
    ) -> TimerTask:
        """Create a durable timer; a retry back-off timer names the task it delays."""
        if isinstance(fire_at, timedelta):
            when = self._now + fire_at
        elif isinstance(fire_at, datetime):
            when = to_utc(fire_at)
        else:
            raise InvalidArgumentError("create_timer() takes a datetime or a timedelta")
        timer = TimerTask(final_fire_at=when)
        if retryable is not None:
            timer.set_retryable_parent(retryable)
        self.schedule_timer_chunk(timer)
        return timer

    def schedule_timer_chunk(self, timer: TimerTask) -> None:
        """Send the next durable timer of ``timer``: at its end, or one interval on if that is sooner.

        As in durabletask, a timer is split only when ``now + maximum_timer_interval`` comes
        before its end; each piece is a TimerCreated/TimerFired pair under a new sequence number.
        """
        assert timer.final_fire_at is not None
        fire_at = timer.final_fire_at
        interval = self.maximum_timer_interval
        # (a piece ending within a millisecond of the end would be indistinguishable from it)
        if interval is not None and self._now + interval < fire_at - _MS:
            fire_at = self._now + interval
        timer_id = self.next_id()
        self._add(CreateTimer(timer_id, fire_at))
        self.pending_tasks[timer_id] = timer

        def cancel() -> None:
            self.pending_actions.pop(timer_id, None)
            self.pending_tasks.pop(timer_id, None)

        timer.set_cancel_handler(cancel)

    def call_activity(
        self,
        activity: Callable[..., Any] | str,
        *,
        input: Any = None,
        retry_policy: RetryPolicy | None = None,
        tags: dict[str, str] | None = None,
    ) -> CompletableTask[Any]:
        name = activity if isinstance(activity, str) else get_name(activity)
        # an activity request may leave before the step commits (early dispatch): its large
        # input is stored outside the transaction, so the reference holds even if it aborts
        action = ScheduleTask(self.next_id(), name, dumps(input, store=not self.is_replaying_flag, transactional=False),
                              dict(tags or {}))
        return self._schedule(action, retry_policy, is_sub_orch=False)

    def call_sub_orchestrator(
        self,
        orchestrator: Callable[..., Any] | str,
        *,
        input: Any = None,
        instance_id: str | None = None,
        retry_policy: RetryPolicy | None = None,
        version: str | None = None,
    ) -> CompletableTask[Any]:
        if self._critical_section is not None:
            raise OrchestrationStateError("cannot call a sub-orchestration inside a critical section")
        name = orchestrator if isinstance(orchestrator, str) else get_name(orchestrator)
        task_id = self.next_id()
        child_id = instance_id if instance_id is not None else f"{self._instance_id}:{task_id:04x}"
        action = CreateSubOrchestration(task_id, name, child_id, dumps(input, child_id, store=not self.is_replaying_flag),
                                        version or self.default_version)
        return self._schedule(action, retry_policy, is_sub_orch=True)

    def _schedule(
        self, action: ScheduleTask | CreateSubOrchestration, policy: RetryPolicy | None, is_sub_orch: bool
    ) -> CompletableTask[Any]:
        task: CompletableTask[Any]
        if policy is None:
            task = CompletableTask()
        else:
            task = RetryableTask(policy, self._now, is_sub_orch)
            task.schedule = action
        self._add(action)
        self.pending_tasks[action.id] = task
        return task

    def reschedule(self, task: RetryableTask[Any]) -> None:
        """The back-off timer of ``task`` fired: send the next attempt under a new sequence number."""
        action = replace(task.schedule, id=self.next_id())
        self._add(action)
        self.pending_tasks[action.id] = task

    def wait_for_external_event(self, name: str) -> CancellableTask[Any]:
        key = name.casefold()
        waiter: CancellableTask[Any] = CancellableTask()
        buffered = self._buffered.get(key)
        if buffered:
            _, event = buffered.popleft()
            if not buffered:
                del self._buffered[key]
            waiter.complete(loads(event.input))
            return waiter
        queue = self._waiters.setdefault(key, deque())
        queue.append(waiter)

        def cancel() -> None:
            waiting = self._waiters.get(key)
            if waiting is not None and waiter in waiting:
                waiting.remove(waiter)
                if not waiting:
                    del self._waiters[key]

        waiter.set_cancel_handler(cancel)
        return waiter

    def deliver_event(self, event: EventRaised) -> bool:
        """Give an EventRaised to the oldest waiter (True) or buffer it FIFO per name (False)."""
        key = event.name.casefold()
        waiting = self._waiters.get(key)
        if waiting:
            waiter = waiting.popleft()
            if not waiting:
                del self._waiters[key]
            waiter.complete(loads(event.input))
            return True
        self._arrivals += 1
        self._buffered.setdefault(key, deque()).append((self._arrivals, event))
        return False

    def send_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        if not instance_id or not instance_id.strip():
            raise InvalidArgumentError("send_event(): instance_id cannot be empty")
        if instance_id.startswith("@"):
            raise InvalidArgumentError("ids starting with '@' are entities: use signal_entity()")
        if not event_name or not event_name.strip():
            raise InvalidArgumentError("send_event(): event_name cannot be empty")
        self._add(SendEvent(self.next_id(), instance_id, event_name,
                           dumps(data, instance_id, store=not self.is_replaying_flag)))

    def continue_as_new(self, new_input: Any, *, save_events: bool = False) -> None:
        if self.is_done:
            return
        encoded = dumps(new_input)
        if self._finish(OrchestrationStatus.CONTINUED_AS_NEW):
            self._new_input = encoded
            self._save_events = save_events

    def new_uuid(self) -> str:
        name = f"{self._instance_id}_{self._now.strftime(_UUID_TIME_FORMAT)}_{self._uuid_counter}"
        self._uuid_counter += 1
        return str(uuid.uuid5(_UUID_NAMESPACE, name))

    # ------------------------------------------------------------------ entities

    def call_entity(self, entity_id: Any, operation: str, input: Any = None) -> CompletableTask[Any]:
        target = entity_key(entity_id)
        if self._critical_section is not None:
            if target not in self._locked:
                raise OrchestrationStateError(
                    f"inside a critical section only locked entities may be called; {target} is not locked"
                )
            if target in self._calls_outstanding:
                raise OrchestrationStateError(f"a call to {target} is already outstanding in this critical section")
            self._calls_outstanding.add(target)
        task_id = self.next_id()
        request_id = self.new_uuid()
        self._add(CallEntityAction(task_id, target, operation, dumps(input, target, store=not self.is_replaying_flag),
                                   request_id))
        task: CompletableTask[Any] = CompletableTask()
        self.entity_calls[request_id] = (task, target, operation)
        return task

    def signal_entity(self, entity_id: Any, operation: str, input: Any = None,
                      signal_time: datetime | None = None) -> None:
        target = entity_key(entity_id)
        if self._critical_section is not None and target in self._locked:
            raise OrchestrationStateError(f"cannot signal {target}: it is locked by this critical section")
        when = None
        if signal_time is not None:
            if not isinstance(signal_time, datetime):
                raise InvalidArgumentError("signal_entity(): signal_time must be a datetime or None")
            when = ceil_to_ms(to_utc(signal_time))
        task_id = self.next_id()
        self._add(SignalEntityAction(task_id, target, operation, dumps(input, target, store=not self.is_replaying_flag),
                                     self.new_uuid(), when))

    def lock_entities(self, entity_ids: Sequence[Any]) -> CompletableTask[EntityLock]:
        if self._critical_section is not None or self.lock_request is not None:
            raise OrchestrationStateError("entity locks cannot be nested: exit the critical section first")
        lock_set = tuple(sorted({entity_key(e) for e in entity_ids}))
        if not lock_set:
            raise InvalidArgumentError("lock_entities() needs at least one entity id")
        task_id = self.next_id()
        section = self.new_uuid()
        self._add(LockEntitiesAction(task_id, section, lock_set))
        task: CompletableTask[EntityLock] = CompletableTask()
        self.lock_request = (section, task, lock_set)
        return task

    def lock_granted(self, critical_section_id: str) -> bool:
        """EntityLockGranted arrived: enter the critical section (False if it is not ours)."""
        if self.lock_request is None or self.lock_request[0] != critical_section_id:
            return False
        section, task, lock_set = self.lock_request
        self.lock_request = None
        self._critical_section = section
        self._locked = set(lock_set)
        self._calls_outstanding.clear()
        task.complete(EntityLock(self.context))
        return True

    def entity_call_done(self, request_id: str) -> tuple[CompletableTask[Any], str, str] | None:
        """Pop the waiting call for ``request_id`` (None if unknown or already done)."""
        entry = self.entity_calls.pop(request_id, None)
        if entry is not None:
            self._calls_outstanding.discard(entry[1])
        return entry

    def rekey_from_history(self, action: Action, recorded_id: str) -> None:
        """Use the request/critical-section id recorded in history for a replayed entity action."""
        if isinstance(action, CallEntityAction) and recorded_id != action.request_id:
            entry = self.entity_calls.pop(action.request_id, None)
            if entry is not None:
                self.entity_calls[recorded_id] = entry
        elif isinstance(action, LockEntitiesAction) and self.lock_request is not None:
            if self.lock_request[0] == action.critical_section_id:
                self.lock_request = (recorded_id, *self.lock_request[1:])

    def _exit_critical_section(self) -> None:
        if self._critical_section is None:
            return
        for target in sorted(self._locked):
            self._add(UnlockEntityAction(self.next_id(), target, self._critical_section))
        self._critical_section = None
        self._locked = set()
        self._calls_outstanding.clear()


def operation_argument(method: str, positional: str | None, alias: str | None) -> str:
    """The operation name given either way: durabletask names it ``operation`` in ``call_entity``
    and ``operation_name`` in ``signal_entity``; both keywords are accepted in both places."""
    if positional is not None and alias is not None and positional != alias:
        raise InvalidArgumentError(f"{method}(): give the operation once (operation or operation_name), not both")
    op = positional if positional is not None else alias
    if not isinstance(op, str) or not op:
        raise InvalidArgumentError(f"{method}(): the operation name must be a non-empty string, got {op!r}")
    return op


class RuntimeOrchestrationContext(OrchestrationContext):
    """``ctx`` for orchestrator code: the documented API, delegated to its :class:`ExecutionState`."""

    __slots__ = ("__execution",)

    def __init__(self, execution: ExecutionState) -> None:
        self.__execution = execution

    @property
    def instance_id(self) -> str:
        return self.__execution.instance_id

    @property
    def parent_instance_id(self) -> str | None:
        return self.__execution.parent_instance_id

    @property
    def current_utc_datetime(self) -> datetime:
        return self.__execution.current_utc_datetime

    @property
    def is_replaying(self) -> bool:
        return self.__execution.is_replaying

    @property
    def version(self) -> str | None:
        return self.__execution.version

    def set_custom_status(self, custom_status: Any) -> None:
        self.__execution.set_custom_status(custom_status)

    def create_timer(self, fire_at: datetime | timedelta) -> TimerTask:
        return self.__execution.create_timer(fire_at)

    def call_activity(
        self,
        activity: Callable[..., Any] | str,
        *,
        input: Any = None,
        retry_policy: RetryPolicy | None = None,
        tags: dict[str, str] | None = None,
    ) -> CompletableTask[Any]:
        return self.__execution.call_activity(activity, input=input, retry_policy=retry_policy, tags=tags)

    def call_sub_orchestrator(
        self,
        orchestrator: Callable[..., Any] | str,
        *,
        input: Any = None,
        instance_id: str | None = None,
        retry_policy: RetryPolicy | None = None,
        version: str | None = None,
    ) -> CompletableTask[Any]:
        return self.__execution.call_sub_orchestrator(
            orchestrator, input=input, instance_id=instance_id, retry_policy=retry_policy, version=version)

    def wait_for_external_event(self, name: str) -> CancellableTask[Any]:
        return self.__execution.wait_for_external_event(name)

    def send_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        self.__execution.send_event(instance_id, event_name, data=data)

    def continue_as_new(self, new_input: Any, *, save_events: bool = False) -> None:
        self.__execution.continue_as_new(new_input, save_events=save_events)

    def new_uuid(self) -> str:
        return self.__execution.new_uuid()

    def call_entity(self, entity_id: Any, operation: str | None = None, input: Any = None, *,
                    operation_name: str | None = None) -> CompletableTask[Any]:
        op = operation_argument("call_entity", operation, operation_name)
        return self.__execution.call_entity(entity_id, op, input)

    def signal_entity(self, entity_id: Any, operation_name: str | None = None, input: Any = None,
                      signal_time: datetime | None = None, *, operation: str | None = None) -> None:
        op = operation_argument("signal_entity", operation_name, operation)
        self.__execution.signal_entity(entity_id, op, input, signal_time)

    def lock_entities(self, entity_ids: Sequence[Any]) -> CompletableTask[EntityLock]:
        return self.__execution.lock_entities(entity_ids)

    def _exit_critical_section(self) -> None:
        self.__execution._exit_critical_section()
