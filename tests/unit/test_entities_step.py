"""The entity step (processors/entity_step.py) on plain messages: no broker, no RocksDB."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from durable_kafka.entities import CLEAN_OPERATION, DurableEntity, EntityContext
from durable_kafka.processors import store as keys
from durable_kafka.processors.entity_step import RECENT_IDS, EntityStep, EntityTopics, scheduled_key
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)
E = "@counter@c"
TOPICS = EntityTopics("ops", "orch", "hist", "status")


def counter(ctx: EntityContext, input):
    n = ctx.get_state(int, 0)
    if ctx.operation == "add":
        ctx.set_state(n + input)
    elif ctx.operation == "add_then_fail":
        ctx.set_state(n + input)
        ctx.signal_entity("@counter@other", "add", 1)
        raise RuntimeError("nope")
    elif ctx.operation == "fan":
        ctx.signal_entity("@counter@other", "add", input)
        return ctx.schedule_new_orchestration("report", input=n, instance_id="rep-1")
    elif ctx.operation == "delete":
        ctx.delete_state()
    return n


class Account(DurableEntity):
    def add(self, amount):
        self.set_state(self.get_state(int, 0) + amount)


REGISTRY = {"counter": counter, "account": Account}


def step(state=None, eid=E, now=NOW):
    return EntityStep(state=state, entity_id=eid, now=now, topics=TOPICS, lookup=REGISTRY.get)


def signal(op, input=None, *, mid=None, sender=None, at=None, eid=E):
    return ev.EntityMessage(id=mid or f"m-{op}-{input}-{sender}-{at}", entity_id=eid, sent_at=NOW,
                            body=ev.SignalEntity(operation=op, input=json.dumps(input) if input is not None else None,
                                                 scheduled_time=at, parent_instance_id=sender))


def call(op, input, rid, sender="orch-1"):
    return ev.EntityMessage(id=rid, entity_id=E, sent_at=NOW, body=ev.CallEntity(
        operation=op, request_id=rid, parent_instance_id=sender, parent_execution_id="x1",
        input=json.dumps(input) if input is not None else None))


def lock(owner, section, lock_set=(E,), position=0):
    return ev.EntityMessage(id=f"{section}/lock/{position}", entity_id=lock_set[position], sent_at=NOW,
                            body=ev.LockEntities(critical_section_id=section, lock_set=list(lock_set),
                                                 position=position, parent_instance_id=owner,
                                                 parent_execution_id="x1"))


def unlock(owner, section):
    return ev.EntityMessage(id=f"{section}/unlock", entity_id=E, sent_at=NOW,
                            body=ev.UnlockEntity(critical_section_id=section, parent_instance_id=owner))


def produced(out, topic):
    return [p.value for p in out.produce if p.topic == topic]


def test_operations_apply_in_order_and_write_state_once():
    s = step()
    for i in range(1, 6):
        s.apply(signal("add", i, mid=f"m{i}"))
    out = s.finish()
    state = out.puts[keys.entity_key(E)]
    assert json.loads(state.state) == 15
    assert list(out.puts) == [keys.entity_key(E)]
    assert len(produced(out, "status")) == 1  # one snapshot per batch, not per operation
    hist = produced(out, "hist")
    assert [r.index for r in hist] == list(range(10))
    assert [type(r.event).__name__ for r in hist[:2]] == ["EntityOperationSignaled", "EntityOperationCompleted"]
    assert state.history_length == 10 and state.last_modified == NOW
    assert all(r.instance_id == E and r.execution_id == state.execution_id for r in hist)


def test_state_round_trips_through_the_codec_between_batches():
    codec = Codec.default()
    s = step()
    s.apply(signal("add", 2, mid="a"))
    state = codec.decode(codec.encode(s.finish().puts[keys.entity_key(E)]), expected=ev.EntityState)
    s2 = step(state)
    s2.apply(signal("add", 3, mid="b"))
    s2.apply(signal("add", 2, mid="a"))  # a redelivery of the first batch's message
    out = s2.finish()
    assert json.loads(out.puts[keys.entity_key(E)].state) == 5
    assert produced(out, "hist")[0].index == 2


def test_duplicate_message_ids_are_dropped_and_the_window_is_bounded():
    s = step()
    s.apply(signal("add", 1, mid="same"))
    s.apply(signal("add", 1, mid="same"))
    for i in range(RECENT_IDS + 10):
        s.apply(signal("get", mid=f"g{i}"))
    st = s.finish().puts[keys.entity_key(E)]
    assert json.loads(st.state) == 1
    assert len(st.recent_ids) == RECENT_IDS and "same" not in st.recent_ids


def test_failing_operation_rolls_back_only_itself():
    s = step()
    s.apply(signal("add", 1, mid="a"))
    s.apply(call("add_then_fail", 100, "r1"))
    s.apply(signal("add", 2, mid="b"))
    out = s.finish()
    assert json.loads(out.puts[keys.entity_key(E)].state) == 3
    assert produced(out, "ops") == []  # the failed operation's signal was never sent
    [response] = produced(out, "orch")
    assert response.instance_id == "orch-1"
    assert response.body.request_id == "r1" and response.body.execution_id == "x1"
    assert response.body.failure_details.error_type == "builtins.RuntimeError" and response.body.result is None
    failed = [r.event for r in produced(out, "hist") if isinstance(r.event, ev.EntityOperationFailed)]
    assert [f.request_id for f in failed] == ["r1"]


def test_call_returns_the_result_as_json():
    s = step()
    s.apply(signal("add", 7, mid="a"))
    s.apply(call("get", None, "r2"))
    [response] = produced(s.finish(), "orch")
    assert response.body.result == "7" and response.body.failure_details is None


def test_effects_of_a_successful_operation_are_sent():
    s = step(now=NOW)
    s.apply(signal("add", 4, mid="a"))
    s.apply(signal("fan", 9, mid="b"))
    out = s.finish()
    [sig] = produced(out, "ops")
    assert sig.entity_id == "@counter@other" and sig.body.operation == "add" and sig.body.input == "9"
    assert sig.body.parent_instance_id == E
    [start] = produced(out, "orch")
    assert start.instance_id == "rep-1" and start.body.name == "report" and start.body.input == "4"


def test_unknown_entity_name_fails_the_call():
    s = step(eid="@nobody@x")
    s.apply(ev.EntityMessage(id="r", entity_id="@nobody@x", sent_at=NOW, body=ev.CallEntity(
        operation="x", request_id="r", parent_instance_id="o", parent_execution_id="e")))
    [response] = produced(s.finish(), "orch")
    assert response.body.failure_details.error_type == "durable_kafka.errors.EntityOperationNotFoundError"


def test_class_entity_through_the_step():
    s = step(eid="@account@a")
    s.apply(signal("add", 5, mid="a", eid="@account@a"))
    s.apply(signal("Add", 5, mid="b", eid="@account@a"))
    assert s.finish().puts[keys.entity_key("@account@a")].state == "10"


def test_lock_queues_others_until_unlock_then_runs_queue_in_order():
    s = step()
    s.apply(signal("add", 1, mid="a"))
    s.apply(lock("orch-A", "cs1"))
    [granted] = produced(s.out, "orch")
    assert granted.body.lock_granted and granted.body.request_id == "cs1" and granted.instance_id == "orch-A"
    s.apply(signal("add", 10, mid="client-1"))  # from a client: waits
    s.apply(call("add", 100, "r-other", sender="orch-B"))  # from another orchestration: waits
    s.apply(lock("orch-C", "cs2"))  # another lock request: waits
    s.apply(signal("add", 1000, mid="client-2"))
    s.apply(call("add", 5, "r-owner", sender="orch-A"))  # the holder: runs now
    assert s.s.state == "6" and len(s.s.queued) == 4 and s.s.lock_owner == "orch-A"
    s.apply(unlock("orch-A", "cs1"))
    # client-1 and r-other ran; cs2 took the lock; client-2 waits again behind it
    assert s.s.state == "116" and s.s.lock_owner == "orch-C" and s.s.critical_section_id == "cs2"
    assert [m.id for m in s.s.queued] == ["client-2"]
    s.apply(unlock("orch-C", "cs2"))
    out = s.finish()
    st = out.puts[keys.entity_key(E)]
    assert st.state == "1116" and st.lock_owner is None and st.queued == []
    assert json.loads(produced(out, "status")[-1].state) == 1116


def test_lock_forwards_to_the_next_entity_of_the_lock_set():
    s = step()
    s.apply(lock("orch-A", "cs1", lock_set=(E, "@counter@z")))
    [fwd] = produced(s.finish(), "ops")
    assert fwd.entity_id == "@counter@z" and fwd.body.position == 1 and fwd.body.lock_set == [E, "@counter@z"]
    assert produced(s.out, "orch") == []


def test_unlock_from_a_waiting_owner_drops_its_queued_lock_request():
    s = step()
    s.apply(lock("orch-A", "cs1"))
    s.apply(lock("orch-B", "cs2"))
    s.apply(unlock("orch-B", "orch-B/exec"))  # orch-B ended before it got the lock
    s.apply(unlock("orch-A", "cs1"))
    assert s.s.lock_owner is None and s.s.queued == []


def test_scheduled_signal_waits_in_the_index_until_fired():
    at = NOW + timedelta(seconds=30)
    s = step()
    msg = signal("add", 3, mid="later", at=at)
    s.apply(msg)
    out = s.finish()
    assert out.puts[scheduled_key(int(at.timestamp() * 1000), E, "later")] is msg
    assert out.puts[keys.entity_key(E)].state is None
    later = step(out.puts[keys.entity_key(E)], now=at)
    later.fire(msg)
    later.apply(msg)  # a redelivery of the original is still a duplicate
    assert later.finish().puts[keys.entity_key(E)].state == "3"


def test_due_scheduled_signal_runs_at_once():
    s = step()
    s.apply(signal("add", 3, mid="past", at=NOW - timedelta(seconds=1)))
    assert s.finish().puts[keys.entity_key(E)].state == "3"


def test_clean_removes_only_stateless_unlocked_entities():
    s = step()
    s.apply(signal("add", 1, mid="a"))
    s.apply(signal(CLEAN_OPERATION, mid="c1"))
    assert s.finish().puts[keys.entity_key(E)].state == "1"
    s2 = step(s.s)
    s2.apply(signal("delete", mid="d"))
    s2.apply(signal(CLEAN_OPERATION, mid="c2"))
    out = s2.finish()
    assert out.puts[keys.entity_key(E)] is None
    assert [(p.topic, p.value) for p in out.produce if p.topic == "status"] == [("status", None)]


def test_delete_keeps_a_transient_record_with_its_history_counter():
    s = step()
    s.apply(signal("add", 1, mid="a"))
    s.apply(signal("delete", mid="d"))
    st = s.finish().puts[keys.entity_key(E)]
    assert st.state is None and st.history_length == 4
    assert produced(s.out, "status")[-1].state is None


def test_clean_queued_behind_a_lock_then_more_queued_work_starts_a_new_incarnation():
    # a stateless entity locked by an orchestration; a client's clean and a signal wait behind
    # the lock; the unlock runs both: the clean removes the record, and the signal after it must
    # start a new incarnation (it used to meet the removed state: AttributeError on None)
    s = step()
    s.apply(lock("orch-A", "cs1"))
    s.apply(signal(CLEAN_OPERATION, mid="c1"))
    s.apply(signal("add", 5, mid="a"))
    assert len(s.s.queued) == 2
    s.apply(unlock("orch-A", "cs1"))
    st = s.finish().puts[keys.entity_key(E)]
    assert st.state == "5" and st.lock_owner is None and st.queued == []
