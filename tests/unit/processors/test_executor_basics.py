"""Executor basics: activity sequences, failures, status, time, uuids, logging, duplicates."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from typing import Any

import pytest

from durable_kafka import task
from durable_kafka.processors.actions import CompleteOrchestration, ScheduleTask
from durable_kafka.processors.executor import OrchestrationExecutor, OrchestratorRegistry
from durable_kafka.errors import ConfigurationError
from executor_harness import (
    IID,
    T0,
    Harness,
    at,
    completed,
    failed,
    os_,
    registry_of,
    scheduled,
    started,
    timer_fired,
)


def hello(ctx: task.ActivityContext, name: str) -> str:
    return f"Hello {name}!"


def sequence(ctx: task.OrchestrationContext, cities: list[str]) -> Any:
    results = []
    for city in cities:
        results.append((yield ctx.call_activity(hello, input=city)))
    return results


def test_sequence_of_activities() -> None:
    h = Harness(registry_of(sequence))
    r = h.start("sequence", ["Tokyo", "Seattle"])
    assert r.actions == [ScheduleTask(1, "hello", '"Tokyo"', {})]
    assert r.runtime_status == "RUNNING" and not r.is_complete
    r = h.episode(completed(1, "Hello Tokyo!"))
    assert r.actions == [ScheduleTask(2, "hello", '"Seattle"', {})]
    r = h.episode(completed(2, "Hello Seattle!"))
    assert r.is_complete and r.runtime_status == "COMPLETED"
    expected = ["Hello Tokyo!", "Hello Seattle!"]
    assert r.actions == [CompleteOrchestration("COMPLETED", result=json.dumps(expected))]
    assert r.output == json.dumps(expected) and r.completion == r.actions[-1]


def test_execute_is_the_pure_function_form() -> None:
    executor = OrchestrationExecutor(registry_of(sequence))
    old = [os_(), started("sequence", ["A", "B"]), scheduled(1, "hello")]
    result = executor.execute(IID, old, [os_(), completed(1, "x")])
    assert result.actions == [ScheduleTask(2, "hello", '"B"', {})]
    # history not yet holding TaskScheduled(1): the action is returned again, as durabletask does
    result = executor.execute(IID, [os_(), started("sequence", ["A"])], [os_()])
    assert result.actions == [ScheduleTask(1, "hello", '"A"', {})]


def test_activity_by_name_with_tags_and_none_input() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        return (yield ctx.call_activity("remote_thing", tags={"team": "a"}))

    h = Harness(registry_of(orch))
    assert h.start("orch").actions == [ScheduleTask(1, "remote_thing", None, {"team": "a"})]
    r = h.episode(completed(1))
    assert r.output is None and r.runtime_status == "COMPLETED"


def test_non_generator_orchestrator_completes_at_once() -> None:
    def plain(ctx: task.OrchestrationContext, x: int) -> int:
        return x * 2

    r = Harness(registry_of(plain)).start("plain", 21)
    assert r.actions == [CompleteOrchestration("COMPLETED", result="42")]


def test_unhandled_exception_fails_with_details() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        yield ctx.call_activity(hello, input="x")
        raise KeyError("no such thing")

    h = Harness(registry_of(orch))
    h.start("orch")
    r = h.episode(completed(1, "ok"))
    assert r.runtime_status == "FAILED"
    (done,) = r.actions
    assert done.status == "FAILED" and done.failure_details == r.failure_details
    assert r.failure_details.error_type == "builtins.KeyError"
    assert r.failure_details.message == "'no such thing'"
    assert 'raise KeyError("no such thing")' in r.failure_details.stack_trace


def test_uncaught_activity_failure_fails_orchestration_with_durabletask_message() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        return (yield ctx.call_activity(hello, input="x"))

    h = Harness(registry_of(orch))
    h.start("orch")
    r = h.episode(failed(1, "Kah-BOOOOM!!!", "ValueError"))
    details = r.failure_details
    assert r.runtime_status == "FAILED"
    assert details.error_type == "durable_kafka.errors.TaskFailedError"
    assert details.message == f"{IID}: Activity task #1 failed: Kah-BOOOOM!!!"
    assert "ctx.call_activity(hello" in details.stack_trace  # the orchestrator line
    assert "Caused by ValueError: Kah-BOOOOM!!!" in details.stack_trace  # the activity's own error
    assert "Traceback: Kah-BOOOOM!!!" in details.stack_trace


def test_caught_activity_failure_exposes_details() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        try:
            yield ctx.call_activity(hello, input="x")
        except task.TaskFailedError as e:
            return {"type": e.details.error_type, "message": e.details.message}

    h = Harness(registry_of(orch))
    h.start("orch")
    r = h.episode(failed(1, "nope", "PermissionError"))
    assert json.loads(r.output) == {"type": "PermissionError", "message": "nope"}


def test_duplicate_and_unknown_completions_are_ignored() -> None:
    h = Harness(registry_of(sequence))
    h.start("sequence", ["A", "B"])
    r = h.episode(completed(1, "a"))
    assert [a.id for a in r.actions] == [2]
    r = h.episode(completed(1, "a-again"), completed(99, "stray"), failed(1, "late failure"))
    assert r.actions == [] and r.runtime_status == "RUNNING"
    r = h.episode(completed(2, "b"), completed(2, "b-again"))
    assert r.output == json.dumps(["a", "b"])


def test_custom_status_is_json_in_the_result() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        ctx.set_custom_status({"stage": 1})
        yield ctx.call_activity(hello, input="x")
        ctx.set_custom_status("done")

    h = Harness(registry_of(orch))
    assert h.start("orch").custom_status == '{"stage": 1}'
    assert h.episode(completed(1)).custom_status == '"done"'


def test_current_time_is_the_episode_start_and_replay_flag() -> None:
    seen: list[tuple[Any, bool]] = []

    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        seen.append((ctx.current_utc_datetime, ctx.is_replaying))
        yield ctx.call_activity(hello, input="x")
        seen.append((ctx.current_utc_datetime, ctx.is_replaying))
        return ctx.current_utc_datetime.isoformat()

    executor = OrchestrationExecutor(registry_of(orch))
    old = [os_(T0), started("orch"), scheduled(1, "hello"), os_(at(30))]
    r = executor.execute(IID, old, [completed(1)])
    assert seen == [(T0, True), (at(30), False)]
    assert json.loads(r.output) == at(30).isoformat()


def test_new_uuid_is_deterministic_and_distinct() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        first = [ctx.new_uuid(), ctx.new_uuid()]
        yield ctx.create_timer(timedelta(seconds=1))
        return first + [ctx.new_uuid()]

    def run() -> list[str]:
        h = Harness(registry_of(orch))
        h.start("orch")
        return json.loads(h.episode(timer_fired(1, at(1)), now=at(1)).output)

    ids = run()
    assert ids == run()
    assert len(set(ids)) == 3
    assert all(uuid.UUID(i).version == 5 for i in ids)
    other = OrchestrationExecutor(registry_of(orch)).start("another-instance")
    other.step([os_(), started("orch")])
    assert other.execution.new_uuid() not in ids


def test_replay_safe_logger_drops_records_while_replaying(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.executor.orch")

    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        safe = ctx.create_replay_safe_logger(logger)
        safe.warning("before activity")
        yield ctx.call_activity(hello, input="x")
        safe.warning("after activity")

    executor = OrchestrationExecutor(registry_of(orch))
    with caplog.at_level(logging.INFO, logger="tests.executor.orch"):
        executor.execute(IID, [os_(), started("orch"), scheduled(1, "hello")], [os_(), completed(1)])
    messages = [r.getMessage() for r in caplog.records if r.name == "tests.executor.orch"]
    assert messages == ["after activity"]


def test_parent_instance_id() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        return ctx.parent_instance_id

    assert Harness(registry_of(orch)).start("orch", parent="the-parent").output == '"the-parent"'
    assert Harness(registry_of(orch)).start("orch").output is None


def test_unregistered_orchestrator_fails_the_instance() -> None:
    r = Harness(OrchestratorRegistry()).start("nobody")
    assert r.runtime_status == "FAILED"
    assert r.failure_details.error_type == "durable_kafka.errors.OrchestratorNotRegisteredError"
    assert "'nobody'" in r.failure_details.message


def test_yielding_a_non_task_fails_the_instance() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        yield 42

    r = Harness(registry_of(orch)).start("orch")
    assert r.failure_details.error_type == "durable_kafka.errors.OrchestrationStateError"
    assert "int" in r.failure_details.message


def test_unserializable_output_fails_the_instance() -> None:
    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        return {1, 2}

    r = Harness(registry_of(orch)).start("orch")
    assert r.runtime_status == "FAILED" and r.failure_details.error_type == "builtins.TypeError"


def test_registry() -> None:
    registry = OrchestratorRegistry()
    assert registry.add_orchestrator(sequence) == "sequence"
    assert registry.add_orchestrator(sequence, name="seq2") == "seq2"
    assert registry.get("seq2") is sequence and registry.get("nope") is None
    with pytest.raises(ConfigurationError):
        registry.add_orchestrator(sequence)


def test_ctx_exposes_only_the_documented_api() -> None:
    """Orchestrator code gets a facade: no engine bookkeeping to read or set by accident."""
    seen: list[Any] = []

    def orch(ctx: task.OrchestrationContext, _: Any) -> Any:
        seen.append(ctx)
        return 1

    Harness(registry_of(orch)).start("orch")
    ctx = seen[0]  # the harness also replays: each run gets its own facade
    documented = {n for n in dir(task.OrchestrationContext) if not n.startswith("_")}
    assert {n for n in dir(ctx) if not n.startswith("_")} == documented
    with pytest.raises(AttributeError):
        ctx.custom_status = "x"
