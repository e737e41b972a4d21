"""durable_kafka.testing.Replayer: recorded histories against today's code.

The histories in tests/data/histories/recorded/ were recorded on the real broker
(``record_histories.py``) from the orchestrators in ``replay_orchestrators.py``. Replayed
against that code they pass; against each changed copy below the replay raises
NonDeterminismError naming the first history event where the code diverges.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import replay_orchestrators as code
from replay_orchestrators import ORCHESTRATORS, charge, check_stock, notify, shipping

from durable_kafka import OrchestrationStatus, task, when_any
from durable_kafka.errors import InvalidArgumentError, NonDeterminismError, OrchestratorNotRegisteredError
from durable_kafka.processors import history_json
from durable_kafka.streams import events as ev
from durable_kafka.testing import InMemoryBackend, RecordedHistory, Replayer

RECORDED = Path(__file__).resolve().parents[2] / "data" / "histories" / "recorded"
FILES = sorted(RECORDED.glob("*.json"))


def test_fixtures_are_there():
    assert {f.name for f in FILES} >= {"order_flow_approved.json", "order_flow_timed_out.json", "retries.json",
                                       "counter_last_execution.json", "entity_user.json", "waiter_running.json"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_recorded_histories_replay_against_the_code_that_made_them(path):
    result = Replayer(orchestrators=ORCHESTRATORS).replay(Replayer.load(path))
    recorded = json.loads(path.read_text())["history"]
    assert result.events_replayed == len(recorded)
    end = recorded[-1]
    if end["type"] == "ExecutionCompleted":
        assert result.runtime_status == OrchestrationStatus.COMPLETED
        assert json.loads(result.output) == json.loads(end["result"])
    else:
        assert result.runtime_status == OrchestrationStatus.RUNNING


# --------------------------------------------------------------------------- changed code is caught


def order_flow_renamed_activity(ctx: task.OrchestrationContext, order: dict) -> Any:
    in_stock = yield ctx.call_activity(check_stock, input=order["item"])
    if not in_stock:
        return {"status": "rejected"}
    receipt = yield ctx.call_activity("charge_card", input=order)  # was charge
    approval = ctx.wait_for_external_event("approved")
    timeout = ctx.create_timer(timedelta(seconds=2))
    winner = yield when_any([approval, timeout])
    if winner is timeout:
        return {"status": "not approved", "receipt": receipt}
    shipment = yield ctx.call_sub_orchestrator(shipping, input=order)
    return {"status": "done", "receipt": receipt, "shipment": shipment}


def order_flow_without_timeout(ctx: task.OrchestrationContext, order: dict) -> Any:
    in_stock = yield ctx.call_activity(check_stock, input=order["item"])
    if not in_stock:
        return {"status": "rejected"}
    receipt = yield ctx.call_activity(charge, input=order)
    yield ctx.wait_for_external_event("approved")  # the timer race was removed
    shipment = yield ctx.call_sub_orchestrator(shipping, input=order)
    return {"status": "done", "receipt": receipt, "shipment": shipment}


def order_flow_notifies_at_the_end(ctx: task.OrchestrationContext, order: dict) -> Any:
    result = yield from code.order_flow(ctx, order)
    yield ctx.call_activity(notify, input="all done")  # a new last step
    return result


def order_flow_new_output(ctx: task.OrchestrationContext, order: dict) -> Any:
    result = yield from code.order_flow(ctx, order)
    return {**result, "version": 2}


def order_flow_stops_early(ctx: task.OrchestrationContext, order: dict) -> Any:
    yield ctx.call_activity(check_stock, input=order["item"])
    return {"status": "checked"}


def retries_fewer_attempts(ctx: task.OrchestrationContext, key: str) -> Any:
    policy = task.RetryPolicy(first_retry_interval=timedelta(milliseconds=200), max_number_of_attempts=1)
    return (yield ctx.call_activity(code.flaky, input=key, retry_policy=policy))


def entity_user_locks_another(ctx: task.OrchestrationContext, n: int) -> Any:
    from durable_kafka.entities import EntityInstanceId

    target = EntityInstanceId("counter_entity", "replay")
    ctx.signal_entity(target, "add", n)
    with (yield ctx.lock_entities([target, EntityInstanceId("counter_entity", "other")])):
        value = yield ctx.call_entity(target, "get")
    return value


def waiter_with_a_new_step(ctx: task.OrchestrationContext, _: Any) -> Any:
    first = yield ctx.call_activity(notify, input="started")
    yield ctx.call_activity(notify, input="inserted")
    second = yield ctx.wait_for_external_event("never")
    return [first, second]


def waiter_returns_early(ctx: task.OrchestrationContext, _: Any) -> Any:
    first = yield ctx.call_activity(notify, input="started")
    return [first]  # no longer waits for "never"


def counter_doubles(ctx: task.OrchestrationContext, total: int) -> Any:
    n = yield ctx.wait_for_external_event("add")
    if n is None:
        return total
    ctx.continue_as_new(total + 2 * n)


CHANGED = [
    ("order_flow_approved", "order_flow", order_flow_renamed_activity,
     ["TaskScheduled, sequence number 2", "name='charge'", "name='charge_card'"]),
    ("order_flow_approved", "order_flow", order_flow_without_timeout,
     ["TimerCreated, sequence number 3", "create_timer()", "made no call"]),
    ("order_flow_approved", "order_flow", order_flow_notifies_at_the_end,
     ["OrchestratorCompleted", "call_activity(name='notify')", "history does not have"]),
    ("order_flow_approved", "order_flow", order_flow_new_output,
     ["ExecutionCompleted", "output", '"version": 2']),
    ("order_flow_timed_out", "order_flow", order_flow_stops_early,
     ["history event #6 (TaskScheduled, sequence number 2)", "name='charge'", "made no call"]),
    ("retries", "retries", retries_fewer_attempts, ["TimerCreated, sequence number 2", "made no call"]),
    ("entity_user", "entity_user", entity_user_locks_another, ["EntityLockRequested", "lock_set="]),
    ("waiter_running", "waiter", waiter_returns_early,
     ["history event #6 (OrchestratorCompleted)", "ends here (COMPLETED)", "records no end"]),
    ("waiter_running", "waiter", waiter_with_a_new_step, ["OrchestratorCompleted", "name='notify'", "sequence number 2"]),
]


@pytest.mark.parametrize("fixture,name,changed,expected", CHANGED, ids=lambda x: getattr(x, "__name__", None))
def test_a_changed_orchestrator_is_caught_at_its_first_divergent_step(fixture, name, changed, expected):
    history = Replayer.load(RECORDED / f"{fixture}.json")
    with pytest.raises(NonDeterminismError) as caught:
        Replayer(orchestrators=[(name, changed), code.shipping]).replay(history)
    message = str(caught.value)
    assert f"replay of {history.instance_id!r} diverged at history event #" in message
    for part in expected:
        assert part in message, (part, message)


def test_the_step_named_is_the_first_divergence():
    history = Replayer.load(RECORDED / "order_flow_approved.json")
    with pytest.raises(NonDeterminismError) as caught:
        Replayer(orchestrators=[("order_flow", order_flow_renamed_activity)]).replay(history)
    index = int(str(caught.value).split("history event #")[1].split(" ")[0])
    assert isinstance(history.events[index], ev.TaskScheduled) and history.events[index].name == "charge"
    assert not any(isinstance(e, ev.TaskScheduled) and e.name == "charge" for e in history.events[:index])


# --------------------------------------------------------------------------- inputs


def test_histories_from_the_in_memory_backend_client_and_the_history_topic():
    with InMemoryBackend() as backend:
        worker, client = backend.worker(), backend.client()
        for fn in code.ORCHESTRATORS:
            worker.add_orchestrator(fn)
        for fn in code.ACTIVITIES:
            worker.add_activity(fn)
        with worker:
            iid = client.schedule_new_orchestration(code.order_flow, input={"item": "pen", "amount": 1})
            client.wait_for_orchestration_completion(iid)
            counter = client.schedule_new_orchestration(code.counter, input=0)
            for n in (1, 2, None):
                client.raise_orchestration_event(counter, "add", data=n)
            client.wait_for_orchestration_completion(counter)
            history = client.get_orchestration_history(iid)
        replayer = Replayer(orchestrators=ORCHESTRATORS)
        assert replayer.replay(history).runtime_status == OrchestrationStatus.COMPLETED
        # the history topic (what an audit export holds): every instance, the latest execution of each
        results = {r.instance_id: r for r in replayer.replay_all(backend.history_records())}
        assert results[counter].output == "3" and results[iid].runtime_status == OrchestrationStatus.COMPLETED
        # ... and the audit's fold of it (connectors.audit.fold: one FoldedInstance per instance)
        from durable_kafka.connectors.audit import fold

        folded = replayer.replay_all(fold(backend.history_records()).values())
        assert {r.instance_id: r.output for r in folded} == {k: r.output for k, r in results.items()}
        with pytest.raises(NonDeterminismError):
            Replayer(orchestrators=[("order_flow", order_flow_new_output), code.shipping]).replay(history)


def test_a_bare_list_of_events_and_save_load_round_trip(tmp_path):
    history = Replayer.load(RECORDED / "retries.json")
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps([history_json.to_json(e) for e in history.events]))
    assert Replayer.load(bare).events == history.events
    saved = tmp_path / "saved.json"
    Replayer.save(saved, history.events, instance_id="r1")
    again = Replayer.load(saved)
    assert again.instance_id == "r1" and again.events == history.events
    assert Replayer(orchestrators=ORCHESTRATORS).replay(str(saved)).output == '"ok after 3"'


def test_a_history_that_already_failed_with_this_divergence_replays_as_recorded():
    """Production already met the change (v1 running, v2 deployed): its history ends FAILED with the
    non-determinism; replaying it against v2 reproduces that end and raises nothing."""

    def v1(ctx, _):
        yield ctx.call_activity(notify, input="a")
        yield ctx.wait_for_external_event("go")
        return "v1"

    def v2(ctx, _):
        yield ctx.call_activity(check_stock, input="a")
        yield ctx.wait_for_external_event("go")
        return "v2"

    with InMemoryBackend() as backend:
        old, client = backend.worker(), backend.client()
        old.add_orchestrator(v1, name="flow")
        old.add_activity(notify)
        with old:
            iid = client.schedule_new_orchestration("flow")
        new = backend.worker()
        new.add_orchestrator(v2, name="flow")
        new.add_activity(check_stock)
        with new:
            client.raise_orchestration_event(iid, "go")
            state = client.wait_for_orchestration_completion(iid)
            assert state.failure_details.error_type == "durable_kafka.errors.NonDeterminismError"
            history = client.get_orchestration_history(iid)
    result = Replayer(orchestrators=[("flow", v2)]).replay(history)
    assert result.runtime_status == OrchestrationStatus.FAILED
    with pytest.raises(NonDeterminismError, match="ExecutionCompleted"):
        Replayer(orchestrators=[("flow", v1)]).replay(history)


def test_misuse_is_a_typed_error():
    history = Replayer.load(RECORDED / "retries.json")
    with pytest.raises(OrchestratorNotRegisteredError, match="'retries'"):
        Replayer(orchestrators=[code.counter]).replay(history)
    with pytest.raises(InvalidArgumentError):
        Replayer(orchestrators=[42])
    with pytest.raises(InvalidArgumentError):
        Replayer(orchestrators=ORCHESTRATORS).replay([1, 2])
    with pytest.raises(InvalidArgumentError, match="ExecutionStarted"):
        Replayer(orchestrators=ORCHESTRATORS).replay(history.events[2:])


def test_continue_as_new_input_is_checked():
    with InMemoryBackend() as backend:
        worker, client = backend.worker(), backend.client()
        worker.add_orchestrator(code.counter)
        with worker:
            iid = client.schedule_new_orchestration(code.counter, input=0)
            for n in (1, 2, None):
                client.raise_orchestration_event(iid, "add", data=n)
            client.wait_for_orchestration_completion(iid)
        records = [r for r in backend.history_records() if r.instance_id == iid]
    first_execution = records[0].execution_id
    first = RecordedHistory(iid, [r.event for r in records if r.execution_id == first_execution])
    assert isinstance(first.events[-1], ev.ContinueAsNew)
    assert Replayer(orchestrators=[code.counter]).replay(first).runtime_status == OrchestrationStatus.CONTINUED_AS_NEW
    with pytest.raises(NonDeterminismError, match=r"\(ContinueAsNew\).*input 1, the current code with 2"):
        Replayer(orchestrators=[("counter", counter_doubles)]).replay(first)


def test_a_failure_the_engine_imposed_is_not_taken_for_a_divergence():
    """A record the instance could not write (too large) or a poison input ends it FAILED by the
    engine, after its last episode: the code never produced that end, so it is not compared."""
    running = Replayer.load(RECORDED / "waiter_running.json")
    for details in (ev.FailureDetails("the ExecutionCompleted record of 'waiter' is 1200000 bytes", "PayloadTooLargeError"),
                    ev.FailureDetails("cannot apply input: TypeError: boom", "TypeError")):
        end = ev.ExecutionCompleted(event_id=-1, timestamp=running.events[-1].timestamp,
                                    runtime_status=OrchestrationStatus.FAILED, failure_details=details)
        failed = RecordedHistory(running.instance_id, [*running.events, end])
        assert Replayer(orchestrators=ORCHESTRATORS).replay(failed).runtime_status == OrchestrationStatus.RUNNING
    code_failure = ev.ExecutionCompleted(event_id=-1, timestamp=running.events[-1].timestamp,
                                         runtime_status=OrchestrationStatus.FAILED,
                                         failure_details=ev.FailureDetails("boom", "ValueError"))
    with pytest.raises(NonDeterminismError, match="has not ended there"):
        Replayer(orchestrators=ORCHESTRATORS).replay(RecordedHistory(running.instance_id,
                                                                     [*running.events, code_failure]))


def _shape(events: list) -> list[tuple]:
    """What must agree between two runs of the same code: event types, sequence numbers, names,
    payloads (not timestamps, execution ids or generated request ids)."""
    fields = ("event_id", "name", "input", "result", "task_scheduled_id", "timer_id", "operation", "output")
    return [(type(e).__name__, *(getattr(e, f, None) for f in fields)) for e in events]


def test_the_in_memory_backend_records_what_the_broker_recorded():
    """The same code on InMemoryBackend writes the same histories as it did on Kafka."""
    with InMemoryBackend() as backend:
        worker, client = backend.worker(), backend.client()
        for fn in code.ORCHESTRATORS:
            worker.add_orchestrator(fn)
        for fn in code.ACTIVITIES:
            worker.add_activity(fn)
        for fn in code.ENTITIES:
            worker.add_entity(fn)
        code.attempts.pop("r", None)
        with worker:
            order = {"item": "book", "amount": 12}
            approved = client.schedule_new_orchestration(code.order_flow, input=order, instance_id="order-approved")
            client.raise_orchestration_event(approved, "approved", data=True)
            counter = client.schedule_new_orchestration(code.counter, input=0, instance_id="counter")
            for n in (1, 2, None):
                client.raise_orchestration_event(counter, "add", data=n)
            cases = {
                "order_flow_approved": approved,
                "order_flow_timed_out": client.schedule_new_orchestration(code.order_flow, input=order,
                                                                          instance_id="order-timeout"),
                "counter_last_execution": counter,
                "retries": client.schedule_new_orchestration(code.retries, input="r", instance_id="retries"),
                "entity_user": client.schedule_new_orchestration(code.entity_user, input=5, instance_id="entity-user"),
            }
            for fixture, iid in cases.items():
                client.wait_for_orchestration_completion(iid)
                recorded = Replayer.load(RECORDED / f"{fixture}.json").events
                assert _shape(client.get_orchestration_history(iid)) == _shape(recorded), fixture
