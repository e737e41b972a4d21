"""Versioning and rewind without a broker: the version rules, the REJECT parking in the step,
FAIL in the executor, the effective-history rule of rewind and the rewind step (whose history
folds, through the applier table, to the state the step holds)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from durable_kafka import task
from durable_kafka.errors import ConfigurationError
from durable_kafka.processors import store as keys
from durable_kafka.processors.rewind import effective_history
from durable_kafka.streams import events as ev
from durable_kafka.streams.status import OrchestrationStatus as S
from durable_kafka.versioning import (
    VersionFailureStrategy,
    VersioningOptions,
    VersionMatchStrategy,
    compare_versions,
    version_failure,
)
from test_instance_step import NOW, Engine, assert_fold_matches, produced, result, start, two_activities

STRICT, OLDER, NONE = VersionMatchStrategy.STRICT, VersionMatchStrategy.CURRENT_OR_OLDER, VersionMatchStrategy.NONE
REJECT, FAIL = VersionFailureStrategy.REJECT, VersionFailureStrategy.FAIL


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("1.10", "1.9", 1), ("1.0", "1", 0), ("2.0.0-beta", "2.0.0", -1), (None, "1.0", -1), ("1.0", None, 1),
    (None, None, 0), ("", None, 0), ("blue", "green", -1), ("green", "green", 0)])
def test_versions_compare_as_pep440_else_as_strings_and_none_is_oldest(a, b, expected) -> None:
    assert compare_versions(a, b) == expected


@pytest.mark.parametrize(("match", "accepted"), [(None, {"0.9", "1.0", "1.1", None}), (NONE, {"0.9", "1.0", "1.1", None}),
                                                 (STRICT, {"1.0"}), (OLDER, {"0.9", "1.0", None})])
def test_which_versions_each_match_strategy_accepts(match, accepted) -> None:
    options = VersioningOptions(version="1.0", match_strategy=match, failure_strategy=FAIL)
    for version in ("0.9", "1.0", "1.1", None):
        failure = version_failure(options, version)
        assert (failure is None) == (version in accepted), version
        if failure is not None:
            assert failure.error_type == "VersionMismatch" and "'1.0'" in failure.message


def test_options_are_checked_and_reject_is_the_default_failure_strategy() -> None:
    assert VersioningOptions(version="1").rejects and not VersioningOptions(failure_strategy=FAIL).rejects
    with pytest.raises(ConfigurationError):
        VersioningOptions(version=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        VersioningOptions(match_strategy="STRICT")  # type: ignore[arg-type]


def _versioned(e: Engine, version: str, match: VersionMatchStrategy, failure: VersionFailureStrategy) -> None:
    e.executor.registry.versioning = VersioningOptions(version=version, match_strategy=match, failure_strategy=failure)


def test_reject_parks_a_new_start_until_a_worker_accepting_its_version_runs_it() -> None:
    e = Engine(two_activities)
    _versioned(e, "1.0", STRICT, REJECT)
    out = e.step(e.msg(start("two_activities", version="2.0")))
    h = e.loaded.header
    assert h is not None and h.runtime_status is S.PENDING and h.version == "2.0"
    assert [type(r.event).__name__ for r in h.parked] == ["ExecutionStarted"] and e.history == []
    assert produced(out, "status")[-1].version == "2.0" and keys.parked_key("order-1") in out.puts
    assert produced(out, "acts") == []
    _versioned(e, "2.0", STRICT, REJECT)  # the partition moved to a worker of the new version
    out = e.step()  # the assignment scan: no message for it
    assert e.loaded.status is S.RUNNING and h.parked == [] and out.puts[keys.parked_key("order-1")] is None
    assert [r.name for r in produced(out, "acts")] == ["first"]
    assert_fold_matches(e)


def test_reject_parks_the_events_of_a_running_instance_once_each_and_in_order() -> None:
    e = Engine(two_activities)
    e.step(e.msg(start("two_activities", version="1.0")))
    _versioned(e, "2.0", STRICT, REJECT)
    e.step(e.msg(result(e, 1, "a")), e.msg(ev.RaiseEvent(name="x")))
    e.step(e.msg(result(e, 1, "a")))  # redelivered while parked: not parked twice
    h = e.loaded.header
    assert h is not None and [type(r.event).__name__ for r in h.parked] == ["TaskCompleted", "EventRaised"]
    assert e.loaded.status is S.RUNNING and e.loaded.open_tasks == {1}
    _versioned(e, "1.0", OLDER, REJECT)
    out = e.step()
    assert [r.name for r in produced(out, "acts")] == ["second"] and h.parked == []
    e.step(e.msg(result(e, 2, "b")))
    assert e.loaded.status is S.COMPLETED
    assert_fold_matches(e)


def test_fail_ends_the_instance_with_a_version_mismatch_recorded_in_history() -> None:
    e = Engine(two_activities)
    _versioned(e, "1.0", STRICT, FAIL)
    e.step(e.msg(start("two_activities", version="2.0")))
    h = e.loaded.header
    assert h is not None and h.runtime_status is S.FAILED and h.failure_details is not None
    assert h.failure_details.error_type == "VersionMismatch"
    assert [type(r.event).__name__ for r in e.history][-1] == "ExecutionCompleted"
    assert_fold_matches(e)


def test_the_version_reaches_ctx_and_children_get_the_default_version() -> None:
    def parent(ctx: task.OrchestrationContext, _: Any) -> Any:
        yield ctx.call_sub_orchestrator("child", instance_id="c1")
        yield ctx.call_sub_orchestrator("child", instance_id="c2", version="9")
        return ctx.version

    e = Engine(parent)
    e.executor.registry.versioning = VersioningOptions(version="5", default_version="4")
    out = e.step(e.msg(start("parent", version="3")))
    (child,) = [m.body for m in produced(out, "orch")]
    assert child.version == "4"
    e.step(e.msg(ev.SubOrchestrationResult(execution_id=e.execution(), task_id=1, result="1")))
    out = e.step(e.msg(ev.SubOrchestrationResult(execution_id=e.execution(), task_id=2, result="1")))
    assert e.loaded.header is not None and json.loads(e.loaded.header.output or "") == "3"


FAILURE = ev.FailureDetails("broken", "RuntimeError")


def test_effective_history_leaves_out_what_each_rewind_took_back() -> None:
    hist = [ev.ExecutionStarted(-1, NOW, "f", "x"), ev.TaskScheduled(1, NOW, "a"),
            ev.TaskFailed(-1, NOW, 1, FAILURE), ev.ExecutionCompleted(-1, NOW, S.FAILED, None, FAILURE),
            ev.ExecutionRewound(-1, NOW, "r1", [1]), ev.TaskFailed(-1, NOW, 1, FAILURE),
            ev.ExecutionCompleted(-1, NOW, S.FAILED, None, FAILURE), ev.ExecutionRewound(-1, NOW, "r2", [1]),
            ev.TaskCompleted(-1, NOW, 1, "1")]
    assert effective_history(hist) == [hist[0], hist[1], hist[8]]
    assert effective_history(hist[:4]) == hist[:4]


def test_rewind_reopens_the_failed_task_schedules_it_again_and_records_the_rewind() -> None:
    e = Engine(two_activities)
    e.step(e.msg(start("two_activities")))
    e.step(e.msg(result(e, 1, "a")))
    e.step(e.msg(ev.ActivityResult(execution_id=e.execution(), task_id=2, failure_details=FAILURE)))
    assert e.loaded.status is S.FAILED
    rewind = e.msg(ev.RewindOrchestration(reason="fixed"))
    rewind.reply_to = "client-1"
    out = e.step(rewind)
    assert e.loaded.status is S.RUNNING and e.loaded.header is not None and e.loaded.header.failure_details is None
    (again,) = produced(out, "acts")
    assert (again.task_id, again.name, again.id) == (2, "second", f"order-1/{e.execution()}/2/rewind1")
    assert [r.accepted for r in produced(out, "replies")] == [True]
    rewound = [r.event for r in e.history if isinstance(r.event, ev.ExecutionRewound)]
    assert rewound == [ev.ExecutionRewound(-1, NOW, "fixed", [2])]
    assert_fold_matches(e)
    e.step(e.msg(ev.ActivityResult(execution_id=e.execution(), task_id=2, result='"b"')))
    assert e.loaded.status is S.COMPLETED and json.loads(e.loaded.header.output or "") == ["a", "b"]
    assert_fold_matches(e)


def test_rewind_of_an_instance_that_is_not_failed_is_refused() -> None:
    e = Engine(two_activities)
    e.step(e.msg(start("two_activities")))
    rewind = e.msg(ev.RewindOrchestration())
    rewind.reply_to = "client-1"
    out = e.step(rewind)
    (reply,) = produced(out, "replies")
    assert not reply.accepted and reply.error_type == "InstanceNotFailedError" and "running" in (reply.message or "")
    assert e.loaded.status is S.RUNNING and not any(isinstance(r.event, ev.ExecutionRewound) for r in e.history)


def test_a_worker_that_rejects_the_version_refuses_to_rewind_it() -> None:
    e = Engine(two_activities)
    e.step(e.msg(start("two_activities", version="1.0")))
    e.step(e.msg(ev.ActivityResult(execution_id=e.execution(), task_id=1, failure_details=FAILURE)))
    assert e.loaded.status is S.FAILED
    _versioned(e, "2.0", STRICT, REJECT)
    rewind = e.msg(ev.RewindOrchestration())
    rewind.reply_to = "client-1"
    (reply,) = produced(e.step(rewind), "replies")
    assert not reply.accepted and reply.error_type == "VersionMismatch" and "'1.0'" in (reply.message or "")
    assert e.loaded.status is S.FAILED
