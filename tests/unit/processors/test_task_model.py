"""The public task model on its own: composite tasks, cancellation, retry policy, names."""

from __future__ import annotations

from datetime import timedelta

import pytest

from durable_kafka import task
from durable_kafka.errors import InvalidArgumentError, TaskCancelledError, TaskFailedError
from durable_kafka.streams.events import FailureDetails
from executor_harness import T0, at

DETAILS = FailureDetails(message="bad", error_type="ValueError", stack_trace=None)


def test_completable_task_result_and_failure() -> None:
    ok: task.CompletableTask[int] = task.CompletableTask()
    assert not ok.is_complete
    with pytest.raises(ValueError):
        ok.get_result()
    ok.complete(5)
    assert ok.is_complete and not ok.is_failed and ok.get_result() == 5
    with pytest.raises(ValueError):
        ok.complete(6)

    bad: task.CompletableTask[int] = task.CompletableTask()
    bad.fail("it failed", DETAILS)
    assert bad.is_complete and bad.is_failed
    with pytest.raises(TaskFailedError) as info:
        bad.get_result()
    assert info.value.details.error_type == "ValueError"
    assert bad.get_exception() is info.value


def test_when_all_waits_for_every_child_then_raises_first_failure() -> None:
    a, b, c = task.CompletableTask(), task.CompletableTask(), task.CompletableTask()
    both = task.when_all([a, b, c])
    b.fail("b failed", DETAILS)
    assert not both.is_complete and not both.is_failed  # not fail-fast
    a.fail("a failed", DETAILS)
    assert not both.is_complete
    c.complete(3)
    assert both.is_complete and both.is_failed
    assert str(both.get_exception()) == "b failed"  # the first failure, in completion order


def test_when_all_results_keep_the_given_order() -> None:
    a, b = task.CompletableTask(), task.CompletableTask()
    both = task.when_all([a, b])
    b.complete("B")
    a.complete("A")
    assert both.get_result() == ["A", "B"]
    assert task.when_all([]).get_result() == []


def test_when_any_returns_the_first_completed_child_even_if_failed() -> None:
    a, b = task.CompletableTask(), task.CompletableTask()
    first = task.when_any([a, b])
    b.fail("b failed", DETAILS)
    a.complete(1)
    assert first.is_complete and not first.is_failed
    assert first.get_result() is b


def test_cancelled_task_completes_parent_and_refuses_result() -> None:
    calls = []
    timer = task.TimerTask()
    timer.set_cancel_handler(lambda: calls.append("undo"))
    other: task.CompletableTask[int] = task.CompletableTask()
    race = task.when_any([timer, other])
    assert timer.cancel() is True
    assert calls == ["undo"] and timer.is_cancelled and timer.is_complete and not timer.is_failed
    assert race.get_result() is timer
    with pytest.raises(TaskCancelledError):
        timer.get_result()
    assert timer.cancel() is False


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first_retry_interval": timedelta(seconds=-1), "max_number_of_attempts": 3},
        {"first_retry_interval": timedelta(seconds=1), "max_number_of_attempts": 0},
        {"first_retry_interval": timedelta(seconds=1), "max_number_of_attempts": 3, "backoff_coefficient": 0.5},
        {"first_retry_interval": timedelta(seconds=1), "max_number_of_attempts": 3, "max_retry_interval": timedelta(-1)},
        {"first_retry_interval": timedelta(seconds=1), "max_number_of_attempts": 3, "retry_timeout": timedelta(-1)},
        {"first_retry_interval": 1, "max_number_of_attempts": 3},
        {"first_retry_interval": timedelta(seconds=1), "max_number_of_attempts": 2.5},
    ],
)
def test_retry_policy_rejects_bad_values_with_typed_errors(kwargs: dict) -> None:
    with pytest.raises(InvalidArgumentError):
        task.RetryPolicy(**kwargs)


def test_retry_delays_back_off_cap_and_stop() -> None:
    policy = task.RetryPolicy(
        first_retry_interval=timedelta(seconds=1), max_number_of_attempts=6, backoff_coefficient=2,
        max_retry_interval=timedelta(seconds=10), retry_timeout=timedelta(seconds=100),
    )
    retrying: task.RetryableTask[int] = task.RetryableTask(policy, T0, is_sub_orch=False)
    delays = []
    while (delay := retrying.compute_next_delay(T0)) is not None:
        delays.append(delay.total_seconds())
        retrying.increment_attempt_count()
    assert delays == [1, 2, 4, 8, 10]  # 5 retries = 6 attempts, the last delay capped at 10 s
    fresh: task.RetryableTask[int] = task.RetryableTask(policy, T0, is_sub_orch=False)
    assert fresh.compute_next_delay(at(99)) is not None
    assert fresh.compute_next_delay(at(100)) is None  # retry_timeout measured from the first attempt


def test_get_name() -> None:
    def my_activity(ctx: task.ActivityContext, x: int) -> int:
        return x

    assert task.get_name(my_activity) == "my_activity"
    with pytest.raises(InvalidArgumentError):
        task.get_name(lambda c, x: x)


def test_activity_context_and_reexports() -> None:
    actx = task.ActivityContext("inst", 7)
    assert (actx.orchestration_id, actx.task_id) == ("inst", 7)
    from durable_kafka import errors
    from durable_kafka.streams import events

    assert task.FailureDetails is events.FailureDetails
    assert task.TaskFailedError is errors.TaskFailedError
    assert task.NonDeterminismError is errors.NonDeterminismError
    assert sorted(task.__all__) == task.__all__
