"""Entity actions from orchestrations: call, signal, critical sections (lock/unlock)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from durable_kafka import task
from durable_kafka.processors.actions import (
    CallEntityAction,
    CompleteOrchestration,
    LockEntitiesAction,
    SignalEntityAction,
    UnlockEntityAction,
    action_to_event,
)
from durable_kafka.processors.executor import OrchestrationExecutor
from durable_kafka.streams import events as ev
from executor_harness import T0, Harness, registry_of


def op_completed(request_id: str, output: Any) -> ev.EntityOperationCompleted:
    return ev.EntityOperationCompleted(-1, T0, request_id=request_id, output=json.dumps(output))


def test_call_and_signal_entity() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        ctx.signal_entity("@counter@a", "add", 5)
        value = yield ctx.call_entity("@counter@a", "get")
        try:
            yield ctx.call_entity("@counter@b", "explode")
        except task.TaskFailedError as e:
            return {"value": value, "error": e.details.message}

    h = Harness(registry_of(orch))
    r = h.start("orch")
    signal, call = r.actions
    assert isinstance(signal, SignalEntityAction) and (signal.id, signal.entity_id, signal.operation, signal.input) == (
        1, "@counter@a", "add", "5",
    )
    assert isinstance(call, CallEntityAction) and (call.id, call.entity_id, call.operation) == (2, "@counter@a", "get")
    assert call.request_id != signal.request_id
    r = h.episode(op_completed(call.request_id, 5))
    (second,) = r.actions
    failure = ev.EntityOperationFailed(
        -1, T0, request_id=second.request_id, failure_details=ev.FailureDetails("no such op", "ValueError")
    )
    r = h.episode(failure, op_completed(second.request_id, "duplicate"))
    assert json.loads(r.output) == {"value": 5, "error": "no such op"}


def transfer(ctx: task.OrchestrationContext, _: Any) -> Any:
    with (yield ctx.lock_entities(["@account@b", "@account@a", "@account@b"])):
        balance = yield ctx.call_entity("@account@a", "get")
        ctx.call_entity("@account@b", "add", balance)
    return balance


def test_critical_section_lock_call_unlock() -> None:
    h = Harness(registry_of(transfer))
    (lock,) = h.start("transfer").actions
    assert isinstance(lock, LockEntitiesAction) and lock.lock_set == ("@account@a", "@account@b")
    (call,) = h.episode(ev.EntityLockGranted(-1, T0, critical_section_id=lock.critical_section_id)).actions
    assert call.entity_id == "@account@a"
    r = h.episode(op_completed(call.request_id, 7))
    add, unlock_a, unlock_b, done = r.actions
    assert isinstance(add, CallEntityAction) and add.entity_id == "@account@b"
    assert [unlock_a, unlock_b] == [
        UnlockEntityAction(4, "@account@a", lock.critical_section_id),
        UnlockEntityAction(5, "@account@b", lock.critical_section_id),
    ]
    assert done == CompleteOrchestration("COMPLETED", result="7")


def test_critical_section_rules() -> None:
    def orch(ctx: task.OrchestrationContext, case: str) -> Any:
        with (yield ctx.lock_entities(["@a@1"])):
            if case == "nested":
                yield ctx.lock_entities(["@b@1"])
            if case == "unlocked":
                yield ctx.call_entity("@b@1", "get")
            if case == "signal":
                ctx.signal_entity("@a@1", "poke")
            if case == "sub":
                yield ctx.call_sub_orchestrator("child")

    for case in ["nested", "unlocked", "signal", "sub"]:
        h = Harness(registry_of(orch))
        (lock,) = h.start("orch", case).actions
        r = h.episode(ev.EntityLockGranted(-1, T0, critical_section_id=lock.critical_section_id))
        assert r.failure_details.error_type == "durable_kafka.errors.OrchestrationStateError", case
        # the failing orchestration still releases its lock
        assert [type(a) for a in r.actions] == [UnlockEntityAction, CompleteOrchestration], case


def test_bad_entity_id_fails_with_typed_error() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        ctx.signal_entity("not-an-entity", "x")

    r = Harness(registry_of(orch)).start("orch")
    assert r.failure_details.error_type == "durable_kafka.errors.InvalidArgumentError"


def test_entity_names_are_lower_cased_and_keys_kept() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        ctx.signal_entity("@Counter@Key1", "add", 1)
        yield ctx.call_entity("@COUNTER@Key1", "get")

    r = Harness(registry_of(orch)).start("orch")
    targets = [a.entity_id for a in r.actions if isinstance(a, (SignalEntityAction, CallEntityAction))]
    assert targets == ["@counter@Key1", "@counter@Key1"]


def test_history_recorded_with_a_mixed_case_name_still_replays() -> None:
    """Histories written before names were folded name ``@Counter@k``: replay must not call that divergence."""
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        return (yield ctx.call_entity("@Counter@k", "get"))

    first = Harness(registry_of(orch)).start("orch")
    (call,) = [a for a in first.actions if isinstance(a, CallEntityAction)]
    recorded = replace(action_to_event(call, T0), target_instance_id="@Counter@k")
    live = OrchestrationExecutor(registry_of(orch)).start("i")
    live.apply([ev.OrchestratorStarted(-1, T0), ev.ExecutionStarted(-1, T0, name="orch", execution_id="e"), recorded])
    assert live.result([]).failure_details is None
