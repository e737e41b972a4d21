"""Sub-orchestrations and retry policies (durable back-off timers)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from durable_kafka import task
from durable_kafka.processors.actions import CompleteOrchestration, CreateSubOrchestration, CreateTimer, ScheduleTask
from durable_kafka.streams import events as ev
from executor_harness import IID, T0, Harness, at, completed, failed, registry_of, timer_fired


def child(ctx: task.OrchestrationContext, x: int) -> int:
    return x + 1


def parent(ctx: task.OrchestrationContext, _: Any) -> Any:
    a = yield ctx.call_sub_orchestrator(child, input=1)
    try:
        yield ctx.call_sub_orchestrator("child", input=2, instance_id="fixed-child")
    except task.TaskFailedError as e:
        return {"a": a, "error": str(e), "type": e.details.error_type}


def sub_completed(seq: int, result: Any) -> ev.SubOrchestrationInstanceCompleted:
    return ev.SubOrchestrationInstanceCompleted(-1, T0, task_scheduled_id=seq, result=json.dumps(result))


def sub_failed(seq: int, message: str) -> ev.SubOrchestrationInstanceFailed:
    details = ev.FailureDetails(message=message, error_type="TaskFailedError", stack_trace="child trace")
    return ev.SubOrchestrationInstanceFailed(-1, T0, task_scheduled_id=seq, failure_details=details)


def test_sub_orchestration_result_and_failure_in_parent() -> None:
    h = Harness(registry_of(parent, child))
    r = h.start("parent")
    assert r.actions == [CreateSubOrchestration(1, "child", f"{IID}:0001", "1")]  # deterministic child id
    r = h.episode(sub_completed(1, 2))
    assert r.actions == [CreateSubOrchestration(2, "child", "fixed-child", "2")]
    r = h.episode(sub_failed(2, "child blew up"))
    assert json.loads(r.output) == {
        "a": 2, "error": "Sub-orchestration task #2 failed: child blew up", "type": "TaskFailedError",
    }


def flaky(ctx: task.OrchestrationContext, _: Any) -> Any:
    policy = task.RetryPolicy(
        first_retry_interval=timedelta(seconds=1), max_number_of_attempts=4, backoff_coefficient=2,
        max_retry_interval=timedelta(seconds=3),
    )
    return (yield ctx.call_activity("unreliable", input="x", retry_policy=policy, tags={"k": "v"}))


def test_activity_retries_with_backoff_then_fails_with_last_failure() -> None:
    h = Harness(registry_of(flaky))
    assert h.start("flaky").actions == [ScheduleTask(1, "unreliable", '"x"', {"k": "v"})]
    # attempt 1 fails at t=10 -> timer at 10 + 1
    r = h.episode(failed(1, "fail 1"), now=at(10))
    assert r.actions == [CreateTimer(2, at(11))]
    r = h.episode(timer_fired(2, at(11)), now=at(11))
    assert r.actions == [ScheduleTask(3, "unreliable", '"x"', {"k": "v"})]  # new sequence number
    # attempt 2 fails at t=20 -> delay 1 * 2^1 = 2
    assert h.episode(failed(3, "fail 2"), now=at(20)).actions == [CreateTimer(4, at(22))]
    assert h.episode(timer_fired(4, at(22)), now=at(22)).actions[0].id == 5
    # attempt 3 fails at t=30 -> delay 4, capped to 3
    assert h.episode(failed(5, "fail 3"), now=at(30)).actions == [CreateTimer(6, at(33))]
    assert h.episode(timer_fired(6, at(33)), now=at(33)).actions == [ScheduleTask(7, "unreliable", '"x"', {"k": "v"})]
    # attempt 4 = max_number_of_attempts: the task fails with the last failure
    r = h.episode(failed(7, "fail 4"), now=at(40))
    assert r.runtime_status == "FAILED"
    # named by its first attempt (#1), as durabletask does, though attempt 4 was task #7
    assert r.failure_details.message == f"{IID}: Activity task #1 failed: fail 4"


def test_retry_succeeds_on_second_attempt() -> None:
    h = Harness(registry_of(flaky))
    h.start("flaky")
    h.episode(failed(1, "transient"), now=at(5))
    h.episode(timer_fired(2, at(6)), now=at(6))
    r = h.episode(completed(3, "finally"), now=at(7))
    assert r.actions == [CompleteOrchestration("COMPLETED", result='"finally"')]


def test_retry_timeout_is_measured_from_the_first_attempt_in_orchestration_time() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        policy = task.RetryPolicy(
            first_retry_interval=timedelta(seconds=10), max_number_of_attempts=100,
            retry_timeout=timedelta(seconds=60),
        )
        return (yield ctx.call_activity("slow", retry_policy=policy))

    h = Harness(registry_of(orch))
    h.start("orch")  # first attempt at T0
    assert h.episode(failed(1, "f1"), now=at(50)).actions == [CreateTimer(2, at(60))]
    h.episode(timer_fired(2, at(60)), now=at(60))
    r = h.episode(failed(3, "f2"), now=at(61))  # 61 s after the first attempt: give up
    assert r.runtime_status == "FAILED" and r.failure_details.message == f"{IID}: Activity task #1 failed: f2"


def test_sub_orchestration_retry_reuses_the_child_instance_id() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        policy = task.RetryPolicy(first_retry_interval=timedelta(seconds=5), max_number_of_attempts=2)
        return (yield ctx.call_sub_orchestrator(child, input=1, retry_policy=policy))

    h = Harness(registry_of(orch, child))
    assert h.start("orch").actions == [CreateSubOrchestration(1, "child", f"{IID}:0001", "1")]
    assert h.episode(sub_failed(1, "c1")).actions == [CreateTimer(2, at(5))]
    r = h.episode(timer_fired(2, at(5)), now=at(5))
    assert r.actions == [CreateSubOrchestration(3, "child", f"{IID}:0001", "1")]
    r = h.episode(sub_failed(3, "c2"), now=at(6))
    assert r.failure_details.message == "Sub-orchestration task #1 failed: c2"  # durabletask: no instance prefix
