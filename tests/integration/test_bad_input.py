"""No input stops a partition: the four ways found by fault injection (issue 12), as regressions.

Each test feeds one kind of bad or oversized input to a real worker on a hub with ONE partition
(so everything after it must pass through the same partition) and checks three things: the
worker reports no error, the bad input is accounted for (a dead letter, or its instance FAILED
with a clear reason), and later work on the same partition completes.
"""

from __future__ import annotations

import hashlib
import os
import time
from datetime import datetime, timezone

import pytest
from confluent_kafka import Producer

from durable_kafka import Client, OrchestrationStatus, Worker
from durable_kafka.connectors.audit import read_topic
from durable_kafka.entities import EntityContext
from durable_kafka.errors import PayloadTooLargeError
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import partition_for
from durable_kafka.streams.limits import MAX_RECORD_BYTES


def echo(ctx, x):
    return x


def greet(ctx, name):
    return f"hi {name}"


def one_step(ctx, name):
    return (yield ctx.call_activity(greet, input=name))


def slow_steps(ctx, name):
    # user code that spends 0.3 s every time it runs: 40 instances make a batch longer than the
    # 10 s transaction timeout unless the processor cuts the batch by time
    time.sleep(0.3)
    r = yield ctx.call_activity(greet, input=name)
    time.sleep(0.3)
    return r


def blob(ctx: EntityContext, size):
    if ctx.operation == "grow":
        ctx.set_state("x" * size)
        return None
    if ctx.operation == "len":
        return len(ctx.get_state(str, ""))
    raise ValueError(ctx.operation)


@pytest.fixture
def engine(hub, tmp_path):
    # large payloads switched off: what a record cannot carry is a PayloadTooLargeError
    # (with them on, the same payloads just work: tests/integration/test_payloads.py)
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "state"), partitions=hub.partitions,
               payload_store=False)
    for o in (echo, one_step, slow_steps):
        w.add_orchestrator(o)
    w.add_activity(greet)
    w.add_entity(blob)
    with w, Client(hub.bootstrap, hub=hub.name, payload_store=False) as c:
        yield w, c


def _producer(hub, **extra) -> Producer:
    return Producer({"bootstrap.servers": hub.bootstrap, "partitioner": "murmur2_random", **extra})


def _dead_letters(hub, timeout: float = 30, count: int = 1) -> list[ev.DeadLetter]:
    deadline = time.monotonic() + timeout
    while True:
        letters = [v for _, v in read_topic(hub.bootstrap, hub.topics.deadletter, Codec.default()) if v is not None]
        if len(letters) >= count or time.monotonic() > deadline:
            return letters
        time.sleep(0.3)


def _still_works(worker: Worker, client: Client, name: str = "after") -> None:
    iid = client.schedule_new_orchestration(one_step, input=name)
    state = client.wait_for_orchestration_completion(iid, timeout=60)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state
    assert state.serialized_output == f'"hi {name}"'
    assert worker.errors() == []


@pytest.mark.hub_partitions(1)
def test_null_value_records_are_dead_lettered_not_a_crash_loop(engine, hub):
    worker, client = engine
    p = _producer(hub)
    p.produce(hub.topics.orchestrator_events, key=b"x", value=None)
    p.produce(hub.topics.entity_operations, key=b"@blob@x", value=None)
    p.produce(hub.topics.orchestrator_events, key=None, value=b"")
    p.flush(10)
    letters = _dead_letters(hub, count=3)
    reasons = {(letter.topic, letter.original_size): letter.reason for letter in letters}
    assert "null value" in reasons[(hub.topics.orchestrator_events, None)]
    assert "null value" in reasons[(hub.topics.entity_operations, None)]
    assert "shorter than" in reasons[(hub.topics.orchestrator_events, 0)]
    _still_works(worker, client)
    client.signal_entity("@blob@x", "grow", 3)
    deadline = time.monotonic() + 30
    while (e := client.get_entity("@blob@x")) is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert e.get_state(str) == "xxx"


@pytest.mark.hub_partitions(1)
def test_a_record_near_one_megabyte_is_dead_lettered_truncated(engine, hub):
    worker, client = engine
    original = b"\xc3\x01" + os.urandom(1_040_000)
    p = _producer(hub, **{"message.max.bytes": 2_000_000})
    p.produce(hub.topics.orchestrator_events, key=b"big", value=original)
    p.flush(10)
    [letter] = _dead_letters(hub)
    assert letter.original_size == len(original) and letter.original_truncated
    assert letter.original == original[: len(letter.original)] and len(letter.original) < MAX_RECORD_BYTES // 2
    assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
    assert (letter.topic, letter.partition) == (hub.topics.orchestrator_events, 0) and letter.offset >= 0
    _still_works(worker, client)
    assert worker.stats().get("aborts", 0) <= 2  # not an abort loop


@pytest.mark.hub_partitions(1)
def test_an_instance_whose_status_cannot_fit_fails_clearly(engine, hub):
    worker, client = engine
    payload = "y" * 600_000  # fits one record; input + output in one status snapshot does not
    iid = client.schedule_new_orchestration(echo, input=payload)
    state = client.wait_for_orchestration_completion(iid, timeout=60)
    assert state.runtime_status == OrchestrationStatus.FAILED
    assert state.failure_details.error_type == "durable_kafka.errors.PayloadTooLargeError"
    assert "over the limit" in state.failure_details.message
    _still_works(worker, client)
    # what can never fit is refused by the client at once, naming the limit
    with pytest.raises(PayloadTooLargeError, match="limit"):
        client.schedule_new_orchestration(echo, input="z" * 2_000_000)
    with pytest.raises(PayloadTooLargeError):
        client.raise_orchestration_event(iid, "e", data="z" * 1_500_000)
    with pytest.raises(PayloadTooLargeError):
        client.signal_entity("@blob@b", "grow", "z" * 1_500_000)


@pytest.mark.hub_partitions(1)
def test_an_entity_state_that_cannot_fit_fails_the_operation_only(engine, hub):
    worker, client = engine
    client.signal_entity("@blob@big", "grow", 10)
    client.signal_entity("@blob@big", "grow", 1_200_000)  # this operation fails, state stays
    client.signal_entity("@blob@big", "grow", 20)
    deadline = time.monotonic() + 30
    while (e := client.get_entity("@blob@big")) is None or e.get_state(str) != "x" * 20:
        assert time.monotonic() < deadline, e
        time.sleep(0.1)
    history = [r for _, v in read_topic(hub.bootstrap, hub.topics.history, Codec.default())
               for r in ev.history_records(v) if r.instance_id == "@blob@big"]
    failed = [h.event for h in history if isinstance(h.event, ev.EntityOperationFailed)]
    assert len(failed) == 1 and "over the limit" in failed[0].failure_details.message
    assert worker.errors() == []


@pytest.mark.hub_partitions(1)
def test_a_batch_slower_than_the_transaction_timeout_still_commits(hub, tmp_path):
    # the starts wait on the topic before the worker runs, so its first poll takes all 40 at once
    # (as after a kill -9 and restart): 12 s of user code against a 10 s transaction timeout
    with Client(hub.bootstrap, hub=hub.name) as client:
        ids = [client.schedule_new_orchestration(slow_steps, input=f"n{i}", wait_for_acceptance=False)
               for i in range(40)]
        client.flush()
        worker = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "state"), partitions=hub.partitions)
        worker.add_orchestrator(slow_steps)
        worker.add_activity(greet)
        with worker:
            for iid in ids:
                state = client.wait_for_orchestration_completion(iid, timeout=180)
                assert state.runtime_status == OrchestrationStatus.COMPLETED
            stats = worker.stats()
            assert stats.get("split_batches", 0) >= 1  # the batch of 40 starts was cut by time
            assert stats.get("recoveries", 0) == 0 and stats.get("aborts", 0) == 0  # never outlived it
            assert worker.errors() == []


@pytest.mark.hub_partitions(4)
def test_misrouted_and_orphan_records(engine, hub):
    worker, client = engine
    codec = Codec.default()
    iid = "misrouted-1"
    home = partition_for(iid.encode(), hub.partitions)
    elsewhere = (home + 1) % hub.partitions
    start = ev.OrchestratorMessage(id="m-1", instance_id=iid, sent_at=datetime.now(timezone.utc),
                                   body=ev.StartOrchestration(name="echo", execution_id="e1", input='"x"'))
    p = _producer(hub)
    p.produce(hub.topics.orchestrator_events, key=iid.encode(), value=codec.encode(start), partition=elsewhere)
    # a result for an instance that does not exist: dropped, creates nothing
    ghost = ev.OrchestratorMessage(id="m-2", instance_id="ghost-1", sent_at=datetime.now(timezone.utc),
                                   body=ev.ActivityResult(execution_id="e0", task_id=0, result='"late"'))
    p.produce(hub.topics.orchestrator_events, key=b"ghost-1", value=codec.encode(ghost))
    # the right partition but another key: routing is by partition, so it is handled
    rekeyed = "rekeyed-1"
    ok = ev.OrchestratorMessage(id="m-3", instance_id=rekeyed, sent_at=datetime.now(timezone.utc),
                                body=ev.StartOrchestration(name="echo", execution_id="e1", input='"k"'))
    p.produce(hub.topics.orchestrator_events, key=b"some-other-key", value=codec.encode(ok),
              partition=partition_for(rekeyed.encode(), hub.partitions))
    p.flush(10)
    [letter] = _dead_letters(hub)
    assert letter.instance_id == iid and "misrouted" in letter.reason and letter.partition == elsewhere
    assert client.wait_for_orchestration_completion(rekeyed, timeout=30).serialized_output == '"k"'
    assert client.get_orchestration_state(iid) is None
    assert client.get_orchestration_state("ghost-1") is None
    _still_works(worker, client)
