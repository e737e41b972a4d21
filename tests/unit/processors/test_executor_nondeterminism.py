"""Replay divergence: the history says one call, the code now makes another (or none)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from durable_kafka import task
from durable_kafka.processors.actions import CompleteOrchestration
from durable_kafka.processors.executor import ExecutionResult, OrchestrationExecutor
from durable_kafka.streams import events as ev
from executor_harness import IID, T0, at, completed, os_, raised, registry_of, scheduled, started, timer_created


def replay(fn: Any, history: list[ev.HistoryEvent], new: list[ev.HistoryEvent]) -> ExecutionResult:
    return OrchestrationExecutor(registry_of(fn)).execute(IID, [os_(), started(fn.__name__), *history], new)


def assert_nondeterminism(result: ExecutionResult, *fragments: str) -> str:
    assert result.runtime_status == "FAILED"
    (done,) = result.actions
    assert isinstance(done, CompleteOrchestration) and done.status == "FAILED"
    assert done.failure_details.error_type == "durable_kafka.errors.NonDeterminismError"
    message = done.failure_details.message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def test_wrong_action_type() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        return (yield ctx.call_activity("do_work"))

    result = replay(orch, [timer_created(1, at(5))], [ev.TimerFired(-1, at(5), timer_id=1, fire_at=at(5))])
    message = assert_nondeterminism(result, "sequence number 1", "create_timer()", "call_activity(name='do_work')")
    assert message.index("create_timer") < message.index("call_activity")  # history first, then code


def test_wrong_activity_name() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        return (yield ctx.call_activity("renamed_activity"))

    result = replay(orch, [scheduled(1, "original_activity")], [completed(1)])
    assert_nondeterminism(
        result, "sequence number 1", "call_activity(name='original_activity')", "call_activity(name='renamed_activity')"
    )


def test_wrong_send_event_target() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        ctx.send_event("instance-B", "ping")
        yield ctx.create_timer(timedelta(seconds=1))

    sent = ev.EventSent(1, T0, instance_id="instance-A", name="ping")
    result = replay(orch, [sent, timer_created(2, at(1))], [ev.TimerFired(-1, at(1), timer_id=2, fire_at=at(1))])
    assert_nondeterminism(
        result, "sequence number 1", "send_event(instance_id='instance-A', name='ping')",
        "send_event(instance_id='instance-B', name='ping')",
    )


def test_missing_action() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        return (yield ctx.wait_for_external_event("go"))  # v1 called an activity first

    result = replay(orch, [scheduled(1, "step_one")], [completed(1)])
    assert_nondeterminism(result, "sequence number 1", "call_activity(name='step_one')", "made no call")


def test_code_that_now_ends_early_is_divergence_too() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        return "done at once"  # v1 scheduled an activity

    result = replay(orch, [scheduled(1, "step_one")], [completed(1)])
    assert_nondeterminism(result, "sequence number 1", "step_one")


@pytest.mark.parametrize("replaying_old", [True, False])
def test_divergence_is_detected_both_in_replay_and_in_new_events(replaying_old: bool) -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity("b")

    history = [scheduled(1, "a")]
    old, new = (history, [raised("x")]) if replaying_old else ([], history)
    result = replay(orch, old, new)
    assert_nondeterminism(result, "call_activity(name='a')", "call_activity(name='b')")


def test_inputs_are_not_compared() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        return (yield ctx.call_activity("a", input="new input"))

    old = [ev.TaskScheduled(1, T0, name="a", input='"old input"')]
    assert replay(orch, old, [completed(1, 5)]).output == "5"
