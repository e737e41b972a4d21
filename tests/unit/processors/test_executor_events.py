"""Timers, external events, suspend/resume, terminate, continue_as_new, send_event."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from durable_kafka import task
from durable_kafka.errors import InvalidArgumentError
from durable_kafka.processors.actions import CompleteOrchestration, CreateTimer, ScheduleTask, SendEvent
from durable_kafka.streams import events as ev
from executor_harness import T0, Harness, at, completed, raised, registry_of, timer_fired


def test_timer_by_delay_and_by_absolute_time() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        yield ctx.create_timer(timedelta(seconds=90))
        yield ctx.create_timer(at(1000).replace(tzinfo=None))  # naive datetimes are UTC
        return ctx.current_utc_datetime.isoformat()

    h = Harness(registry_of(orch))
    assert h.start("orch").actions == [CreateTimer(1, at(90))]
    r = h.episode(timer_fired(1, at(90)), now=at(91))
    assert r.actions == [CreateTimer(2, at(1000))]
    r = h.episode(timer_fired(2, at(1000)), now=at(1000))
    assert json.loads(r.output) == at(1000).isoformat()


def collect(ctx: task.OrchestrationContext, names: list[str]) -> Any:
    got = []
    for name in names:
        got.append((yield ctx.wait_for_external_event(name)))
    return got


def test_events_raised_before_the_wait_are_buffered_fifo_and_case_insensitive() -> None:
    h = Harness(registry_of(collect))
    r = h.start("collect", ["Go", "go", "other", "GO"])
    r = h.episode(raised("GO", 1), raised("other", "o"), raised("gO", 2))
    assert r.runtime_status == "RUNNING"
    r = h.episode(raised("go", 3))
    assert json.loads(r.output) == [1, 2, "o", 3]


def test_event_buffered_before_the_orchestrator_even_starts() -> None:
    h = Harness(registry_of(collect))
    r = h.episode(raised("early", "first"), ev.ExecutionStarted(-1, T0, "collect", "e", input='["early"]'))
    assert json.loads(r.output) == ["first"]


def test_multiple_waiters_on_one_name_are_served_in_order() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        first = ctx.wait_for_external_event("x")
        second = ctx.wait_for_external_event("X")
        return (yield task.when_all([second, first]))

    h = Harness(registry_of(orch))
    h.start("orch")
    assert h.episode(raised("x", "a")).runtime_status == "RUNNING"
    assert json.loads(h.episode(raised("x", "b")).output) == ["b", "a"]


def test_send_event_action() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        ctx.send_event("other-instance", "Ping", data={"n": 1})
        return None

    r = Harness(registry_of(orch)).start("orch")
    assert r.actions == [SendEvent(1, "other-instance", "Ping", '{"n": 1}'), CompleteOrchestration("COMPLETED")]


def test_send_event_rejects_bad_targets() -> None:
    def orch(ctx: task.OrchestrationContext, target: str) -> Any:
        ctx.send_event(target, "e")

    for target in ["", "@counter@k"]:
        r = Harness(registry_of(orch)).start("orch", target)
        assert r.failure_details.error_type == f"{InvalidArgumentError.__module__}.{InvalidArgumentError.__qualname__}"


def test_suspend_holds_events_until_resume() -> None:
    h = Harness(registry_of(collect))
    h.start("collect", ["a", "b"])
    r = h.episode(ev.ExecutionSuspended(-1, T0, input="maintenance"))
    assert r.is_suspended and r.runtime_status == "SUSPENDED"
    r = h.episode(raised("a", 1), raised("b", 2))
    assert r.actions == [] and r.is_suspended and r.output is None
    r = h.episode(ev.ExecutionResumed(-1, T0), now=at(60))
    assert not r.is_suspended and json.loads(r.output) == [1, 2]


def test_suspended_activity_result_is_delivered_after_resume() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        a = yield ctx.call_activity("a")
        b = yield ctx.call_activity("b")
        return [a, b]

    h = Harness(registry_of(orch))
    h.start("orch")
    h.episode(ev.ExecutionSuspended(-1, T0))
    assert h.episode(completed(1, "A")).actions == []
    r = h.episode(ev.ExecutionResumed(-1, T0))
    assert r.actions == [ScheduleTask(2, "b", None, {})]


def test_terminate_completes_with_the_given_output_and_drops_later_events() -> None:
    h = Harness(registry_of(collect))
    h.start("collect", ["a"])
    h.episode(ev.ExecutionSuspended(-1, T0))  # terminate works on a suspended instance too
    r = h.episode(ev.ExecutionTerminated(-1, T0, input='"stopped by ops"'), raised("a", 1))
    assert r.actions == [CompleteOrchestration("TERMINATED", result='"stopped by ops"')]
    assert r.runtime_status == "TERMINATED" and r.is_complete


def test_events_after_completion_in_the_same_batch_are_ignored() -> None:
    h = Harness(registry_of(collect))
    h.start("collect", ["a"])
    r = h.episode(raised("a", 1), raised("a", 2), completed(7, "x"))
    assert r.actions == [CompleteOrchestration("COMPLETED", result="[1]")]


def counter(ctx: task.OrchestrationContext, state: dict) -> Any:
    n = yield ctx.wait_for_external_event("add")
    ctx.continue_as_new({"total": state["total"] + n}, save_events=state.get("save", False))


@pytest.mark.parametrize("save", [False, True])
def test_continue_as_new_carries_unconsumed_events_only_with_save_events(save: bool) -> None:
    h = Harness(registry_of(counter))
    h.start("counter", {"total": 1, "save": save})
    r = h.episode(raised("add", 2), raised("add", 3), raised("Other", "x"))
    (done,) = r.actions
    assert done.status == "CONTINUED_AS_NEW" and r.runtime_status == "CONTINUED_AS_NEW"
    assert json.loads(done.new_input) == {"total": 3}
    assert done.save_events is save
    if save:
        assert [(e.name, e.input) for e in done.carryover_events] == [("add", "3"), ("Other", '"x"')]
    else:
        assert done.carryover_events == []


def test_code_after_continue_as_new_does_not_change_the_outcome() -> None:
    def orch(ctx: task.OrchestrationContext, n: int) -> Any:
        ctx.continue_as_new(n + 1)
        yield ctx.call_activity("never_awaited")

    r = Harness(registry_of(orch)).start("orch", 1)
    assert r.actions[-1] == CompleteOrchestration("CONTINUED_AS_NEW", new_input="2")
