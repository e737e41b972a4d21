"""The public task model orchestrator code is written against.

Names and semantics mirror durabletask-python's ``durabletask.task`` so orchestrators port by
changing imports: an orchestrator is a generator ``def orch(ctx, input)`` that ``yield``\\ s
tasks; each ``yield`` gives back the task's result or raises its failure in the generator.

The tasks here are plain state holders: the replay executor
(:mod:`durable_kafka.processors.executor`) completes them from history events, so nothing in
this module does I/O or reads a clock.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, TypeAlias, TypeVar

from durable_kafka.errors import (
    InvalidArgumentError,
    NonDeterminismError,
    OrchestrationError,
    TaskCancelledError,
    TaskFailedError,
)
from durable_kafka.streams.events import FailureDetails

__all__ = [
    "Activity",
    "ActivityContext",
    "CancellableTask",
    "CompletableTask",
    "CompositeTask",
    "EntityLock",
    "FailureDetails",
    "NonDeterminismError",
    "OrchestrationContext",
    "Orchestrator",
    "ReplaySafeLogger",
    "RetryPolicy",
    "RetryableTask",
    "Task",
    "TaskCancelledError",
    "TaskFailedError",
    "TimerTask",
    "WhenAllTask",
    "WhenAnyTask",
    "get_name",
    "when_all",
    "when_any",
]

T = TypeVar("T")


# --------------------------------------------------------------------------- tasks


class Task(ABC, Generic[T]):
    """Something an orchestrator can ``yield`` and later read a result or a failure from."""

    def __init__(self) -> None:
        self._is_complete = False
        self._result: Any = None
        self._exception: OrchestrationError | None = None
        self._parent: CompositeTask[Any] | None = None

    @property
    def is_complete(self) -> bool:
        """True once the task has a result, a failure, or was cancelled."""
        return self._is_complete

    @property
    def is_failed(self) -> bool:
        """True if the task completed with a failure."""
        return self._exception is not None

    def get_result(self) -> T:
        """The task's result; raises its failure if it failed, ValueError if still pending."""
        if not self._is_complete:
            raise ValueError("The task has not completed.")
        if self._exception is not None:
            raise self._exception
        result: T = self._result
        return result

    def get_exception(self) -> OrchestrationError:
        """The failure of a failed task; ValueError if it did not fail."""
        if self._exception is None:
            raise ValueError("The task has not failed.")
        return self._exception

    def _notify_parent(self) -> None:
        if self._parent is not None:
            self._parent.on_child_completed(self)


class CompletableTask(Task[T]):
    """A task the executor completes from a history event (activity, sub-orchestration, ...)."""

    def complete(self, result: T) -> None:
        """Record the result and wake the composite task waiting on this one, if any."""
        if self._is_complete:
            raise ValueError("The task has already completed.")
        self._result = result
        self._is_complete = True
        self._notify_parent()

    def fail(self, message: str, details: FailureDetails) -> None:
        """Record a failure as a :class:`TaskFailedError` carrying ``details``."""
        if self._is_complete:
            raise ValueError("The task has already completed.")
        self._exception = TaskFailedError(message, details)
        self._is_complete = True
        self._notify_parent()


class CancellableTask(CompletableTask[T]):
    """A task whose wait can be abandoned: durable timers and external-event waits.

    Cancelling removes the task from the orchestration's bookkeeping (a timer not yet sent is
    never scheduled; an event wait stops being a candidate for delivery) and completes it, so a
    composite parent sees it as done. Reading the result of a cancelled task raises
    :class:`TaskCancelledError`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._is_cancelled = False
        self._cancel_handler: Callable[[], None] | None = None

    @property
    def is_cancelled(self) -> bool:
        """True if :meth:`cancel` took effect."""
        return self._is_cancelled

    def set_cancel_handler(self, handler: Callable[[], None]) -> None:
        """Called by the executor: what to undo when the task is cancelled."""
        self._cancel_handler = handler

    def cancel(self) -> bool:
        """Cancel the task; False if it had already completed."""
        if self._is_complete:
            return False
        if self._cancel_handler is not None:
            self._cancel_handler()
        self._is_cancelled = True
        self._exception = TaskCancelledError("The task was cancelled.")
        self._is_complete = True
        self._notify_parent()
        return True

    @property
    def is_failed(self) -> bool:
        """A cancelled task is complete but not failed."""
        return self._exception is not None and not self._is_cancelled


class TimerTask(CancellableTask[None]):
    """A durable timer; its result is None.

    A timer created by a retry policy between attempts has a retryable parent: when it fires,
    the executor reschedules the parent's activity instead of waking the orchestrator. A timer
    longer than the worker's ``maximum_timer_interval`` is one task behind a chain of shorter
    durable timers (durabletask's long timers); it completes only when ``final_fire_at`` is reached.
    """

    def __init__(self, final_fire_at: datetime | None = None) -> None:
        super().__init__()
        self._retryable_parent: RetryableTask[Any] | None = None
        self._final_fire_at = final_fire_at

    @property
    def final_fire_at(self) -> datetime | None:
        """When the timer completes; a long timer gets there through several shorter durable timers."""
        return self._final_fire_at

    def set_retryable_parent(self, parent: RetryableTask[Any]) -> None:
        """Mark this timer as the back-off delay of ``parent``."""
        self._retryable_parent = parent

    @property
    def retryable_parent(self) -> RetryableTask[Any] | None:
        """The retrying task this timer delays, or None for a user timer."""
        return self._retryable_parent


class RetryableTask(CompletableTask[T]):
    """An activity or sub-orchestration call with a :class:`RetryPolicy`.

    ``start_time`` is ``current_utc_datetime`` when the first attempt was scheduled; the retry
    timeout is measured from it with orchestration time only, so replay decides the same.
    """

    def __init__(self, retry_policy: RetryPolicy, start_time: datetime, is_sub_orch: bool) -> None:
        super().__init__()
        self.retry_policy = retry_policy
        self.start_time = start_time
        self.is_sub_orch = is_sub_orch
        self.attempt_count = 1
        self.schedule: Any = None  # the action template each attempt re-sends (set by executor)

    def increment_attempt_count(self) -> None:
        """Count one more attempt (called when a retry timer is created)."""
        self.attempt_count += 1

    def compute_next_delay(self, now: datetime) -> timedelta | None:
        """The back-off before the next attempt, or None if the policy gives up at ``now``.

        None once ``max_number_of_attempts`` attempts were made, or when the next attempt
        would start (``now`` + the back-off) later than ``retry_timeout`` after the first one.
        """
        policy = self.retry_policy
        if self.attempt_count >= policy.max_number_of_attempts:
            return None
        seconds = policy.first_retry_interval.total_seconds() * math.pow(
            policy.backoff_coefficient, self.attempt_count - 1
        )
        if policy.max_retry_interval is not None:
            seconds = min(seconds, policy.max_retry_interval.total_seconds())
        delay = timedelta(seconds=seconds)
        # The timeout bounds when the next attempt would *start*, not only when this one failed:
        # an attempt due after first attempt + retry_timeout is never made.
        if policy.retry_timeout is not None and now + delay > self.start_time + policy.retry_timeout:
            return None
        return delay


class CompositeTask(Task[T]):
    """A task made of child tasks (``when_all`` / ``when_any``)."""

    def __init__(self, tasks: Sequence[Task[Any]]) -> None:
        super().__init__()
        self._tasks = list(tasks)
        self._completed_tasks = 0
        self._failed_tasks = 0
        for child in self._tasks:
            child._parent = self
        for child in self._tasks:
            if child.is_complete:
                self.on_child_completed(child)

    def get_tasks(self) -> list[Task[Any]]:
        """The children, in the order given."""
        return self._tasks

    @abstractmethod
    def on_child_completed(self, task: Task[Any]) -> None:
        """Called by a child when it completes."""


class WhenAllTask(CompositeTask[list[T]]):
    """Completes when every child completed; then fails with the first failure, if any.

    durabletask-python >= 1.8 semantics (and .NET ``Task.WhenAll``): a failing child does not
    end the wait early; the other children still run to completion first.
    """

    def __init__(self, tasks: Sequence[Task[T]]) -> None:
        self._pending_exception: OrchestrationError | None = None
        super().__init__(tasks)
        if not self._tasks:
            self._result = []
            self._is_complete = True

    @property
    def pending_tasks(self) -> int:
        """How many children have not completed yet."""
        return len(self._tasks) - self._completed_tasks

    def get_completed_tasks(self) -> int:
        """How many children have completed."""
        return self._completed_tasks

    def on_child_completed(self, task: Task[Any]) -> None:
        if self._is_complete:
            return
        self._completed_tasks += 1
        if task._exception is not None:
            self._failed_tasks += 1
            if self._pending_exception is None:
                self._pending_exception = task._exception
        if self._completed_tasks < len(self._tasks):
            return
        self._is_complete = True
        if self._pending_exception is not None:
            self._exception = self._pending_exception
        else:
            self._result = [child._result for child in self._tasks]
        self._notify_parent()


class WhenAnyTask(CompositeTask[Task[T]]):
    """Completes with the first child to complete (successful or failed) as its result."""

    def on_child_completed(self, task: Task[Any]) -> None:
        if self._is_complete:
            return
        self._is_complete = True
        self._result = task
        self._notify_parent()


def when_all(tasks: Sequence[Task[T]]) -> WhenAllTask[T]:
    """A task that completes when all ``tasks`` complete; its result lists their results in order."""
    return WhenAllTask(tasks)


def when_any(tasks: Sequence[Task[T]]) -> WhenAnyTask[T]:
    """A task that completes when any of ``tasks`` completes; its result is that task."""
    return WhenAnyTask(tasks)


# --------------------------------------------------------------------------- retry policy


class RetryPolicy:
    """How often and how far apart a failed activity or sub-orchestration is tried again.

    The delay before attempt ``n + 1`` is ``first_retry_interval * backoff_coefficient ** (n - 1)``,
    capped by ``max_retry_interval``; no new attempt starts after ``max_number_of_attempts``
    attempts or once ``retry_timeout`` has passed since the first attempt. Delays are durable
    timers, so a retry survives worker restarts.
    """

    def __init__(
        self,
        *,
        first_retry_interval: timedelta,
        max_number_of_attempts: int,
        backoff_coefficient: float | None = 1.0,
        max_retry_interval: timedelta | None = None,
        retry_timeout: timedelta | None = None,
    ) -> None:
        if not isinstance(first_retry_interval, timedelta):
            raise InvalidArgumentError("first_retry_interval must be a timedelta")
        if first_retry_interval < timedelta(0):
            raise InvalidArgumentError("first_retry_interval must be >= 0")
        if isinstance(max_number_of_attempts, bool) or not isinstance(max_number_of_attempts, int):
            raise InvalidArgumentError("max_number_of_attempts must be an int")
        if max_number_of_attempts < 1:
            raise InvalidArgumentError("max_number_of_attempts must be >= 1")
        if backoff_coefficient is None:
            backoff_coefficient = 1.0
        if not isinstance(backoff_coefficient, (int, float)) or backoff_coefficient < 1:
            raise InvalidArgumentError("backoff_coefficient must be a number >= 1")
        for name, value in (("max_retry_interval", max_retry_interval), ("retry_timeout", retry_timeout)):
            if value is not None and (not isinstance(value, timedelta) or value < timedelta(0)):
                raise InvalidArgumentError(f"{name} must be a timedelta >= 0 or None")
        self._first_retry_interval = first_retry_interval
        self._max_number_of_attempts = max_number_of_attempts
        self._backoff_coefficient = float(backoff_coefficient)
        self._max_retry_interval = max_retry_interval
        self._retry_timeout = retry_timeout

    @property
    def first_retry_interval(self) -> timedelta:
        """The delay before the second attempt."""
        return self._first_retry_interval

    @property
    def max_number_of_attempts(self) -> int:
        """The total number of attempts, the first one included."""
        return self._max_number_of_attempts

    @property
    def backoff_coefficient(self) -> float:
        """The factor each further delay grows by."""
        return self._backoff_coefficient

    @property
    def max_retry_interval(self) -> timedelta | None:
        """The largest delay between two attempts."""
        return self._max_retry_interval

    @property
    def retry_timeout(self) -> timedelta | None:
        """How long after the first attempt a new attempt may still start (its start time counts)."""
        return self._retry_timeout

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(first_retry_interval={self._first_retry_interval!r}, "
            f"max_number_of_attempts={self._max_number_of_attempts}, "
            f"backoff_coefficient={self._backoff_coefficient}, "
            f"max_retry_interval={self._max_retry_interval!r}, retry_timeout={self._retry_timeout!r})"
        )


# --------------------------------------------------------------------------- contexts


class ActivityContext:
    """What an activity function learns about its invocation."""

    def __init__(self, orchestration_id: str, task_id: int) -> None:
        self._orchestration_id = orchestration_id
        self._task_id = task_id

    @property
    def orchestration_id(self) -> str:
        """The instance id of the orchestration that scheduled the activity."""
        return self._orchestration_id

    @property
    def task_id(self) -> int:
        """The activity's sequence number in that orchestration (unique per instance)."""
        return self._task_id


class ReplaySafeLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that drops records while the orchestrator is replaying history.

    Orchestrator code runs again on every replay; without this each log line would repeat once
    per replay.
    """

    def __init__(self, logger: logging.Logger, is_replaying: Callable[[], bool]) -> None:
        super().__init__(logger, {})
        self._is_replaying = is_replaying

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        if self._is_replaying():
            return False
        return bool(self.logger.isEnabledFor(level))


class EntityLock:
    """The result of ``yield ctx.lock_entities(...)``: leaving the ``with`` block releases the locks."""

    def __init__(self, context: OrchestrationContext) -> None:
        self._context = context

    def __enter__(self) -> EntityLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._context._exit_critical_section()


class OrchestrationContext(ABC):
    """What orchestrator code may do: everything here is replay-safe.

    Time comes from history (``current_utc_datetime``), ids from ``new_uuid``; every method that
    schedules work returns a task to ``yield``.
    """

    __slots__ = ()

    @property
    @abstractmethod
    def instance_id(self) -> str:
        """The id of this orchestration instance."""

    @property
    @abstractmethod
    def parent_instance_id(self) -> str | None:
        """The id of the orchestration that started this one as a sub-orchestration, else None."""

    @property
    @abstractmethod
    def current_utc_datetime(self) -> datetime:
        """The timestamp of the current episode's OrchestratorStarted event (same on replay)."""

    @property
    @abstractmethod
    def is_replaying(self) -> bool:
        """True while the code re-runs past history; False once it handles new events."""

    @property
    def version(self) -> str | None:
        """This instance's orchestration version (given when it was scheduled), or None."""
        return None

    @abstractmethod
    def set_custom_status(self, custom_status: Any) -> None:
        """Set the JSON-serializable custom status shown in the instance's status."""

    @abstractmethod
    def create_timer(self, fire_at: datetime | timedelta) -> TimerTask:
        """A durable timer that fires at ``fire_at`` (or after a delay from now)."""

    @abstractmethod
    def call_activity(
        self,
        activity: Callable[..., Any] | str,
        *,
        input: Any = None,
        retry_policy: RetryPolicy | None = None,
        tags: dict[str, str] | None = None,
    ) -> CompletableTask[Any]:
        """Schedule an activity (by function or name); the task completes with its result."""

    @abstractmethod
    def call_sub_orchestrator(
        self,
        orchestrator: Callable[..., Any] | str,
        *,
        input: Any = None,
        instance_id: str | None = None,
        retry_policy: RetryPolicy | None = None,
        version: str | None = None,
    ) -> CompletableTask[Any]:
        """Start a child orchestration; the task completes with its output.

        ``version``: the child's orchestration version (default: the worker's
        ``VersioningOptions.default_version``)."""

    @abstractmethod
    def wait_for_external_event(self, name: str) -> CancellableTask[Any]:
        """A task completed by the oldest event raised with ``name`` (case-insensitive)."""

    @abstractmethod
    def send_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        """Raise an event on another orchestration instance (one-way)."""

    @abstractmethod
    def continue_as_new(self, new_input: Any, *, save_events: bool = False) -> None:
        """Restart this instance with ``new_input`` and an empty history once the code returns."""

    @abstractmethod
    def new_uuid(self) -> str:
        """A name-based UUID that is the same on every replay."""

    @abstractmethod
    def call_entity(self, entity_id: Any, operation: str | None = None, input: Any = None, *,
                    operation_name: str | None = None) -> CompletableTask[Any]:
        """Call an entity operation and wait for its result (``operation_name=`` is accepted too)."""

    @abstractmethod
    def signal_entity(self, entity_id: Any, operation_name: str | None = None, input: Any = None,
                      signal_time: datetime | None = None, *, operation: str | None = None) -> None:
        """Send a one-way operation to an entity; with ``signal_time``, not before that time.

        The second parameter is durabletask's ``operation_name``; ``operation=`` (this
        project's earlier name, and ``call_entity``'s) is accepted too.

        A scheduled signal is kept durably by the entity's partition (it survives restarts and
        rebalances) and runs at ``signal_time`` at the earliest; a time in the past runs at once.
        """

    @abstractmethod
    def lock_entities(self, entity_ids: Sequence[Any]) -> CompletableTask[EntityLock]:
        """Lock entities for a critical section; the task's result is an :class:`EntityLock`."""

    @abstractmethod
    def _exit_critical_section(self) -> None:
        """Release the locks of the current critical section (called by :class:`EntityLock`)."""

    def create_replay_safe_logger(self, logger: logging.Logger) -> ReplaySafeLogger:
        """Wrap ``logger`` so that it emits nothing while the orchestrator replays."""
        return ReplaySafeLogger(logger, lambda: self.is_replaying)


Orchestrator: TypeAlias = Callable[[OrchestrationContext, Any], Generator[Task[Any], Any, Any] | Any]
Activity: TypeAlias = Callable[[ActivityContext, Any], Any]


def get_name(fn: Callable[..., Any]) -> str:
    """The name an orchestrator or activity function is registered and scheduled under."""
    name = getattr(fn, "__name__", None)
    if not isinstance(name, str) or name == "<lambda>":
        raise InvalidArgumentError(
            "Cannot infer a name from a lambda or an object without __name__; give the name explicitly."
        )
    return name
