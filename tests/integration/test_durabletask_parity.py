"""Retries, failure details, long timers and scheduled signals as durabletask reports them (issue 9).

Real broker, a Worker and a Client per test. No timing assertions: what is checked is counts,
names, the shape of recorded history and that nothing ran before its time.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from durable_kafka import Client, EntityContext, OrchestrationStatus, RetryPolicy, TaskFailedError, Worker, task
from durable_kafka.streams import events as ev

_counts: dict[str, int] = {}


class OrderError(Exception):
    pass


class OutOfStock(OrderError):
    pass


# ---------------------------------------------------------------- functions under test
def throw_activity(ctx: task.ActivityContext, key: str) -> None:
    _counts[key] = _counts.get(key, 0) + 1
    raise RuntimeError("Kah-BOOOOM!!!")


def reserve(ctx: task.ActivityContext, sku: str) -> None:
    try:
        {}[sku]
    except KeyError as missing:
        raise OutOfStock(f"no {sku} left") from missing


def retry_timeout_orch(ctx: task.OrchestrationContext, inp: dict[str, Any]) -> Any:
    # delays 1, 2, 4, 8 s: attempts start at 0, 1, 3, 7 s; a 5th would start at 15 s
    policy = RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=5,
                         backoff_coefficient=2, max_retry_interval=timedelta(seconds=10),
                         retry_timeout=timedelta(seconds=inp["timeout"]))
    yield ctx.call_activity(throw_activity, input=inp["key"], retry_policy=policy)


RETRY = RetryPolicy(first_retry_interval=timedelta(milliseconds=100), max_number_of_attempts=3)


def retry_parent(ctx: task.OrchestrationContext, key: str) -> Any:
    yield ctx.call_sub_orchestrator(retry_child, input=key, retry_policy=RETRY)


def retry_child(ctx: task.OrchestrationContext, key: str) -> Any:
    yield ctx.call_activity(throw_activity, input=key, retry_policy=RETRY)


def order(ctx: task.OrchestrationContext, sku: str) -> Any:
    try:
        yield ctx.call_activity(reserve, input=sku)
    except TaskFailedError as failure:
        d = failure.details
        return {"type": d.error_type, "inner": d.inner_failure.error_type if d.inner_failure else None,
                "by_type": d.is_caused_by(OrderError), "by_name": d.is_caused_by("OutOfStock"),
                "not_key": d.is_caused_by(KeyError)}
    return "reserved"


def order_unhandled(ctx: task.OrchestrationContext, sku: str) -> Any:
    yield ctx.call_activity(reserve, input=sku)


def counter(ctx: EntityContext, input: Any) -> Any:
    n = ctx.get_state(int, 0)
    if ctx.operation == "add":
        ctx.set_state(n + input)
        return n + input
    if ctx.operation == "stamp":  # remembers when it ran, to prove it never ran early
        ctx.set_state(time.time())
        return None
    raise OutOfStock(f"unknown operation {ctx.operation!r}")


def entity_failure(ctx: task.OrchestrationContext, entity: str) -> Any:
    try:
        yield ctx.call_entity(entity, "explode")
    except TaskFailedError as failure:
        return {"type": failure.details.error_type, "by_type": failure.details.is_caused_by(OrderError)}
    return "no error"


def sleeper(ctx: task.OrchestrationContext, seconds: float) -> Any:
    due = ctx.current_utc_datetime + timedelta(seconds=seconds)
    yield ctx.create_timer(due)
    return {"due": due.timestamp(), "woke": ctx.current_utc_datetime.timestamp()}


def reminder(ctx: task.OrchestrationContext, inp: dict[str, Any]) -> Any:
    when = datetime.fromtimestamp(inp["at"], timezone.utc)
    ctx.signal_entity(inp["entity"], "stamp", signal_time=when)
    ctx.signal_entity(inp["entity2"], "add", 5)  # an unscheduled one goes at once
    return "scheduled"
    yield  # unreachable: makes this a generator


ORCHESTRATORS = [retry_timeout_orch, retry_parent, retry_child, order, order_unhandled, entity_failure, sleeper,
                 reminder]


def make_worker(hub: Any, state_dir: str, **options: Any) -> Worker:
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=state_dir, partitions=hub.partitions, **options)
    for o in ORCHESTRATORS:
        w.add_orchestrator(o)
    w.add_activity(throw_activity)
    w.add_activity(reserve)
    w.add_entity(counter)
    return w


@pytest.fixture(scope="module")
def engine(module_hub, tmp_path_factory):
    """One worker and client for the tests that take ``engine`` (their instance ids are their own)."""
    w = make_worker(module_hub, str(tmp_path_factory.mktemp("engine") / "state"),
                    maximum_timer_interval=timedelta(seconds=1))
    hub = module_hub
    with w, Client(hub.bootstrap, hub=hub.name) as c:
        yield w, c


def finished(client: Client, iid: str, timeout: float = 90) -> Any:
    state = client.wait_for_orchestration_completion(iid, timeout=timeout)
    assert state is not None
    return state


# ---------------------------------------------------------------- retries
def test_retry_timeout_stops_before_an_attempt_that_would_start_too_late(engine) -> None:
    _, c = engine
    finished(c, c.schedule_new_orchestration(order, input="warm-up"))  # the worker owns its partitions
    key = f"rt-{time.time_ns()}"
    # 11 s leaves the 4th attempt (7 s) 4 s of slack for activity latency; the 5th (15 s) is past it
    state = finished(c, c.schedule_new_orchestration(retry_timeout_orch, input={"timeout": 11, "key": key}))
    assert state.runtime_status == OrchestrationStatus.FAILED
    assert _counts[key] == 4  # the 5th attempt (due at 15 s) is never made
    assert state.failure_details.message.endswith("Activity task #1 failed: Kah-BOOOOM!!!")
    assert state.failure_details.error_type == "durable_kafka.errors.TaskFailedError"
    assert state.failure_details.inner_failure.error_type == "builtins.RuntimeError"
    assert state.failure_details.is_caused_by(TaskFailedError) and state.failure_details.stack_trace


def test_retried_sub_orchestration_and_activity_are_named_by_their_first_attempt(engine) -> None:
    _, c = engine
    key = f"rp-{time.time_ns()}"
    state = finished(c, c.schedule_new_orchestration(retry_parent, input=key))
    assert state.runtime_status == OrchestrationStatus.FAILED
    assert state.failure_details.message.startswith("Sub-orchestration task #1 failed:")
    assert state.failure_details.message.endswith("Activity task #1 failed: Kah-BOOOOM!!!")
    assert _counts[key] == 9  # 3 child attempts x 3 activity attempts


# ---------------------------------------------------------------- failure details
def test_activity_failures_carry_qualified_types_and_the_cause_chain(engine) -> None:
    _, c = engine
    out = finished(c, c.schedule_new_orchestration(order, input="widget")).get_output()
    assert out == {"type": f"{__name__}.OutOfStock", "inner": "builtins.KeyError",
                   "by_type": True, "by_name": True, "not_key": False}

    state = finished(c, c.schedule_new_orchestration(order_unhandled, input="gadget"))
    details = state.failure_details
    assert details.is_caused_by(TaskFailedError) and details.is_caused_by("TaskFailedError")
    assert details.inner_failure.error_type == f"{__name__}.OutOfStock"  # the activity's failure
    assert details.inner_failure.inner_failure.error_type == "builtins.KeyError"  # and its cause
    assert details.inner_failure.is_caused_by(OrderError)


def test_entity_operation_failures_carry_qualified_types(engine) -> None:
    _, c = engine
    out = finished(c, c.schedule_new_orchestration(entity_failure, input="@counter@e1")).get_output()
    assert out == {"type": f"{__name__}.OutOfStock", "by_type": True}


# ---------------------------------------------------------------- long timers
def test_a_long_timer_is_chained_in_durable_pieces(engine) -> None:
    _, c = engine  # maximum_timer_interval = 1 s
    iid = c.schedule_new_orchestration(sleeper, input=3.5)
    state = finished(c, iid)
    assert state.runtime_status == OrchestrationStatus.COMPLETED
    out = state.get_output()
    assert out["woke"] >= out["due"]  # never early
    history = c.get_orchestration_history(iid)
    timers = [e for e in history if isinstance(e, (ev.TimerCreated, ev.TimerFired))]
    created = [e for e in timers if isinstance(e, ev.TimerCreated)]
    assert len(created) >= 3  # 3.5 s in pieces of at most 1 s
    assert [type(e).__name__ for e in timers] == ["TimerCreated", "TimerFired"] * len(created)
    for made, fired in zip(timers[::2], timers[1::2]):
        assert fired.timer_id == made.event_id and fired.fire_at == made.fire_at
        assert made.fire_at - made.timestamp <= timedelta(seconds=1, milliseconds=2)  # each piece <= interval
    assert len({e.event_id for e in created}) == len(created)  # a new sequence number per piece
    assert created[-1].fire_at.timestamp() == pytest.approx(out["due"], abs=0.002)  # the last ends at the end


# ---------------------------------------------------------------- scheduled signals
def test_a_scheduled_signal_survives_a_worker_restart_and_never_runs_early(hub, tmp_path) -> None:
    entity, other = f"@counter@s{time.time_ns()}", f"@counter@n{time.time_ns()}"
    with Client(hub.bootstrap, hub=hub.name) as c:
        with make_worker(hub, str(tmp_path / "first")):
            finished(c, c.schedule_new_orchestration(entity_failure, input=other))  # warm-up: partitions owned
            signal_at = time.time() + 8
            state = finished(c, c.schedule_new_orchestration(
                reminder, input={"entity": entity, "entity2": other, "at": signal_at}))
            assert state.get_output() == "scheduled"
            _wait_state(c, other, lambda s: s == 5)  # the unscheduled signal went at once
            assert c.get_entity(entity) is None  # the scheduled one waits
        assert time.time() < signal_at, "the worker stopped only after the signal was due: test inconclusive"
        # a new worker with an empty state directory: the waiting signal comes back from the changelog
        with make_worker(hub, str(tmp_path / "second")):
            meta = _wait_state(c, entity, lambda s: s is not None)
    assert meta.get_state() >= signal_at  # it ran at its time, not before


def _wait_state(client: Client, entity: str, predicate: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    meta = None
    while time.monotonic() < deadline:
        meta = client.get_entity(entity)
        if meta is not None and predicate(meta.get_state()):
            return meta
        time.sleep(0.1)
    raise AssertionError(f"{entity}: state never matched; last seen {meta!r}")
