"""Retries, long timers and scheduled signals as durabletask-python does them (issue 9)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from durable_kafka import task
from durable_kafka.errors import ConfigurationError
from durable_kafka.processors.actions import CreateTimer, ScheduleTask, SignalEntityAction
from durable_kafka.processors.executor import DEFAULT_MAXIMUM_TIMER_INTERVAL, OrchestrationExecutor
from durable_kafka.streams import events as ev
from executor_harness import IID, T0, Harness, at, failed, registry_of, timer_fired

DAY = timedelta(days=1)


def _retrying(timeout_s: float) -> Any:
    def retry_timeout_orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        policy = task.RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=5,
                                  backoff_coefficient=2, max_retry_interval=timedelta(seconds=10),
                                  retry_timeout=timedelta(seconds=timeout_s))
        return (yield ctx.call_activity("throw", retry_policy=policy))
    return retry_timeout_orch


def _attempts_until_failure(timeout_s: float) -> tuple[int, Any]:
    """Each attempt fails at once; delays 1, 2, 4, 8 s put attempts at 0, 1, 3, 7, 15 s."""
    h = Harness(registry_of(_retrying(timeout_s)))
    r = h.start("retry_timeout_orch")
    attempts, now = 1, 0.0
    while True:
        (action,) = r.actions
        assert isinstance(action, ScheduleTask)
        r = h.episode(failed(action.id, "Kah-BOOOOM!!!", "builtins.RuntimeError"), now=at(now))
        if r.runtime_status == "FAILED":
            return attempts, r
        (timer,) = r.actions
        assert isinstance(timer, CreateTimer)
        now = (timer.fire_at - T0).total_seconds()
        r = h.episode(timer_fired(timer.id, timer.fire_at), now=timer.fire_at)
        attempts += 1


def test_retry_timeout_counts_the_start_of_the_next_attempt() -> None:
    attempts, r = _attempts_until_failure(14)  # the 5th attempt would start at 15 s > 14 s
    assert attempts == 4
    assert r.failure_details.message == f"{IID}: Activity task #1 failed: Kah-BOOOOM!!!"
    assert r.failure_details.is_caused_by(task.TaskFailedError)
    assert r.failure_details.inner_failure.error_type == "builtins.RuntimeError"


def test_retry_timeout_boundary_an_attempt_due_exactly_at_the_timeout_still_runs() -> None:
    assert _attempts_until_failure(15)[0] == 5  # due at 15 s = first attempt + timeout: allowed
    assert _attempts_until_failure(14.999)[0] == 4


def test_the_policy_never_gives_up_early_without_a_timeout() -> None:
    policy = task.RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=3)
    retry = task.RetryableTask(policy, T0, is_sub_orch=False)
    assert retry.compute_next_delay(at(1000)) == timedelta(seconds=1)


# --------------------------------------------------------------------------- long timers


def sleeper(ctx: task.OrchestrationContext, days: float) -> Any:
    yield ctx.create_timer(timedelta(days=days))
    return "awake"


def _harness(interval: timedelta | None) -> Harness:
    h = Harness(registry_of(sleeper))
    h.executor = OrchestrationExecutor(h.executor.registry, maximum_timer_interval=interval)
    h.live = h.executor.start(IID)
    return h


def test_the_default_maximum_timer_interval_is_durabletasks() -> None:
    assert DEFAULT_MAXIMUM_TIMER_INTERVAL == timedelta(days=3)
    assert OrchestrationExecutor(registry_of(sleeper)).maximum_timer_interval == timedelta(days=3)


def test_a_long_timer_is_chained_in_pieces_with_durabletasks_history() -> None:
    h = _harness(timedelta(days=3))
    final = T0 + 7 * DAY
    assert h.start("sleeper", 7).actions == [CreateTimer(1, T0 + 3 * DAY)]
    r = h.episode(timer_fired(1, T0 + 3 * DAY), now=T0 + 3 * DAY)
    assert r.actions == [CreateTimer(2, T0 + 6 * DAY)] and r.runtime_status == "RUNNING"
    r = h.episode(timer_fired(2, T0 + 6 * DAY), now=T0 + 6 * DAY)
    assert r.actions == [CreateTimer(3, final)]  # the last piece ends exactly at the timer's end
    r = h.episode(timer_fired(3, final), now=final)
    assert r.runtime_status == "COMPLETED" and r.output == '"awake"'
    kinds = [(type(e).__name__, getattr(e, "event_id", None)) for e in h.history
             if isinstance(e, (ev.TimerCreated, ev.TimerFired))]
    assert [k for k, _ in kinds] == ["TimerCreated", "TimerFired"] * 3


def test_a_timer_up_to_the_interval_is_one_timer() -> None:
    h = _harness(timedelta(days=3))
    assert h.start("sleeper", 3).actions == [CreateTimer(1, T0 + 3 * DAY)]
    assert h.episode(timer_fired(1, T0 + 3 * DAY), now=T0 + 3 * DAY).runtime_status == "COMPLETED"


def test_none_never_splits() -> None:
    h = _harness(None)
    assert h.start("sleeper", 30).actions == [CreateTimer(1, T0 + 30 * DAY)]


def test_a_piece_that_fires_late_leads_to_the_next_from_its_fire_time() -> None:
    h = _harness(timedelta(days=3))
    h.start("sleeper", 7)
    late = T0 + 3 * DAY + timedelta(hours=5)  # the worker was down when the first piece fell due
    assert h.episode(timer_fired(1, T0 + 3 * DAY), now=late).actions == [CreateTimer(2, late + 3 * DAY)]


def test_a_chunked_history_replays_on_a_worker_with_another_interval() -> None:
    """A rolling change of maximum_timer_interval: the recorded fire times decide, not the setting."""
    h = _harness(timedelta(days=1))
    h.start("sleeper", 2.5)
    h.episode(timer_fired(1, T0 + DAY), now=T0 + DAY)
    h.episode(timer_fired(2, T0 + 2 * DAY), now=T0 + 2 * DAY)
    for interval in (None, timedelta(days=3), timedelta(hours=1)):
        other = OrchestrationExecutor(h.executor.registry, maximum_timer_interval=interval).start(IID)
        other.apply(h.history)
        assert other.execution.status is None and other.execution.pending_actions == {}  # still waiting
        result = other.step([ev.OrchestratorStarted(-1, T0 + 2.5 * DAY),
                             timer_fired(3, T0 + 2.5 * DAY)])
        assert result.runtime_status == "COMPLETED"


def test_a_long_timer_cancelled_by_when_any_sends_no_further_pieces() -> None:
    def race(ctx: task.OrchestrationContext, _: Any) -> Any:
        timer = ctx.create_timer(timedelta(days=10))
        answer = ctx.wait_for_external_event("go")
        winner = yield task.when_any([timer, answer])
        if winner is answer:
            timer.cancel()
        yield ctx.wait_for_external_event("done")
        return "answered" if winner is answer else "timed out"

    h = Harness(registry_of(race))  # default interval: 3 days
    assert h.start("race").actions == [CreateTimer(1, T0 + 3 * DAY)]
    assert h.episode(timer_fired(1, T0 + 3 * DAY), now=T0 + 3 * DAY).actions == [CreateTimer(2, T0 + 6 * DAY)]
    assert h.episode(ev.EventRaised(-1, T0 + 4 * DAY, name="go", input=None), now=T0 + 4 * DAY).actions == []
    assert h.episode(timer_fired(2, T0 + 6 * DAY), now=T0 + 6 * DAY).actions == []  # no third piece
    r = h.episode(ev.EventRaised(-1, T0 + 7 * DAY, name="done", input=None), now=T0 + 7 * DAY)
    assert r.runtime_status == "COMPLETED" and r.output == '"answered"'


def test_a_retry_back_off_longer_than_the_interval_is_chained_too() -> None:
    def patient(ctx: task.OrchestrationContext, _: Any) -> Any:
        policy = task.RetryPolicy(first_retry_interval=timedelta(days=5), max_number_of_attempts=2)
        return (yield ctx.call_activity("slow", retry_policy=policy))

    h = Harness(registry_of(patient))
    h.start("patient")
    assert h.episode(failed(1)).actions == [CreateTimer(2, T0 + 3 * DAY)]
    assert h.episode(timer_fired(2, T0 + 3 * DAY), now=T0 + 3 * DAY).actions == [CreateTimer(3, T0 + 5 * DAY)]
    r = h.episode(timer_fired(3, T0 + 5 * DAY), now=T0 + 5 * DAY)
    assert r.actions == [ScheduleTask(4, "slow", None, {})]


@pytest.mark.parametrize("bad", [timedelta(0), timedelta(seconds=-1), 5])
def test_a_maximum_timer_interval_must_be_positive(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="maximum_timer_interval"):
        OrchestrationExecutor(registry_of(sleeper), maximum_timer_interval=bad)


# --------------------------------------------------------------------------- scheduled signals


def test_signal_entity_with_a_signal_time_schedules_the_signal() -> None:
    def reminder(ctx: task.OrchestrationContext, _: Any) -> Any:
        ctx.signal_entity("@Counter@c1", "add", 1, signal_time=ctx.current_utc_datetime + timedelta(hours=1))
        ctx.signal_entity("@counter@c1", "add", 2)
        return None

    r = Harness(registry_of(reminder)).start("reminder")
    first, second = r.actions[:2]
    assert isinstance(first, SignalEntityAction) and first.scheduled_time == T0 + timedelta(hours=1)
    assert first.entity_id == "@counter@c1" and first.input == "1"
    assert isinstance(second, SignalEntityAction) and second.scheduled_time is None


def test_a_signal_time_is_rounded_up_to_the_millisecond_never_down() -> None:
    when = T0 + timedelta(seconds=1, microseconds=1)

    def precise(ctx: task.OrchestrationContext, _: Any) -> Any:
        ctx.signal_entity("@counter@c1", "add", signal_time=when)

    (action, _) = Harness(registry_of(precise)).start("precise").actions
    assert action.scheduled_time == T0 + timedelta(seconds=1, milliseconds=1)


def test_a_signal_time_that_is_not_a_datetime_fails_the_orchestration() -> None:
    def wrong(ctx: task.OrchestrationContext, _: Any) -> Any:
        ctx.signal_entity("@counter@c1", "add", signal_time="tomorrow")  # type: ignore[arg-type]

    r = Harness(registry_of(wrong)).start("wrong")
    assert r.runtime_status == "FAILED" and "signal_time" in r.failure_details.message


def test_naive_signal_times_are_utc() -> None:
    def naive(ctx: task.OrchestrationContext, _: Any) -> Any:
        ctx.signal_entity("@counter@c1", "add", signal_time=datetime(2030, 1, 1))

    (action, _) = Harness(registry_of(naive)).start("naive").actions
    assert action.scheduled_time == datetime(2030, 1, 1, tzinfo=T0.tzinfo)
