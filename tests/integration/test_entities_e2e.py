"""Durable entities end to end on the real broker: one Worker and one Client per test."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from confluent_kafka import Consumer, Producer

from durable_kafka import Client, OrchestrationStatus, TaskFailedError, Worker
from durable_kafka._client_entities import EntityQuery
from durable_kafka.entities import DurableEntity, EntityContext, EntityInstanceId
from durable_kafka.streams import events as ev
from durable_kafka.connectors.audit import read_topic
from durable_kafka.streams.codec import Codec


# ---------------------------------------------------------------- entities under test
def counter(ctx: EntityContext, input):
    n = ctx.get_state(int, 0)
    if ctx.operation == "add":
        ctx.set_state(n + input)
        return n + input
    if ctx.operation == "add_then_fail":
        ctx.set_state(n + input)
        raise ValueError(f"refusing to add {input}")
    if ctx.operation == "get":
        return n
    if ctx.operation == "delete":
        ctx.delete_state()
        return None
    raise ValueError(f"unknown operation {ctx.operation!r}")


class Account(DurableEntity):
    def deposit(self, amount):
        self.set_state(self.get_state(int, 0) + amount)

    def withdraw(self, amount):
        balance = self.get_state(int, 0)
        if amount > balance:
            raise ValueError(f"insufficient funds: {balance} < {amount}")
        self.set_state(balance - amount)

    def balance(self):
        return self.get_state(int, 0)


def fanout(ctx: EntityContext, input):
    """Entity-to-entity signal and an entity-started orchestration, in one operation."""
    ctx.signal_entity(EntityInstanceId("counter", input["target"]), "add", input["amount"])
    return ctx.schedule_new_orchestration("report", input=input["amount"], instance_id=input["report_id"])


# ---------------------------------------------------------------- orchestrators
def signal_many(ctx, inp):
    for _ in range(inp["n"]):
        ctx.signal_entity(inp["entity"], "add", 1)
    return inp["n"]
    yield  # unreachable: makes this a generator


def call_many(ctx, inp):
    last = None
    for _ in range(inp["n"]):
        last = yield ctx.call_entity(inp["entity"], "add", 1)
    return last


def call_failing(ctx, entity):
    yield ctx.call_entity(entity, "add", 1)
    try:
        yield ctx.call_entity(entity, "add_then_fail", 100)
    except TaskFailedError as exc:
        after = yield ctx.call_entity(entity, "get")
        return {"error_type": exc.details.error_type, "message": exc.details.message, "after": after}
    return "no error"


def transfer(ctx, inp):
    src, dst, amount, rounds = inp["src"], inp["dst"], inp["amount"], inp["rounds"]
    moved = 0
    for _ in range(rounds):
        with (yield ctx.lock_entities([src, dst])):
            balance = yield ctx.call_entity(src, "balance")
            if balance >= amount:
                yield ctx.call_entity(src, "withdraw", amount)
                yield ctx.call_entity(dst, "deposit", amount)
                moved += amount
    return moved


def report(ctx, amount):
    return f"reported {amount}"
    yield  # unreachable: makes this a generator


@pytest.fixture
def engine(hub, tmp_path):
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "state"), partitions=hub.partitions)
    for o in (signal_many, call_many, call_failing, transfer, report):
        w.add_orchestrator(o)
    w.add_entity(counter)
    w.add_entity(Account)
    w.add_entity(fanout)
    with w, Client(hub.bootstrap, hub=hub.name) as c:
        yield w, c


def wait_state(client, entity, predicate, timeout=60.0):
    """Poll get_entity until ``predicate(state)`` holds; returns the metadata."""
    deadline = time.monotonic() + timeout
    meta = None
    while time.monotonic() < deadline:
        meta = client.get_entity(entity)
        if meta is not None and predicate(meta.get_state()):
            return meta
        time.sleep(0.1)
    raise AssertionError(f"{entity}: state never matched; last seen {meta!r}")


def completed(client, iid, timeout=90):
    state = client.wait_for_orchestration_completion(iid, timeout=timeout)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    return state.get_output()


def read_history(hub, key: str) -> list[ev.HistoryRecord]:
    return [r for k, v in read_topic(hub.bootstrap, hub.topics.history, Codec.default())
            if k == key.encode() for r in ev.history_records(v)]


# ---------------------------------------------------------------- tests
def test_counter_signalled_1000_times_from_clients_and_orchestrations(engine, hub):
    _, c = engine
    e = EntityInstanceId("counter", "total")
    ids = [c.schedule_new_orchestration(signal_many, input={"entity": str(e), "n": 100}) for _ in range(5)]
    for i in range(500):
        c.signal_entity(e, "add", 1, wait_for_delivery=(i == 499))
    for iid in ids:
        assert completed(c, iid) == 100
    meta = wait_state(c, e, lambda s: s >= 1000)
    assert meta.get_state(int) == 1000
    time.sleep(1.0)  # nothing arrives late and nothing is applied twice
    assert c.get_entity(e).get_state() == 1000
    history = read_history(hub, str(e))
    assert [r.index for r in history] == list(range(2000))
    assert len({r.id for r in history}) == 2000
    kinds = Counter(type(r.event).__name__ for r in history)
    assert kinds == {"EntityOperationSignaled": 1000, "EntityOperationCompleted": 1000}


def test_ten_orchestrations_calling_add_100_times(engine):
    _, c = engine
    e = "@counter@calls"
    ids = [c.schedule_new_orchestration(call_many, input={"entity": e, "n": 100}) for _ in range(10)]
    finals = [completed(c, iid, timeout=150) for iid in ids]
    assert c.get_entity(e).get_state() == 1000
    assert max(finals) == 1000  # the last call of the last orchestration saw every add before it
    assert len(set(finals)) == 10  # each call's result is a distinct point in one serial order


def test_critical_sections_transfer_in_opposite_orders_conserve_total(engine):
    _, c = engine
    a, b = EntityInstanceId("account", "a"), EntityInstanceId("account", "b")
    c.signal_entity(a, "deposit", 1000)
    c.signal_entity(b, "deposit", 1000)
    wait_state(c, a, lambda s: s == 1000)
    wait_state(c, b, lambda s: s == 1000)
    ab = c.schedule_new_orchestration(transfer, input={"src": str(a), "dst": str(b), "amount": 70, "rounds": 8})
    ba = c.schedule_new_orchestration(transfer, input={"src": str(b), "dst": str(a), "amount": 30, "rounds": 8})
    moved_ab, moved_ba = completed(c, ab, timeout=120), completed(c, ba, timeout=120)
    assert (moved_ab, moved_ba) == (560, 240)
    ma, mb = c.get_entity(a), c.get_entity(b)
    assert ma.get_state() + mb.get_state() == 2000
    assert ma.get_state() == 1000 - 560 + 240
    # the last unlocks were sent when the orchestrations completed; they land shortly after
    deadline = time.monotonic() + 30
    while any((m := c.get_entity(x)).locked_by is not None or m.backlog_queue_size for x in (a, b)):
        assert time.monotonic() < deadline, [c.get_entity(x) for x in (a, b)]
        time.sleep(0.1)


def test_failing_operation_rolls_back_and_the_caller_gets_task_failed(engine):
    _, c = engine
    e = "@counter@fails"
    out = completed(c, c.schedule_new_orchestration(call_failing, input=e))
    assert out["error_type"] == "builtins.ValueError" and "refusing to add 100" in out["message"]
    assert out["after"] == 1
    c.signal_entity(e, "add", 1)
    assert wait_state(c, e, lambda s: s == 2).get_state() == 2


def test_scheduled_signal_does_not_fire_early(engine):
    _, c = engine
    e = EntityInstanceId("counter", "later")
    c.signal_entity(e, "add", 5)
    wait_state(c, e, lambda s: s == 5)
    at = datetime.now(timezone.utc) + timedelta(seconds=3)
    c.signal_entity(e, "add", 1, signal_time=at)
    while datetime.now(timezone.utc) < at - timedelta(milliseconds=300):
        assert c.get_entity(e).get_state() == 5
        time.sleep(0.2)
    meta = wait_state(c, e, lambda s: s == 6, timeout=30)
    assert meta.last_modified >= at.replace(microsecond=at.microsecond // 1000 * 1000)


def test_entity_signals_entity_and_starts_orchestration(engine):
    _, c = engine
    report_id = f"report-{uuid.uuid4().hex[:8]}"
    c.signal_entity("@fanout@f1", "go", {"target": "fanned", "amount": 7, "report_id": report_id})
    assert completed(c, report_id) == "reported 7"
    assert wait_state(c, "@counter@fanned", lambda s: s == 7).get_state() == 7


def test_get_entity_query_and_clean_storage(engine, hub):
    _, c = engine
    assert c.get_entity("@counter@nothing") is None
    for k in range(5):
        c.signal_entity(EntityInstanceId("counter", f"q{k}"), "add", k + 1)
    c.signal_entity("@account@q-acct", "deposit", 3)
    for k in range(5):
        wait_state(c, f"@counter@q{k}", lambda s, k=k: s == k + 1)
    c.signal_entity("@counter@q0", "delete")
    # a lock held by an orchestration that never existed (its owner is gone)
    codec = Codec.default()
    producer = Producer({"bootstrap.servers": hub.bootstrap, "partitioner": "murmur2_random"})
    lock = ev.EntityMessage(id="ghost-lock", entity_id="@counter@q1", sent_at=datetime.now(timezone.utc),
                            body=ev.LockEntities(critical_section_id="cs-ghost", lock_set=["@counter@q1"],
                                                 position=0, parent_instance_id="ghost", parent_execution_id="x"))
    producer.produce(hub.topics.entity_operations, key=b"@counter@q1", value=codec.encode(lock))
    producer.flush(10)
    c.signal_entity("@counter@q1", "add", 100)  # waits behind the ghost's lock
    deadline = time.monotonic() + 30
    while (m := c.get_entity("@counter@q1")) is None or m.locked_by != "ghost" or m.backlog_queue_size != 1:
        assert time.monotonic() < deadline, m
        time.sleep(0.1)
    while c.get_entity("@counter@q0") is not None:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    meta = c.get_entity("@counter@q2")
    assert meta.get_state(int) == 3 and meta.includes_state and meta.last_modified is not None
    assert c.get_entity("@counter@q2", include_state=False).get_state() is None
    everything = c.get_all_entities(EntityQuery(instance_id_starts_with="Counter@q", page_size=2))
    assert [str(m.id) for m in everything] == ["@counter@q1", "@counter@q2", "@counter@q3", "@counter@q4"]
    page, token = c.query_entities(EntityQuery(instance_id_starts_with="@counter@q", page_size=3))
    assert len(page) == 3 and token == "@counter@q3"
    transient = c.get_all_entities(EntityQuery(instance_id_starts_with="@counter@q", include_transient=True))
    assert "@counter@q0" in [str(m.id) for m in transient]
    assert [str(m.id) for m in c.get_all_entities(EntityQuery(instance_id_starts_with="@account@"))] == [
        "@account@q-acct"]

    result = c.clean_entity_storage()
    assert (result.empty_entities_removed, result.orphaned_locks_released) == (1, 1)
    q1 = wait_state(c, "@counter@q1", lambda s: s == 102)
    assert q1.locked_by is None and q1.backlog_queue_size == 0
    transient = c.get_all_entities(EntityQuery(instance_id_starts_with="@counter@q", include_transient=True))
    assert "@counter@q0" not in [str(m.id) for m in transient]
    again = c.clean_entity_storage()
    assert (again.empty_entities_removed, again.orphaned_locks_released) == (0, 0)


def test_poison_input_is_dead_lettered_and_the_entity_keeps_going(engine, hub):
    _, c = engine
    e = "@counter@poison"
    producer = Producer({"bootstrap.servers": hub.bootstrap, "partitioner": "murmur2_random"})
    producer.produce(hub.topics.entity_operations, key=e.encode(), value=b"\xc3\x01not-a-record")
    producer.flush(10)
    c.signal_entity(e, "add", 4)
    assert wait_state(c, e, lambda s: s == 4).get_state() == 4
    codec = Codec.default()
    cons = Consumer({"bootstrap.servers": hub.bootstrap, "group.id": f"dl-{uuid.uuid4().hex}",
                     "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
    cons.subscribe([hub.topics.deadletter])
    deadline, letters = time.monotonic() + 30, []
    while not letters and time.monotonic() < deadline:
        m = cons.poll(0.5)
        if m is not None and not m.error():
            letters.append(codec.decode(m.value(), expected=ev.DeadLetter))
    cons.close()
    assert letters and letters[0].key == e.encode() and letters[0].topic == hub.topics.entity_operations
    assert letters[0].original == b"\xc3\x01not-a-record" and "decode" in letters[0].reason


def test_client_accepts_both_spellings_of_entity_arguments(hub, tmp_path):
    from durable_kafka import Client, EntityInstanceId, Worker
    from durable_kafka.errors import InvalidArgumentError

    def tally(ctx, value):
        if ctx.operation == "add":
            ctx.set_state((ctx.get_state(int) or 0) + value)

    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "s"), partitions=hub.partitions)
    w.add_entity(tally)
    eid = EntityInstanceId("tally", "k")
    with w, Client(hub.bootstrap, hub=hub.name) as c:
        c.signal_entity(eid, "add", input=1)                   # durabletask, positional
        c.signal_entity(eid, operation_name="add", input=2)    # durabletask keyword
        c.signal_entity(entity_id=eid, operation="add", input=3)  # the names
        with pytest.raises(InvalidArgumentError):
            c.signal_entity(eid, "add", operation="add")
        deadline = time.monotonic() + 30
        while (m := c.get_entity(entity_id=eid)) is None or m.get_state(int) != 6:
            assert time.monotonic() < deadline, m
            time.sleep(0.1)


def test_entity_names_are_case_insensitive_between_orchestrations_and_clients(engine):
    """``@Counter@c1`` from an orchestration and ``Counter``/``c1`` from the client are one entity."""
    _, c = engine
    key = f"Case-{uuid.uuid4().hex[:6]}"  # the key keeps its case
    iid = c.schedule_new_orchestration(call_many, input={"entity": f"@Counter@{key}", "n": 3})
    assert completed(c, iid) == 3
    c.signal_entity(EntityInstanceId("COUNTER", key), "add", 10, wait_for_delivery=True)
    meta = wait_state(c, f"@counter@{key}", lambda s: s == 13)
    assert str(meta.id) == f"@counter@{key}"
    assert c.get_entity(f"@counter@{key.lower()}") is None  # a different key is a different entity
