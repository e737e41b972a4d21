"""Fan-out/fan-in with when_all, races with when_any, cancellation of the losers."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from durable_kafka import task
from durable_kafka.processors.actions import CompleteOrchestration, CreateTimer, ScheduleTask
from executor_harness import Harness, at, completed, failed, raised, registry_of, timer_fired


def fan_out(ctx: task.OrchestrationContext, n: int) -> Any:
    results = yield task.when_all([ctx.call_activity("square", input=i) for i in range(n)])
    return sum(results)


def test_fan_out_fan_in() -> None:
    h = Harness(registry_of(fan_out))
    r = h.start("fan_out", 4)
    assert r.actions == [ScheduleTask(i + 1, "square", str(i), {}) for i in range(4)]
    assert h.episode(completed(3, 4), completed(1, 0)).actions == []
    r = h.episode(completed(4, 9), completed(2, 1))
    assert r.actions == [CompleteOrchestration("COMPLETED", result="14")]


def test_when_all_with_failure_waits_for_all_then_raises_first_failure() -> None:
    resumed: list[str] = []

    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        tasks = [ctx.call_activity("work", input=i) for i in range(3)]
        try:
            yield task.when_all(tasks)
        except task.TaskFailedError as e:
            resumed.append(str(e))
            return {"error": e.details.message, "done": [t.is_complete for t in tasks]}

    h = Harness(registry_of(orch), check_replay=False)
    h.start("orch")
    r = h.episode(failed(2, "second broke"))
    assert r.actions == [] and not resumed  # not fail-fast: still waiting for #1 and #3
    r = h.episode(failed(3, "third broke"))
    assert r.actions == [] and not resumed
    r = h.episode(completed(1, "ok"))
    assert json.loads(r.output) == {"error": "second broke", "done": [True, True, True]}
    assert resumed == ["inst-1: Activity task #2 failed: second broke"]
    h.assert_replays_same()


def test_when_any_first_wins_and_later_completion_is_ignored() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        a = ctx.call_activity("a")
        b = ctx.call_activity("b")
        winner = yield task.when_any([a, b])
        return "a" if winner is a else "b"

    h = Harness(registry_of(orch))
    h.start("orch")
    r = h.episode(completed(2, None), completed(1, None))
    assert r.output == '"b"'


def test_when_any_returns_a_failed_task_as_winner() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        a = ctx.call_activity("a")
        winner = yield task.when_any([a, ctx.create_timer(timedelta(hours=1))])
        return {"failed": winner.is_failed, "is_a": winner is a}

    h = Harness(registry_of(orch))
    h.start("orch")
    r = h.episode(failed(1, "x"))
    assert json.loads(r.output) == {"failed": True, "is_a": True}


def approval(ctx: task.OrchestrationContext, _: Any) -> Any:
    timeout = ctx.create_timer(timedelta(minutes=5))
    answer = ctx.wait_for_external_event("Approval")
    winner = yield task.when_any([answer, timeout])
    if winner is answer:
        timeout.cancel()
        return {"approved": answer.get_result()}
    answer.cancel()
    second = yield ctx.wait_for_external_event("Approval")  # a fresh wait after the timeout
    return {"timed_out": True, "late": second}


def test_event_beats_timer_and_cancelled_timer_does_not_block_completion() -> None:
    h = Harness(registry_of(approval))
    r = h.start("approval")
    assert r.actions == [CreateTimer(1, at(300))]
    r = h.episode(raised("approval", "yes"), now=at(10))
    assert r.runtime_status == "COMPLETED" and json.loads(r.output) == {"approved": "yes"}
    assert r.actions == [CompleteOrchestration("COMPLETED", result='{"approved": "yes"}')]


def test_timer_beats_event_and_cancelled_wait_does_not_consume_later_event() -> None:
    h = Harness(registry_of(approval))
    h.start("approval")
    r = h.episode(timer_fired(1, at(300)), now=at(300))
    assert r.actions == [] and r.runtime_status == "RUNNING"
    r = h.episode(raised("Approval", "late yes"), now=at(400))
    # the cancelled first wait did not swallow the event: the second wait got it
    assert json.loads(r.output) == {"timed_out": True, "late": "late yes"}


def test_cancelled_timer_firing_later_is_ignored() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        timer = ctx.create_timer(timedelta(minutes=5))
        answer = ctx.wait_for_external_event("go")
        yield task.when_any([answer, timer])
        timer.cancel()
        return (yield ctx.call_activity("after"))

    h = Harness(registry_of(orch))
    assert h.start("orch").actions == [CreateTimer(1, at(300))]
    r = h.episode(raised("go"))
    assert r.actions == [ScheduleTask(2, "after", None, {})]
    r = h.episode(timer_fired(1, at(300)), now=at(300))  # the cancelled timer fires anyway: ignored
    assert r.actions == [] and r.runtime_status == "RUNNING"
    assert h.episode(completed(2, 1)).output == "1"


def test_timer_cancelled_in_the_same_episode_is_never_scheduled() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("first")
        timer = ctx.create_timer(timedelta(minutes=5))
        answer = ctx.wait_for_external_event("go")  # already buffered: completes at once
        winner = yield task.when_any([answer, timer])
        timer.cancel()
        return winner is answer

    h = Harness(registry_of(orch))
    h.start("orch")
    r = h.episode(raised("go"), completed(1))
    assert r.actions == [CompleteOrchestration("COMPLETED", result="true")]  # no CreateTimer(2)


def test_composite_of_already_completed_children_does_not_hang() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        empty = yield task.when_all([])
        first = yield ctx.wait_for_external_event("x")
        both = yield task.when_all([ctx.wait_for_external_event("x"), ctx.wait_for_external_event("x")])
        return [empty, first, both]

    h = Harness(registry_of(orch))
    r = h.start("orch")
    assert r.runtime_status == "RUNNING"
    r = h.episode(raised("x", 1), raised("x", 2), raised("x", 3))
    assert json.loads(r.output) == [[], 1, [2, 3]]
