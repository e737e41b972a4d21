"""InstanceStep: events that arrive before their instance, and the reuse policy of trigger starts."""

from __future__ import annotations

import json
from typing import Any

from durable_kafka import task
from durable_kafka.processors import store as keys
from durable_kafka.streams import events as ev
from durable_kafka.streams.status import OrchestrationStatus as S

from test_instance_step import IID, Engine, assert_fold_matches, produced, start


def waits_for_paid(ctx: task.OrchestrationContext, _: Any) -> Any:
    paid = yield ctx.wait_for_external_event("paid")
    return {"paid": paid}


def raise_(name: str, value: Any) -> ev.RaiseEvent:
    return ev.RaiseEvent(name=name, input=json.dumps(value))


def test_an_event_before_its_instance_waits_and_is_delivered_at_start() -> None:
    e = Engine(waits_for_paid)
    out = e.step(e.msg(raise_("paid", 42), msg_id="r1"))
    assert e.loaded.header is None  # no instance is created by an event
    assert keys.waiting_key(IID, "r1") in out.puts and produced(out, "status") == []
    out = e.step(e.msg(raise_("paid", 42), msg_id="r1"))  # a redelivery is kept once
    assert [w.id for w in e.loaded.waiting] == ["r1"] and keys.waiting_key(IID, "r1") not in out.puts
    out = e.step(e.msg(start("waits_for_paid")))
    assert e.loaded.status == S.COMPLETED
    assert json.loads(e.loaded.header.output) == {"paid": 42}  # type: ignore[union-attr]
    assert out.puts[keys.waiting_key(IID, "r1")] is None  # delivered: its store entry goes
    assert e.loaded.waiting == []
    assert_fold_matches(e)


def test_waiting_events_keep_their_order_and_are_bounded(monkeypatch: Any) -> None:
    from durable_kafka.processors import instance

    monkeypatch.setattr(instance, "MAX_WAITING_EVENTS", 2)
    e = Engine(waits_for_paid)
    e.step(e.msg(raise_("paid", 1)), e.msg(raise_("paid", 2)), e.msg(raise_("paid", 3)))
    assert [json.loads(w.event.input) for w in e.loaded.waiting] == [1, 2]
    e.step(e.msg(start("waits_for_paid")))
    assert json.loads(e.loaded.header.output) == {"paid": 1}  # type: ignore[union-attr]


def test_reuse_skip_leaves_an_existing_instance_alone_in_any_state() -> None:
    e = Engine(waits_for_paid)
    e.step(e.msg(start("waits_for_paid")))
    first = e.execution()
    out = e.step(e.msg(ev.StartOrchestration(name="waits_for_paid", execution_id="x2", if_exists="skip")))
    assert e.execution() == first and produced(out, "hist") == []
    e.step(e.msg(raise_("paid", 1)))
    assert e.loaded.status == S.COMPLETED
    e.step(e.msg(ev.StartOrchestration(name="waits_for_paid", execution_id="x3", if_exists="skip")))
    assert e.execution() == first and e.loaded.status == S.COMPLETED


def test_reuse_fail_dead_letters_with_the_trigger_coordinates() -> None:
    e = Engine(waits_for_paid)
    e.step(e.msg(start("waits_for_paid")))
    out = e.step(e.msg(ev.StartOrchestration(name="waits_for_paid", execution_id="x2", if_exists="fail",
                                             source="orders|shop.orders|3|17")))
    letters = produced(out, "orch.deadletter") or [p.value for p in out.produce if isinstance(p.value, ev.DeadLetter)]
    assert len(letters) == 1
    letter = letters[0]
    assert (letter.topic, letter.partition, letter.offset) == ("shop.orders", 3, 17)
    assert "orders" in letter.reason and "already exists" in letter.reason
    assert e.execution() == "x1" and e.loaded.status == S.RUNNING


def test_reuse_replace_terminates_the_running_one_and_starts_anew() -> None:
    e = Engine(waits_for_paid)
    e.step(e.msg(start("waits_for_paid")))
    out = e.step(e.msg(ev.StartOrchestration(name="waits_for_paid", execution_id="x2", if_exists="replace")))
    events = [type(r.event).__name__ for batch in produced(out, "hist") for r in ev.history_records(batch)]
    assert "ExecutionTerminated" in events  # the old execution ended on record
    assert e.execution() == "x2" and e.loaded.status == S.RUNNING
    e.step(e.msg(raise_("paid", 7)))
    assert json.loads(e.loaded.header.output) == {"paid": 7}  # type: ignore[union-attr]
