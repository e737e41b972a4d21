"""End-to-end orchestration semantics on the real broker: a Worker and a Client per test."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from confluent_kafka import Producer

from durable_kafka import (
    Client,
    InstanceAlreadyExistsError,
    InvalidInstanceIdError,
    OrchestrationQuery,
    OrchestrationStatus,
    RetryPolicy,
    TaskFailedError,
    Worker,
    task,
)
from durable_kafka.streams import events as ev
from durable_kafka.connectors.audit import read_topic
from durable_kafka.streams.codec import Codec


# ---------------------------------------------------------------- functions under test
def hello(ctx, name):
    return f"Hello {name}!"


def square(ctx, n):
    return n * n


def boom(ctx, _):
    raise ValueError("kaboom")


_flaky_calls: dict[str, int] = {}


def flaky(ctx, key):
    _flaky_calls[key] = _flaky_calls.get(key, 0) + 1
    if _flaky_calls[key] < 3:
        raise RuntimeError(f"attempt {_flaky_calls[key]} failed")
    return _flaky_calls[key]


def sequence(ctx, _):
    a = yield ctx.call_activity(hello, input="Tokyo")
    b = yield ctx.call_activity(hello, input="Seattle")
    c = yield ctx.call_activity("hello", input="London")
    return [a, b, c]


def fan_out(ctx, n):
    results = yield task.when_all([ctx.call_activity(square, input=i) for i in range(n)])
    return sum(results)


def timer_orch(ctx, seconds):
    start = ctx.current_utc_datetime
    yield ctx.create_timer(timedelta(seconds=seconds))
    return (ctx.current_utc_datetime - start).total_seconds()


def wait_event(ctx, _):
    first = yield ctx.wait_for_external_event("Approval")
    second = yield ctx.wait_for_external_event("approval")
    return [first, second]


def child(ctx, x):
    if x == "fail":
        yield ctx.call_activity(boom)
    return f"child:{x}"


def parent(ctx, x):
    try:
        r = yield ctx.call_sub_orchestrator(child, input=x)
        return r
    except TaskFailedError as e:
        return f"caught:{e.details.error_type}:{e.details.message}"


def counter(ctx, n):
    if n < 5:
        ctx.continue_as_new(n + 1)
        return None
    return n


def status_then_wait(ctx, _):
    ctx.set_custom_status({"stage": "waiting"})
    v = yield ctx.wait_for_external_event("go")
    ctx.set_custom_status({"stage": "done"})
    return v


def failing(ctx, _):
    yield ctx.call_activity(hello, input="x")
    raise KeyError("no such thing")


def retrying(ctx, key):
    policy = RetryPolicy(first_retry_interval=timedelta(milliseconds=200), max_number_of_attempts=4)
    return (yield ctx.call_activity(flaky, input=key, retry_policy=policy))


def activity_fails(ctx, _):
    return (yield ctx.call_activity(boom))


def race(ctx, _):
    ev_task = ctx.wait_for_external_event("never")
    timer = ctx.create_timer(timedelta(milliseconds=300))
    winner = yield task.when_any([ev_task, timer])
    return "timer" if winner is timer else "event"


ORCHESTRATORS = [sequence, fan_out, timer_orch, wait_event, child, parent, counter, status_then_wait, failing,
                 retrying, activity_fails, race]
ACTIVITIES = [hello, square, boom, flaky]


@pytest.fixture(scope="module")
def engine(module_hub, tmp_path_factory):
    """One worker and client for the tests that take ``engine`` (their instance ids are their own)."""
    hub = module_hub
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path_factory.mktemp("engine") / "state"),
               partitions=hub.partitions)
    for o in ORCHESTRATORS:
        w.add_orchestrator(o)
    for a in ACTIVITIES:
        w.add_activity(a)
    with w, Client(hub.bootstrap, hub=hub.name) as c:
        yield w, c


def run(client, orch, inp=None, timeout=60, **kw):
    iid = client.schedule_new_orchestration(orch, input=inp, **kw)
    state = client.wait_for_orchestration_completion(iid, timeout=timeout)
    return iid, state


def test_activity_sequence(engine):
    _, c = engine
    iid, state = run(c, sequence)
    assert state.runtime_status == OrchestrationStatus.COMPLETED
    expected = ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
    assert state.get_output() == expected
    assert state.serialized_output == json.dumps(expected)
    assert state.name == "sequence"
    history = c.get_orchestration_history(iid)
    names = [type(e).__name__ for e in history]
    assert names[0] == "OrchestratorStarted" and names[1] == "ExecutionStarted"
    assert names.count("TaskScheduled") == 3 and names.count("TaskCompleted") == 3
    assert names[-1] == "ExecutionCompleted"


def test_fan_out_fan_in(engine):
    _, c = engine
    _, state = run(c, fan_out, 20)
    assert state.get_output() == sum(i * i for i in range(20))


def test_durable_timer_never_fires_early(engine):
    _, c = engine
    iid, state = run(c, timer_orch, 1.0)
    assert state.get_output() >= 1.0
    history = c.get_orchestration_history(iid)
    created = next(e for e in history if isinstance(e, ev.TimerCreated))
    fired = next(e for e in history if isinstance(e, ev.TimerFired))
    assert fired.timestamp >= created.fire_at


def test_external_events_buffered_fifo_case_insensitive(engine):
    _, c = engine
    iid = c.schedule_new_orchestration(wait_event)
    c.raise_orchestration_event(iid, "APPROVAL", data=1)
    c.raise_orchestration_event(iid, "approval", data=2)
    state = c.wait_for_orchestration_completion(iid, timeout=30)
    assert state.get_output() == [1, 2]


def test_sub_orchestration_result_and_failure(engine):
    _, c = engine
    _, ok = run(c, parent, "a")
    assert ok.get_output() == "child:a"
    _, bad = run(c, parent, "fail")
    out = bad.get_output()
    assert out.startswith("caught:") and "kaboom" in out


def test_instance_id_rules_and_reuse(engine):
    _, c = engine
    for bad in ["", "a/b", "a\\b", "a#b", "a?b", "@counter@x", "x" * 101, "tab\tid"]:
        with pytest.raises(InvalidInstanceIdError):
            c.schedule_new_orchestration(sequence, instance_id=bad)
    iid = f"reuse-{uuid.uuid4().hex[:8]}"
    c.schedule_new_orchestration(status_then_wait, instance_id=iid)
    with pytest.raises(InstanceAlreadyExistsError):
        c.schedule_new_orchestration(status_then_wait, instance_id=iid)
    c.raise_orchestration_event(iid, "go", data="first")
    assert c.wait_for_orchestration_completion(iid, timeout=30).get_output() == "first"
    # a completed instance is replaced by a new start
    c.schedule_new_orchestration(sequence, instance_id=iid)
    state = c.wait_for_orchestration_completion(iid, timeout=30)
    assert state.name == "sequence" and state.get_output()[0] == "Hello Tokyo!"


def test_continue_as_new(engine):
    _, c = engine
    iid, state = run(c, counter, 0)
    assert state.get_output() == 5
    history = c.get_orchestration_history(iid)
    started = [e for e in history if isinstance(e, ev.ExecutionStarted)]
    assert len(started) == 1 and started[0].input == "5"  # a fresh history per execution


def test_custom_status_suspend_resume_terminate(engine):
    _, c = engine
    iid = c.schedule_new_orchestration(status_then_wait)
    state = c.wait_for_orchestration_start(iid, timeout=30)
    deadline = time.monotonic() + 30
    while c.get_orchestration_state(iid).get_custom_status() != {"stage": "waiting"}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    c.suspend_orchestration(iid)
    _wait_status(c, iid, OrchestrationStatus.SUSPENDED)
    c.raise_orchestration_event(iid, "go", data="while-suspended")
    time.sleep(0.5)
    assert c.get_orchestration_state(iid).runtime_status == OrchestrationStatus.SUSPENDED
    c.resume_orchestration(iid)
    state = c.wait_for_orchestration_completion(iid, timeout=30)
    assert state.get_output() == "while-suspended"  # kept while suspended, nothing lost
    assert state.get_custom_status() == {"stage": "done"}

    iid2 = c.schedule_new_orchestration(status_then_wait)
    c.wait_for_orchestration_start(iid2, timeout=30)
    c.terminate_orchestration(iid2, output="stopped")
    state = c.wait_for_orchestration_completion(iid2, timeout=30)
    assert state.runtime_status == OrchestrationStatus.TERMINATED
    assert state.get_output() == "stopped"
    c.raise_orchestration_event(iid2, "go", data="late")  # dropped, not an error
    time.sleep(0.3)
    assert c.get_orchestration_state(iid2).runtime_status == OrchestrationStatus.TERMINATED


def test_unhandled_exception_and_activity_failure(engine):
    _, c = engine
    _, state = run(c, failing)
    assert state.runtime_status == OrchestrationStatus.FAILED
    assert state.failure_details.error_type == "builtins.KeyError"
    assert "no such thing" in state.failure_details.message
    _, state = run(c, activity_fails)
    assert state.runtime_status == OrchestrationStatus.FAILED
    assert "kaboom" in state.failure_details.message


def test_retry_policy_with_durable_timers(engine):
    _, c = engine
    key = uuid.uuid4().hex
    iid, state = run(c, retrying, key)
    assert state.get_output() == 3
    history = c.get_orchestration_history(iid)
    assert sum(isinstance(e, ev.TaskFailed) for e in history) == 2
    assert sum(isinstance(e, ev.TimerFired) for e in history) == 2


def test_when_any_timer_beats_event(engine):
    _, c = engine
    _, state = run(c, race)
    assert state.get_output() == "timer"


def test_scheduled_start_waits(engine):
    _, c = engine
    start_at = datetime.now(timezone.utc) + timedelta(seconds=4)
    iid = c.schedule_new_orchestration(sequence, start_at=start_at)
    assert c.get_orchestration_state(iid).runtime_status == OrchestrationStatus.PENDING
    state = c.wait_for_orchestration_completion(iid, timeout=30)
    assert state.runtime_status == OrchestrationStatus.COMPLETED
    history = c.get_orchestration_history(iid)
    # Times travel as timestamp-millis: the engine keeps start_at truncated to the millisecond, so it
    # may start up to 1 ms before the microsecond start_at asked for, never before the kept one.
    (started,) = [e for e in history if isinstance(e, ev.ExecutionStarted)]
    assert started.scheduled_start_at == start_at.replace(microsecond=start_at.microsecond // 1000 * 1000)
    assert history[0].timestamp >= started.scheduled_start_at


def test_purge_restart_and_query(engine):
    _, c = engine
    iid, state = run(c, sequence)
    new_id = c.restart_orchestration(iid, restart_with_new_instance_id=True)
    assert new_id != iid
    assert c.wait_for_orchestration_completion(new_id, timeout=30).runtime_status == OrchestrationStatus.COMPLETED
    states = c.get_all_orchestration_states(OrchestrationQuery(runtime_status=[OrchestrationStatus.COMPLETED]))
    assert {iid, new_id} <= {s.instance_id for s in states}
    result = c.purge_orchestration(iid)
    assert result.deleted_instance_count == 1
    assert c.get_orchestration_state(iid) is None


def test_poison_record_goes_to_deadletter_and_processing_continues(engine, module_hub):
    _, c = engine
    hub = module_hub
    iid = c.schedule_new_orchestration(status_then_wait)
    c.wait_for_orchestration_start(iid, timeout=30)
    p = Producer({"bootstrap.servers": hub.bootstrap, "partitioner": "murmur2_random"})
    p.produce(hub.topics.orchestrator_events, key=iid.encode(), value=b"\xc3\x01garbage-not-avro")
    p.flush(10)
    state = c.wait_for_orchestration_completion(iid, timeout=30)
    assert state.runtime_status == OrchestrationStatus.FAILED
    assert "poison input" in state.failure_details.message
    letters = _read_all(hub.bootstrap, hub.topics.deadletter, hub.partitions)
    assert any(x.instance_id == iid and x.original == b"\xc3\x01garbage-not-avro" for x in letters)
    # the partition keeps going
    _, ok = run(c, sequence)
    assert ok.runtime_status == OrchestrationStatus.COMPLETED


def _wait_status(c: Client, iid: str, status: OrchestrationStatus, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (s := c.get_orchestration_state(iid)) is None or s.runtime_status != status:
        assert time.monotonic() < deadline, f"{iid} never reached {status}"
        time.sleep(0.05)


def _read_all(bootstrap: str, topic: str, partitions: int) -> list:
    return [v for _, v in read_topic(bootstrap, topic, Codec.default()) if v is not None]


def grandchild_waits(ctx, _):
    return (yield ctx.wait_for_external_event("never"))


def parent_of_waiter(ctx, child_id):
    return (yield ctx.call_sub_orchestrator(grandchild_waits, instance_id=child_id))


def test_terminate_and_purge_are_recursive(hub, tmp_path):
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "s"), partitions=hub.partitions)
    w.add_orchestrator(grandchild_waits)
    w.add_orchestrator(parent_of_waiter)
    with w, Client(hub.bootstrap, hub=hub.name) as c:
        child_id = f"child-{uuid.uuid4().hex[:8]}"
        iid = c.schedule_new_orchestration(parent_of_waiter, input=child_id)
        c.wait_for_orchestration_start(child_id, timeout=30)
        c.terminate_orchestration(iid, output="enough")
        assert c.wait_for_orchestration_completion(iid, timeout=30).runtime_status == OrchestrationStatus.TERMINATED
        child = c.wait_for_orchestration_completion(child_id, timeout=30)
        assert child.runtime_status == OrchestrationStatus.TERMINATED
        assert c.purge_orchestration(iid).deleted_instance_count >= 1
        deadline = time.monotonic() + 30
        while c.get_orchestration_state(child_id) is not None:
            assert time.monotonic() < deadline, "child was not purged with its parent"
            time.sleep(0.1)
        assert c.get_orchestration_state(iid) is None


def slow(ctx, x):
    time.sleep(1.0)
    return x


def calls_slow(ctx, _):
    return (yield ctx.call_activity(slow, input="late"))


def collector(ctx, state):
    # state = [values...]; every step waits for one "item", keeps it, continues as new
    state = state or {"seen": [], "save": True}
    if len(state["seen"]) == 3:
        return state["seen"]
    item = yield ctx.wait_for_external_event("item")
    state["seen"].append(item)
    if len(state["seen"]) == 1:
        # two more items are already buffered: they survive only with save_events=True
        yield ctx.create_timer(timedelta(milliseconds=300))
    ctx.continue_as_new(state, save_events=state["save"])


def test_late_activity_result_after_terminate_is_ignored(hub, tmp_path):
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "s"), partitions=hub.partitions)
    w.add_orchestrator(calls_slow)
    w.add_activity(slow)
    with w, Client(hub.bootstrap, hub=hub.name) as c:
        iid = c.schedule_new_orchestration(calls_slow)
        c.wait_for_orchestration_start(iid, timeout=30)
        c.terminate_orchestration(iid, output="cut short")
        state = c.wait_for_orchestration_completion(iid, timeout=30)
        assert state.runtime_status == OrchestrationStatus.TERMINATED
        time.sleep(1.5)  # the activity finishes and its result arrives
        state = c.get_orchestration_state(iid)
        assert state.runtime_status == OrchestrationStatus.TERMINATED and state.get_output() == "cut short"
        assert not any(isinstance(e, ev.TaskCompleted) for e in c.get_orchestration_history(iid))


@pytest.mark.parametrize("save", [True, False])
def test_continue_as_new_carries_buffered_events_only_when_asked(hub, tmp_path, save):
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "s"), partitions=hub.partitions)
    w.add_orchestrator(collector)
    with w, Client(hub.bootstrap, hub=hub.name) as c:
        iid = c.schedule_new_orchestration(collector, input={"seen": [], "save": save})
        c.wait_for_orchestration_start(iid, timeout=30)
        for i in range(3):
            c.raise_orchestration_event(iid, "item", data=i)
        if save:
            assert c.wait_for_orchestration_completion(iid, timeout=30).get_output() == [0, 1, 2]
        else:
            time.sleep(2)  # items 1 and 2 were dropped with the first execution's buffer
            state = c.get_orchestration_state(iid)
            assert state.runtime_status == OrchestrationStatus.RUNNING
            assert state.get_input()["seen"] == [0]


def test_durabletask_style_worker_registers_inside_with_then_starts(hub, tmp_path):
    """durabletask's own e2e tests enter an empty worker, register, then call start()."""
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "dt"), partitions=hub.partitions)
    with w:
        assert not w.is_running
        w.add_orchestrator(sequence)
        w.add_activity(hello)
        w.start()
        with Client(hub.bootstrap, hub=hub.name) as c:
            _, state = run(c, sequence)
    assert state.runtime_status == OrchestrationStatus.COMPLETED
    assert state.get_output() == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
