"""Golden histories: recorded JSON histories replayed against the orchestrators below.

Each file in ``tests/data/histories/`` holds ``history`` (committed events), ``new_events`` and
the ``expected`` outcome: the new actions, the runtime status, the output, or the failure.
A change to the executor that alters how an old history replays breaks one of these files,
which is the point: recorded histories must keep replaying the same way. One file is
deliberately non-deterministic (the code renamed an activity after the history was recorded).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from durable_kafka import task
from durable_kafka.processors import history_json
from durable_kafka.processors.executor import OrchestrationExecutor, OrchestratorRegistry

HISTORIES = Path(__file__).resolve().parents[2] / "data" / "histories"


# --------------------------------------------------------------------------- the orchestrators


def golden_sequence(ctx: task.OrchestrationContext, cities: list[str]) -> Any:
    out = []
    for city in cities:
        out.append((yield ctx.call_activity("say_hello", input=city)))
    return out


def golden_fan_out(ctx: task.OrchestrationContext, n: int) -> Any:
    parts = yield task.when_all([ctx.call_activity("square", input=i) for i in range(n)])
    return sum(parts)


def golden_approval(ctx: task.OrchestrationContext, _: Any) -> Any:
    timeout = ctx.create_timer(timedelta(hours=1))
    answer = ctx.wait_for_external_event("Approval")
    winner = yield task.when_any([answer, timeout])
    if winner is answer:
        timeout.cancel()
        return {"approved": answer.get_result()}
    return {"approved": False}


def golden_retry(ctx: task.OrchestrationContext, _: Any) -> Any:
    policy = task.RetryPolicy(
        first_retry_interval=timedelta(seconds=5), max_number_of_attempts=3, backoff_coefficient=3
    )
    return (yield ctx.call_activity("flaky", retry_policy=policy))


def golden_counter(ctx: task.OrchestrationContext, total: int) -> Any:
    n = yield ctx.wait_for_external_event("add")
    ctx.continue_as_new(total + n, save_events=True)


def golden_parent(ctx: task.OrchestrationContext, _: Any) -> Any:
    try:
        return (yield ctx.call_sub_orchestrator("golden_child", input=1))
    except task.TaskFailedError as e:
        ctx.set_custom_status("child failed")
        return {"child_error": e.details.message}


def golden_child(ctx: task.OrchestrationContext, x: int) -> Any:
    return x


def golden_renamed(ctx: task.OrchestrationContext, _: Any) -> Any:
    first = yield ctx.call_activity("step_one")
    second = yield ctx.call_activity("step_two_renamed")  # history recorded "step_two"
    return [first, second]


def golden_long_sleep(ctx: task.OrchestrationContext, _: Any) -> Any:
    yield ctx.create_timer(timedelta(days=7))  # longer than the default maximum_timer_interval (3 days)
    return "awake"


REGISTRY = OrchestratorRegistry()
for _fn in (golden_sequence, golden_fan_out, golden_approval, golden_retry, golden_counter,
            golden_parent, golden_child, golden_renamed, golden_long_sleep):
    REGISTRY.add_orchestrator(_fn)


# --------------------------------------------------------------------------- the test


def _files() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def test_golden_files_exist_including_a_nondeterministic_one() -> None:
    names = [p.name for p in _files()]
    assert len(names) >= 6, names
    assert any("nondeterministic" in n for n in names), names


def _without_stack_trace(action: dict[str, Any]) -> dict[str, Any]:
    """Stack traces hold file paths and line numbers: the goldens store them as null."""
    if action.get("failure_details"):
        action["failure_details"]["stack_trace"] = None
    return action


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.stem)
def test_golden_history_replays_as_recorded(path: Path) -> None:
    data = json.loads(path.read_text())
    history = [history_json.from_json(e) for e in data["history"]]
    new_events = [history_json.from_json(e) for e in data["new_events"]]
    expected = data["expected"]

    result = OrchestrationExecutor(REGISTRY).execute(data["instance_id"], history, new_events)

    assert [_without_stack_trace(history_json.to_json(a)) for a in result.actions] == expected["actions"]
    assert result.runtime_status == expected["runtime_status"]
    assert result.output == expected.get("output")
    assert result.custom_status == expected.get("custom_status")
    failure = expected.get("failure")
    if failure is None:
        assert result.failure_details is None
    else:
        assert result.failure_details.error_type == failure["error_type"]
        for fragment in failure["message_contains"]:
            assert fragment in result.failure_details.message


def test_history_json_round_trips_every_event_in_the_goldens() -> None:
    for path in _files():
        for raw in json.loads(path.read_text())["history"]:
            assert history_json.to_json(history_json.from_json(raw)) == raw
