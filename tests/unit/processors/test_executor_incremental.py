"""The incremental form (start/apply/step): linear cost, equivalence with execute, lifecycle."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from durable_kafka import task
from durable_kafka.errors import OrchestrationStateError
from durable_kafka.processors.actions import (
    CallEntityAction,
    CompleteOrchestration,
    CreateSubOrchestration,
    CreateTimer,
    LockEntitiesAction,
    ScheduleTask,
    SendEvent,
    SignalEntityAction,
    UnlockEntityAction,
    action_to_event,
)
from durable_kafka.processors.executor import OrchestrationExecutor
from durable_kafka.streams import events as ev
from executor_harness import IID, T0, Harness, at, completed, os_, registry_of, started

STEPS = 1000
body_entries = 0


def long_chain(ctx: task.OrchestrationContext, n: int) -> Any:
    global body_entries
    total = 0
    for i in range(n):
        body_entries += 1
        total += yield ctx.call_activity("inc", input=i)
    return total


def test_one_thousand_steps_cost_linear_work() -> None:
    global body_entries
    body_entries = 0
    h = Harness(registry_of(long_chain), check_replay=False)
    h.start("long_chain", STEPS)
    for i in range(1, STEPS + 1):
        result = h.episode(completed(i, 1))
        assert len(result.actions) == 1  # only the NEW action of this step
    assert result.output == str(STEPS)
    # each step resumes the generator once and applies its own 2 events: O(n), not O(n^2)
    assert body_entries == STEPS
    assert h.live.resume_count == STEPS + 1
    assert h.live.events_applied == 2 * (STEPS + 1)
    # replaying the whole recorded history once is linear as well
    fresh = h.executor.start(IID)
    body_entries = 0
    fresh.apply(h.history)
    assert body_entries == STEPS and fresh.events_applied == len(h.history)
    assert fresh.is_finished and fresh.execution.output == str(STEPS)


def test_apply_then_step_equals_execute() -> None:
    h = Harness(registry_of(long_chain))
    h.start("long_chain", 3)
    h.episode(completed(1, 10))
    new = [os_(at(5)), completed(2, 20)]
    via_execute = h.executor.execute(IID, h.history, new)
    live = h.executor.start(IID)
    live.apply(h.history)
    via_live = live.step(new)
    assert via_execute == via_live
    assert via_live.actions == [ScheduleTask(3, "inc", "2", {})]


def test_fed_back_scheduling_events_are_accepted() -> None:
    executor = OrchestrationExecutor(registry_of(long_chain))
    live = executor.start(IID)
    (first,) = live.step([os_(), started("long_chain", 2)]).actions
    result = live.step([action_to_event(first, T0), os_(), completed(1, 1)])
    assert result.actions == [ScheduleTask(2, "inc", "1", {})]


def test_finished_live_orchestration_refuses_more_events() -> None:
    executor = OrchestrationExecutor(registry_of(long_chain))
    live = executor.start(IID)
    result = live.step([os_(), started("long_chain", 0)])
    assert result.actions == [CompleteOrchestration("COMPLETED", result="0")]
    assert live.is_done and live.is_finished
    with pytest.raises(OrchestrationStateError):
        live.step([os_(), completed(1, 1)])
    with pytest.raises(OrchestrationStateError):
        live.apply([os_()])


def test_replayed_end_counts_as_recorded() -> None:
    history = [os_(), started("long_chain", 0), ev.ExecutionCompleted(-1, T0, "COMPLETED", result="0")]
    executor = OrchestrationExecutor(registry_of(long_chain))
    live = executor.start(IID)
    live.apply(history)
    assert live.is_finished
    result = executor.execute(IID, history, [os_(), completed(1)])
    assert result.actions == [] and result.runtime_status == "COMPLETED"


def test_end_decided_during_replay_but_not_recorded_is_returned_once() -> None:
    executor = OrchestrationExecutor(registry_of(long_chain))
    live = executor.start(IID)
    live.apply([os_(), started("long_chain", 0)])
    assert live.is_done and not live.is_finished
    assert live.step([]).actions == [CompleteOrchestration("COMPLETED", result="0")]
    assert live.is_finished


def test_pending_result_before_start() -> None:
    live = OrchestrationExecutor(registry_of(long_chain)).start(IID)
    assert live.step([os_()]).runtime_status == "PENDING"


FD = ev.FailureDetails("m", "E")


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (ScheduleTask(1, "a", '"x"', {"t": "1"}), ev.TaskScheduled(1, T0, "a", '"x"', {"t": "1"})),
        (CreateTimer(2, at(9)), ev.TimerCreated(2, T0, at(9))),
        (CreateSubOrchestration(3, "c", "cid", "1"), ev.SubOrchestrationInstanceCreated(3, T0, "c", "cid", "1")),
        (SendEvent(4, "other", "e", "2"), ev.EventSent(4, T0, "other", "e", "2")),
        (SignalEntityAction(5, "@c@k", "add", "1", "r5"), ev.EntityOperationSignaled(5, T0, "r5", "add", "@c@k", "1")),
        (CallEntityAction(6, "@c@k", "get", None, "r6"), ev.EntityOperationCalled(6, T0, "r6", "get", "@c@k", None, IID)),
        (LockEntitiesAction(7, "cs", ("@a@1", "@b@2")), ev.EntityLockRequested(7, T0, "cs", ["@a@1", "@b@2"], 0, IID)),
        (UnlockEntityAction(8, "@a@1", "cs"), ev.EntityUnlockSent(8, T0, "cs", "@a@1", IID)),
        (CompleteOrchestration("COMPLETED", result="1"), ev.ExecutionCompleted(-1, T0, "COMPLETED", result="1")),
        (CompleteOrchestration("FAILED", failure_details=FD), ev.ExecutionCompleted(-1, T0, "FAILED", failure_details=FD)),
        (CompleteOrchestration("TERMINATED", result='"bye"'), ev.ExecutionTerminated(-1, T0, input='"bye"')),
        (
            CompleteOrchestration("CONTINUED_AS_NEW", new_input="5", save_events=True),
            ev.ContinueAsNew(-1, T0, input="5", save_events=True),
        ),
    ],
)
def test_action_to_event(action: Any, expected: ev.HistoryEvent) -> None:
    assert action_to_event(action, T0, IID) == expected


def test_timer_created_history_matches_timer_actions_in_replay() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        for _ in range(3):
            yield ctx.create_timer(timedelta(seconds=1))
        return ctx.current_utc_datetime.isoformat()

    h = Harness(registry_of(orch))
    h.start("orch")
    for i in range(1, 4):
        h.episode(ev.TimerFired(-1, at(i), timer_id=i, fire_at=at(i)), now=at(i))
    assert h.live.is_finished
