"""durable_kafka.testing.InMemoryBackend: the engine's own code on in-memory topics, virtual time.

No broker, no sleeps: every test here runs in milliseconds, including the ones whose
orchestrations wait days. The Kafka twins of these scenarios are in tests/integration.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from durable_kafka import OrchestrationStatus, RetryPolicy, task, when_all, when_any
from durable_kafka.entities import DurableEntity, EntityInstanceId
from durable_kafka.errors import (
    InstanceAlreadyExistsError,
    InvalidArgumentError,
    OrchestrationFailedError,
    TimeoutError,
)
from durable_kafka.streams import events as ev
from durable_kafka.testing import InMemoryBackend

START = datetime(2030, 1, 1, tzinfo=timezone.utc)


def hello(ctx: task.ActivityContext, name: str) -> str:
    return f"Hello {name}!"


def greetings(ctx: task.OrchestrationContext, cities: list[str]) -> Any:
    return (yield when_all([ctx.call_activity(hello, input=c) for c in cities]))


@pytest.fixture
def backend():
    with InMemoryBackend(start_time=START) as b:
        yield b


def run(backend: InMemoryBackend, *orchestrators: Any, activities: tuple = (), entities: tuple = ()):
    worker = backend.worker()
    for fn in orchestrators:
        worker.add_orchestrator(fn)
    for fn in activities:
        worker.add_activity(fn)
    for fn in entities:
        worker.add_entity(fn)
    return worker.start(), backend.client()


# --------------------------------------------------------------------------- activities, sub-orchestrations


def test_activities_fan_out_and_in(backend):
    _, client = run(backend, greetings, activities=(hello,))
    iid = client.schedule_new_orchestration(greetings, input=["Lima", "Oslo", "Tokyo"])
    state = client.wait_for_orchestration_completion(iid)
    assert state.runtime_status == OrchestrationStatus.COMPLETED
    assert state.serialized_output == '["Hello Lima!", "Hello Oslo!", "Hello Tokyo!"]'
    history = client.get_orchestration_history(iid)
    assert [type(e).__name__ for e in history].count("TaskScheduled") == 3
    assert isinstance(history[-1], ev.ExecutionCompleted)


def test_sub_orchestrations_and_their_failure(backend):
    def child(ctx, x):
        if x < 0:
            raise ValueError(f"negative: {x}")
        return x * 2

    def parent(ctx, xs):
        out = []
        for x in xs:
            try:
                out.append((yield ctx.call_sub_orchestrator(child, input=x, instance_id=f"child-{x}")))
            except task.TaskFailedError as e:
                out.append(e.details.message)
        return out

    _, client = run(backend, parent, child)
    iid = client.schedule_new_orchestration(parent, input=[1, -1, 3])
    state = client.wait_for_orchestration_completion(iid)
    assert state.runtime_status == OrchestrationStatus.COMPLETED
    out = state.get_output()
    assert out[0] == 2 and out[2] == 6 and "negative: -1" in out[1]
    assert client.get_orchestration_state("child-3").serialized_output == "6"
    assert client.get_orchestration_state("child--1").runtime_status == OrchestrationStatus.FAILED


def test_an_activity_failure_fails_the_orchestration_with_its_details(backend):
    def broken(ctx, _):
        raise KeyError("no such order")

    def uses_broken(ctx, _):
        return (yield ctx.call_activity(broken))

    _, client = run(backend, uses_broken, activities=(broken,))
    iid = client.schedule_new_orchestration(uses_broken)
    state = client.wait_for_orchestration_completion(iid)
    assert state.runtime_status == OrchestrationStatus.FAILED
    assert "no such order" in state.failure_details.message
    with pytest.raises(OrchestrationFailedError):
        state.raise_if_failed()


def test_async_activities_run_in_process(backend):
    async def shout(ctx, text):
        return text.upper()

    def calls_async(ctx, text):
        return (yield ctx.call_activity(shout, input=text))

    _, client = run(backend, calls_async, activities=(shout,))
    iid = client.schedule_new_orchestration(calls_async, input="hi")
    assert client.wait_for_orchestration_completion(iid).get_output() == "HI"


def test_an_unregistered_activity_fails_the_task_by_name(backend):
    def calls_missing(ctx, _):
        return (yield ctx.call_activity("missing"))

    _, client = run(backend, calls_missing)
    state = client.wait_for_orchestration_completion(client.schedule_new_orchestration(calls_missing))
    assert state.runtime_status == OrchestrationStatus.FAILED
    assert "no activity named 'missing'" in state.failure_details.message


# --------------------------------------------------------------------------- time


def week_long(ctx: task.OrchestrationContext, _: Any) -> Any:
    start = ctx.current_utc_datetime
    yield ctx.create_timer(timedelta(days=7))
    return [start.isoformat(), ctx.current_utc_datetime.isoformat()]


def test_a_week_long_timer_completes_at_once_with_virtual_time(backend):
    _, client = run(backend, week_long)
    iid = client.schedule_new_orchestration(week_long)
    state = client.wait_for_orchestration_completion(iid, timeout=5)
    began, ended = (datetime.fromisoformat(x) for x in state.get_output())
    assert began == START and ended == START + timedelta(days=7)
    assert backend.current_time == START + timedelta(days=7)


def test_skip_time_fires_what_is_due_in_the_span_and_nothing_later(backend):
    def two_timers(ctx, _):
        yield ctx.create_timer(timedelta(days=1))
        ctx.set_custom_status("one day")
        yield ctx.create_timer(timedelta(days=6))
        return "done"

    _, client = run(backend, two_timers)
    iid = client.schedule_new_orchestration(two_timers)
    backend.skip_time(timedelta(hours=23))
    assert client.get_orchestration_state(iid).serialized_custom_status is None
    backend.skip_time(timedelta(hours=2))
    state = client.get_orchestration_state(iid)
    assert state.serialized_custom_status == '"one day"' and state.runtime_status == OrchestrationStatus.RUNNING
    backend.skip_time(timedelta(days=7))  # fires the second timer (due at day 7) inside the span
    assert client.get_orchestration_state(iid).runtime_status == OrchestrationStatus.COMPLETED
    assert backend.current_time == START + timedelta(days=8, hours=1)


def test_auto_skip_can_be_turned_off(backend):
    backend.auto_skip_time = False
    _, client = run(backend, week_long)
    iid = client.schedule_new_orchestration(week_long)
    with pytest.raises(TimeoutError):
        client.wait_for_orchestration_completion(iid, timeout=0.05)
    backend.skip_time(timedelta(days=7))
    assert client.wait_for_orchestration_completion(iid, timeout=1).runtime_status == OrchestrationStatus.COMPLETED


def test_scheduled_start(backend):
    _, client = run(backend, week_long)
    iid = client.schedule_new_orchestration(week_long, start_at=START + timedelta(hours=5))
    assert client.get_orchestration_state(iid).runtime_status == OrchestrationStatus.PENDING
    started = client.wait_for_orchestration_start(iid)
    assert started.runtime_status == OrchestrationStatus.RUNNING
    assert backend.current_time == START + timedelta(hours=5)


def test_retries_wait_their_backoff_in_virtual_time(backend):
    attempts: list[int] = []

    def flaky(ctx, _):
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError(f"attempt {len(attempts)}")
        return len(attempts)

    def retrying(ctx, _):
        policy = RetryPolicy(first_retry_interval=timedelta(hours=1), max_number_of_attempts=5, backoff_coefficient=2)
        result = yield ctx.call_activity(flaky, retry_policy=policy)
        return [result, ctx.current_utc_datetime.isoformat()]

    _, client = run(backend, retrying, activities=(flaky,))
    state = client.wait_for_orchestration_completion(client.schedule_new_orchestration(retrying))
    result, at = state.get_output()
    assert result == 3 and len(attempts) == 3
    assert datetime.fromisoformat(at) == START + timedelta(hours=3)  # 1 h, then 2 h of backoff


def test_retries_exhausted_fail(backend):
    def always_fails(ctx, _):
        raise RuntimeError("down")

    def retrying(ctx, _):
        policy = RetryPolicy(first_retry_interval=timedelta(minutes=10), max_number_of_attempts=3)
        return (yield ctx.call_activity(always_fails, retry_policy=policy))

    _, client = run(backend, retrying, activities=(always_fails,))
    state = client.wait_for_orchestration_completion(client.schedule_new_orchestration(retrying))
    assert state.runtime_status == OrchestrationStatus.FAILED and "down" in state.failure_details.message


# --------------------------------------------------------------------------- events, suspend, terminate


def approval(ctx: task.OrchestrationContext, _: Any) -> Any:
    answer = ctx.wait_for_external_event("approval")
    timeout = ctx.create_timer(timedelta(days=3))
    winner = yield when_any([answer, timeout])
    if winner is answer:
        return {"approved": answer.get_result()}
    return {"approved": False, "timed_out": True}


def test_external_event_wins_against_a_timeout(backend):
    _, client = run(backend, approval)
    iid = client.schedule_new_orchestration(approval)
    client.wait_for_orchestration_start(iid)
    client.raise_orchestration_event(iid, "approval", data="yes")
    assert client.wait_for_orchestration_completion(iid).get_output() == {"approved": "yes"}
    assert backend.current_time == START


def test_the_timeout_wins_when_no_event_comes(backend):
    _, client = run(backend, approval)
    iid = client.schedule_new_orchestration(approval)
    assert client.wait_for_orchestration_completion(iid).get_output() == {"approved": False, "timed_out": True}
    assert backend.current_time == START + timedelta(days=3)


def test_an_event_raised_before_the_instance_exists_waits_for_it(backend):
    _, client = run(backend, approval)
    client.raise_orchestration_event("early", "approval", data=1)
    client.schedule_new_orchestration(approval, instance_id="early")
    assert client.wait_for_orchestration_completion("early").get_output() == {"approved": 1}


def test_an_event_from_another_thread_releases_a_waiting_client(backend):
    def waits(ctx, _):
        return (yield ctx.wait_for_external_event("go"))

    _, client = run(backend, waits)
    iid = client.schedule_new_orchestration(waits)
    sender = threading.Timer(0.05, lambda: backend.client().raise_orchestration_event(iid, "go", data=42))
    sender.start()
    assert client.wait_for_orchestration_completion(iid, timeout=30).get_output() == 42
    sender.join()


def test_suspend_holds_events_until_resume(backend):
    _, client = run(backend, approval)
    iid = client.schedule_new_orchestration(approval)
    client.suspend_orchestration(iid, reason="audit")
    client.raise_orchestration_event(iid, "approval", data="late")
    assert client.get_orchestration_state(iid).runtime_status == OrchestrationStatus.SUSPENDED
    client.resume_orchestration(iid)
    assert client.wait_for_orchestration_completion(iid).get_output() == {"approved": "late"}


def test_terminate_recursively_and_purge(backend):
    def child(ctx, _):
        yield ctx.wait_for_external_event("never")

    def parent(ctx, _):
        yield ctx.call_sub_orchestrator(child, instance_id="the-child")

    _, client = run(backend, parent, child)
    iid = client.schedule_new_orchestration(parent)
    client.terminate_orchestration(iid, output="stop")
    state = client.wait_for_orchestration_completion(iid)
    assert state.runtime_status == OrchestrationStatus.TERMINATED and state.get_output() == "stop"
    assert client.get_orchestration_state("the-child").runtime_status == OrchestrationStatus.TERMINATED
    assert client.purge_orchestration(iid).deleted_instance_count == 1
    assert client.get_orchestration_state(iid) is None
    assert client.get_orchestration_state("the-child") is None  # recursive purge


def test_start_with_an_id_in_use_is_refused(backend):
    _, client = run(backend, approval)
    client.schedule_new_orchestration(approval, instance_id="once")
    with pytest.raises(InstanceAlreadyExistsError):
        client.schedule_new_orchestration(approval, instance_id="once")


def test_client_argument_errors_are_the_clients_own(backend):
    _, client = run(backend, approval)
    with pytest.raises(InvalidArgumentError):
        client.schedule_new_orchestration(approval, input=object())
    with pytest.raises(InvalidArgumentError):
        client.raise_orchestration_event("x", "")


# --------------------------------------------------------------------------- continue_as_new


def test_continue_as_new_carries_saved_events(backend):
    def counter(ctx, total):
        n = yield ctx.wait_for_external_event("add")
        if n is None:
            return total
        ctx.continue_as_new(total + n, save_events=True)

    _, client = run(backend, counter)
    iid = client.schedule_new_orchestration(counter, input=0)
    for n in (1, 2, 3, None):
        client.raise_orchestration_event(iid, "add", data=n)
    assert client.wait_for_orchestration_completion(iid).get_output() == 6


def test_an_eternal_orchestration_with_a_daily_timer(backend):
    def daily(ctx, day):
        if day == 30:
            return ctx.current_utc_datetime.isoformat()
        yield ctx.create_timer(timedelta(days=1))
        ctx.continue_as_new(day + 1)

    _, client = run(backend, daily)
    iid = client.schedule_new_orchestration(daily, input=0)
    out = client.wait_for_orchestration_completion(iid).get_output()
    assert datetime.fromisoformat(out) == START + timedelta(days=30)


# --------------------------------------------------------------------------- entities


class Account(DurableEntity):
    def deposit(self, amount: int) -> int:
        balance = self.get_state(int, 0) + amount
        self.set_state(balance)
        return balance

    def withdraw(self, amount: int) -> int:
        balance = self.get_state(int, 0)
        if amount > balance:
            raise ValueError(f"balance {balance} < {amount}")
        self.set_state(balance - amount)
        return balance - amount

    def balance(self) -> int:
        return self.get_state(int, 0)


def transfer(ctx: task.OrchestrationContext, args: dict) -> Any:
    src, dst = EntityInstanceId("account", args["from"]), EntityInstanceId("account", args["to"])
    with (yield ctx.lock_entities([src, dst])):
        try:
            yield ctx.call_entity(src, "withdraw", args["amount"])
        except task.TaskFailedError as e:
            return {"ok": False, "why": e.details.message}
        yield ctx.call_entity(dst, "deposit", args["amount"])
    return {"ok": True}


def test_entities_signal_get_call_and_lock(backend):
    _, client = run(backend, transfer, entities=(Account,))
    client.signal_entity(EntityInstanceId("account", "a"), "deposit", 100)
    assert client.get_entity(EntityInstanceId("account", "a")).get_state(int) == 100
    ok = client.schedule_new_orchestration(transfer, input={"from": "a", "to": "b", "amount": 70})
    assert client.wait_for_orchestration_completion(ok).get_output() == {"ok": True}
    too_much = client.schedule_new_orchestration(transfer, input={"from": "a", "to": "b", "amount": 70})
    out = client.wait_for_orchestration_completion(too_much).get_output()
    assert out["ok"] is False and "balance 30 < 70" in out["why"]
    assert client.get_entity(EntityInstanceId("account", "b")).get_state(int) == 70
    assert client.get_entity(EntityInstanceId("account", "a")).get_locked_by() is None
    assert {m.id.key for m in client.get_all_entities()} == {"a", "b"}


def test_a_scheduled_signal_fires_at_its_virtual_time(backend):
    _, client = run(backend, entities=(Account,))
    client.signal_entity(EntityInstanceId("account", "s"), "deposit", 5, signal_time=START + timedelta(days=2))
    assert client.get_entity(EntityInstanceId("account", "s")) is None
    backend.skip_time(timedelta(days=1))
    assert client.get_entity(EntityInstanceId("account", "s")) is None
    backend.skip_time(timedelta(days=1))
    assert client.get_entity(EntityInstanceId("account", "s")).get_state(int) == 5


def test_function_entity_and_signal_from_an_orchestration(backend):
    def counter(ctx, value):
        if ctx.operation == "add":
            ctx.set_state(ctx.get_state(int, 0) + value)
        return ctx.get_state(int, 0)

    def bumps(ctx, n):
        for _ in range(n):
            ctx.signal_entity(EntityInstanceId("counter", "c"), "add", 1)
        return (yield ctx.call_entity(EntityInstanceId("counter", "c"), "get"))

    _, client = run(backend, bumps, entities=(counter,))
    iid = client.schedule_new_orchestration(bumps, input=3)
    assert client.wait_for_orchestration_completion(iid).get_output() == 3


# --------------------------------------------------------------------------- harness behaviour


def test_without_a_started_worker_a_wait_fails_at_once_and_says_why():
    with InMemoryBackend() as b:
        b.worker().add_orchestrator(week_long)
        client = b.client()
        with pytest.raises(TimeoutError, match="is a worker running"):  # the Kafka client's message, at once
            client.schedule_new_orchestration(week_long, timeout=30)
        iid = client.schedule_new_orchestration(week_long, wait_for_acceptance=False)
        with pytest.raises(TimeoutError, match="no worker is running"):
            client.wait_for_orchestration_completion(iid, timeout=30)


def test_work_sent_before_the_worker_starts_runs_when_it_starts():
    with InMemoryBackend() as b:
        worker = b.worker()
        worker.add_orchestrator(greetings)
        worker.add_activity(hello)
        client = b.client()
        iid = client.schedule_new_orchestration(greetings, input=["Rome"], wait_for_acceptance=False)
        with worker:
            assert client.wait_for_orchestration_completion(iid).get_output() == ["Hello Rome!"]


def test_runs_are_deterministic():
    def outputs() -> list[Any]:
        with InMemoryBackend(start_time=START) as b:
            _, client = run(b, approval, greetings, activities=(hello,))
            a = client.schedule_new_orchestration(approval, instance_id="a")
            g = client.schedule_new_orchestration(greetings, input=["x", "y"], instance_id="g")
            client.wait_for_orchestration_completion(a)
            return [[(type(e).__name__, e.timestamp) for e in client.get_orchestration_history(i)] for i in (a, g)]

    assert outputs() == outputs()


def test_a_poison_orchestrator_fails_its_instance_not_the_backend(backend):
    def not_json(ctx, _):
        return object()  # the output cannot be serialized

    _, client = run(backend, not_json, greetings, activities=(hello,))
    bad = client.schedule_new_orchestration(not_json)
    assert client.wait_for_orchestration_completion(bad).runtime_status == OrchestrationStatus.FAILED
    good = client.schedule_new_orchestration(greetings, input=["ok"])
    assert client.wait_for_orchestration_completion(good).runtime_status == OrchestrationStatus.COMPLETED


def test_query_and_restart(backend):
    _, client = run(backend, greetings, activities=(hello,))
    iid = client.schedule_new_orchestration(greetings, input=["a"], instance_id="q1")
    client.wait_for_orchestration_completion(iid)
    assert [s.instance_id for s in client.get_all_orchestration_states()] == ["q1"]
    new_id = client.restart_orchestration(iid, restart_with_new_instance_id=True)
    assert client.wait_for_orchestration_completion(new_id).get_output() == ["Hello a!"]


def test_the_testing_module_exports_exactly_its_documented_names():
    import durable_kafka.testing as testing
    from durable_kafka import Client, Worker

    assert testing.__all__ == sorted(testing.__all__) == [
        "InMemoryBackend", "InMemoryClient", "InMemoryWorker", "RecordedHistory", "ReplayResult", "Replayer"]
    assert issubclass(testing.InMemoryClient, Client) and issubclass(testing.InMemoryWorker, Worker)


def test_a_wait_ends_at_its_timeout_even_while_other_instances_keep_timers_going(backend):
    def forever(ctx, n):
        yield ctx.create_timer(timedelta(hours=1))
        ctx.continue_as_new(n + 1)

    def waits(ctx, _):
        return (yield ctx.wait_for_external_event("never"))

    _, client = run(backend, forever, waits)
    client.schedule_new_orchestration(forever, input=0)
    iid = client.schedule_new_orchestration(waits)
    with pytest.raises(TimeoutError, match="to complete"):
        client.wait_for_orchestration_completion(iid, timeout=0.2)
    assert backend.current_time > START + timedelta(hours=2)  # the eternal one went on meanwhile


def test_clean_entity_storage_removes_emptied_entities(backend):
    _, client = run(backend, entities=(Account,))
    client.signal_entity(EntityInstanceId("account", "gone"), "deposit", 1)
    client.signal_entity(EntityInstanceId("account", "gone"), "delete")
    assert client.get_entity(EntityInstanceId("account", "gone")) is None
    assert client.clean_entity_storage(timeout=5).empty_entities_removed == 1


def test_a_restarted_worker_rebuilds_running_instances_from_their_history(backend):
    """Stopping the worker drops its executor cache, as a process restart would: the next step
    replays the stored history (the recovery path of the processor) and goes on."""
    first, client = run(backend, approval, greetings, activities=(hello,))
    iid = client.schedule_new_orchestration(approval)
    first.stop()
    client.raise_orchestration_event(iid, "approval", data="after restart")
    assert client.get_orchestration_state(iid).runtime_status == OrchestrationStatus.RUNNING  # nobody runs it
    second = backend.worker()
    second.add_orchestrator(approval)
    with second:
        assert client.wait_for_orchestration_completion(iid).get_output() == {"approved": "after restart"}
    assert second.stats()["cache_misses"] >= 1


def test_trigger_routes_are_refused_at_start(backend):
    from durable_kafka import triggers
    from durable_kafka.errors import ConfigurationError

    worker = backend.worker()
    worker.add_orchestrator(approval)
    worker.add_trigger(triggers.Start("shop.orders", approval, instance_id="order-{value.id}"))
    with pytest.raises(ConfigurationError, match="trigger and output routes"):
        worker.start()
    assert not worker.is_running


def keyword_names(ctx: task.OrchestrationContext, _: Any) -> Any:
    """durabletask's keyword spellings: signal_entity(operation_name=), call_entity(operation=),
    and each method's other spelling."""
    acct = EntityInstanceId("account", "kw")
    ctx.signal_entity(acct, operation_name="deposit", input=3)
    ctx.signal_entity(acct, operation="deposit", input=4)
    first = yield ctx.call_entity(acct, operation="balance")
    second = yield ctx.call_entity(acct, operation_name="balance")
    return [first, second]


def test_entity_operation_keywords_of_either_spelling(backend):
    _, client = run(backend, keyword_names, entities=(Account,))
    iid = client.schedule_new_orchestration(keyword_names)
    assert client.wait_for_orchestration_completion(iid).get_output() == [7, 7]


def both_operation_names(ctx: task.OrchestrationContext, _: Any) -> Any:
    ctx.signal_entity(EntityInstanceId("account", "x"), "deposit", 1, operation="withdraw")
    yield ctx.create_timer(timedelta(seconds=1))


def test_two_different_operation_names_fail_the_orchestration_with_a_typed_error(backend):
    _, client = run(backend, both_operation_names, entities=(Account,))
    iid = client.schedule_new_orchestration(both_operation_names)
    state = client.wait_for_orchestration_completion(iid)
    assert state.runtime_status == OrchestrationStatus.FAILED
    assert "InvalidArgumentError" in state.failure_details.error_type
    assert "not both" in state.failure_details.message
