"""The activity worker on the real broker, driven by hand-written ActivityRequest records.

No orchestration processor runs here: the test plays its part, producing requests to
``<hub>.activity-requests`` and decoding the ActivityResult messages the worker writes to
``<hub>.orchestrator-events``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from durable_kafka.connectors.activities import ActivityRegistry, ActivityWorker
from durable_kafka.errors import ConfigurationError
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import consumer_config, producer_config
from durable_kafka.streams.events import (
    ActivityRequest,
    ActivityResult,
    DeadLetter,
    OrchestratorMessage,
)
from durable_kafka.task import ActivityContext

pytestmark = pytest.mark.integration

CODEC = Codec.default()
WAIT = 30.0


# --------------------------------------------------------------------------- activities


def double(ctx: ActivityContext, value: int) -> dict:
    return {"value": value * 2, "instance": ctx.orchestration_id, "task": ctx.task_id}


async def greet(ctx: ActivityContext, name: str) -> str:
    await asyncio.sleep(0.01)
    return f"hello {name} from task {ctx.task_id}"


def explode(ctx: ActivityContext, _: object) -> None:
    raise ValueError(f"boom in {ctx.orchestration_id}")


async def explode_async(ctx: ActivityContext, _: object) -> None:
    await asyncio.sleep(0)
    raise KeyError("async boom")


def returns_unserializable(ctx: ActivityContext, _: object) -> object:
    return {1, 2, 3}


def huge(ctx: ActivityContext, size: int) -> str:
    return "x" * size


# --------------------------------------------------------------------------- helpers


def _request(name: str, instance_id: str, task_id: int, input_json: str | None) -> ActivityRequest:
    execution_id = uuid.uuid4().hex
    return ActivityRequest(
        id=f"{instance_id}/{execution_id}/{task_id}",
        instance_id=instance_id,
        execution_id=execution_id,
        task_id=task_id,
        name=name,
        input=input_json,
    )


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(producer_config(bootstrap))
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(WAIT) == 0


class _Reader:
    """Reads a topic from the beginning across all partitions, decoding values."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.consumer = Consumer(consumer_config(bootstrap, f"test-reader-{uuid.uuid4().hex}"))
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        self.records: list = []
        self.keys: list[bytes | None] = []

    def read_until(self, count: int, expected: type) -> list:
        deadline = time.monotonic() + WAIT
        while len(self.records) < count and time.monotonic() < deadline:
            for message in self.consumer.consume(100, 0.2):
                if message.error() is None:
                    self.records.append(CODEC.decode(message.value(), expected=expected))
                    self.keys.append(message.key())
        assert len(self.records) >= count, f"only {len(self.records)} of {count} records arrived"
        return self.records

    def close(self) -> None:
        self.consumer.close()


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer(consumer_config(bootstrap, group))
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


@pytest.fixture
def registry() -> ActivityRegistry:
    registry = ActivityRegistry()
    for fn in (double, greet, explode, explode_async, returns_unserializable, huge):
        registry.add_activity(fn)
    return registry


@pytest.fixture
def results(hub) -> Iterator[_Reader]:
    reader = _Reader(hub.bootstrap, hub.topics.orchestrator_events, hub.partitions)
    yield reader
    reader.close()


def _by_task(records: list[OrchestratorMessage]) -> dict[int, OrchestratorMessage]:
    return {m.body.task_id: m for m in records}


# --------------------------------------------------------------------------- tests


def test_registry_rejects_duplicates_and_non_callables() -> None:
    registry = ActivityRegistry()
    assert registry.add_activity(double) == "double"
    assert registry.add_activity(double, name="twice") == "twice"
    assert registry.get("twice") is double and "double" in registry
    with pytest.raises(ConfigurationError, match="'double' is already registered"):
        registry.add_activity(double)
    with pytest.raises(ValueError):
        registry.add_activity("not a function")  # type: ignore[arg-type]


def test_sync_async_failing_and_unregistered_activities(hub, registry, results) -> None:
    requests = [
        _request("double", "inst-a", 1, "21"),
        _request("greet", "inst-b", 2, '"kafka"'),
        _request("explode", "inst-c", 3, None),
        _request("explode_async", "inst-d", 4, None),
        _request("no_such_activity", "inst-e", 5, "1"),
        _request("returns_unserializable", "inst-f", 6, None),
        _request("huge", "inst-g", 7, "3000000"),  # larger than a Kafka message may be
    ]
    _produce(hub.bootstrap, hub.topics.activity_requests,
             [(r.instance_id.encode(), CODEC.encode(r)) for r in requests])

    worker = ActivityWorker(hub.bootstrap, hub, registry, max_workers=4)
    worker.start()
    try:
        got = _by_task(results.read_until(len(requests) - 1, OrchestratorMessage))
        # a request of an activity this worker does not host is not failed: it moves to its
        # activity's own topic and waits there for a worker that hosts it (docs/ROUTING.md)
        moved = _Reader(hub.bootstrap, hub.topics.activity_topic("no_such_activity"), hub.partitions)
        try:
            assert moved.read_until(1, ActivityRequest) == [requests[4]]
        finally:
            moved.close()
    finally:
        worker.stop()

    assert 5 not in got
    for request in requests[:4] + requests[5:]:
        message = got[request.task_id]
        assert message.id == f"{request.id}/result"
        assert message.instance_id == request.instance_id
        assert isinstance(message.body, ActivityResult)
        assert message.body.execution_id == request.execution_id
    # results are keyed by instance id, so they reach the instance's processor
    assert sorted(results.keys) == sorted(r.instance_id.encode() for r in requests if r.task_id != 5)

    assert got[1].body.failure_details is None
    assert CODEC and got[1].body.result == '{"value": 42, "instance": "inst-a", "task": 1}'
    assert got[2].body.result == '"hello kafka from task 2"'

    failed = got[3].body
    assert failed.result is None
    assert failed.failure_details.error_type == "builtins.ValueError"
    assert failed.failure_details.message == "boom in inst-c"
    assert "explode" in failed.failure_details.stack_trace
    assert got[4].body.failure_details.error_type == "builtins.KeyError"
    assert "async boom" in got[4].body.failure_details.message

    assert got[6].body.failure_details.error_type == "builtins.TypeError"
    assert got[7].body.failure_details.error_type == "ActivityResultTooLargeError"
    assert "'huge'" in got[7].body.failure_details.message


def test_malformed_record_is_dead_lettered_and_the_worker_continues(hub, registry, results) -> None:
    good_before = _request("double", "same-key", 1, "1")
    good_after = _request("double", "same-key", 2, "2")
    garbage = b"\xc3\x01 definitely not avro"
    _produce(hub.bootstrap, hub.topics.activity_requests, [
        (b"same-key", CODEC.encode(good_before)),
        (b"same-key", garbage),
        (b"same-key", b""),
        (b"same-key", CODEC.encode(good_after)),
    ])

    dead = _Reader(hub.bootstrap, hub.topics.deadletter, hub.partitions)
    worker = ActivityWorker(hub.bootstrap, hub, registry)
    worker.start()
    try:
        got = _by_task(results.read_until(2, OrchestratorMessage))
        letters = dead.read_until(2, DeadLetter)
    finally:
        worker.stop()
        dead.close()

    assert got[1].body.result.startswith('{"value": 2') and got[2].body.result.startswith('{"value": 4')
    assert [letter.original for letter in letters] == [garbage, b""]
    for letter in letters:
        assert letter.topic == hub.topics.activity_requests
        assert letter.key == b"same-key" and letter.instance_id == "same-key"
        assert letter.reason and letter.error_type.endswith("Error")
    assert letters[0].offset == 1 and letters[1].offset == 2
    assert dead.keys == [b"same-key", b"same-key"]
    # everything, dead letters included, is committed once done
    partition = letters[0].partition
    _wait_for_commit(hub, f"{hub}.activity-workers", partition, 4)


def _wait_for_commit(hub, group: str, partition: int, offset: int) -> None:
    deadline = time.monotonic() + WAIT
    committed = None
    while time.monotonic() < deadline:
        committed = _committed(hub.bootstrap, group, hub.topics.activity_requests, hub.partitions)
        if committed[partition] == offset:
            return
        time.sleep(0.2)
    raise AssertionError(f"partition {partition} committed {committed}, expected {offset}")


def test_offsets_are_never_committed_past_an_unfinished_request(hub, results) -> None:
    """A slow request holds back its partition's commit; later finished ones do not move it."""
    release = threading.Event()

    def slow(ctx: ActivityContext, _: object) -> str:
        assert release.wait(WAIT)
        return "slow"

    def fast(ctx: ActivityContext, _: object) -> str:
        return "fast"

    registry = ActivityRegistry()
    registry.add_activity(slow)
    registry.add_activity(fast)
    group = f"{hub}.g-{uuid.uuid4().hex[:6]}"
    _produce(hub.bootstrap, hub.topics.activity_requests, [
        (b"one-key", CODEC.encode(_request("slow", "one-key", 1, None))),
        (b"one-key", CODEC.encode(_request("fast", "one-key", 2, None))),
        (b"one-key", CODEC.encode(_request("fast", "one-key", 3, None))),
    ])
    worker = ActivityWorker(hub.bootstrap, hub, registry, group_id=group)
    worker.start()
    try:
        got = _by_task(results.read_until(2, OrchestratorMessage))
        assert set(got) == {2, 3}
        # give the worker several commit rounds: nothing may be committed past offset 0
        for _ in range(5):
            committed = _committed(hub.bootstrap, group, hub.topics.activity_requests, hub.partitions)
            assert all(offset < 1 for offset in committed.values()), committed
            time.sleep(0.2)
        release.set()
        results.read_until(3, OrchestratorMessage)
        partition = next(p for p, o in _partitions_with_data(hub).items() if o)
        _wait_for_commit(hub, group, partition, 3)
    finally:
        release.set()
        worker.stop()


def _partitions_with_data(hub) -> dict[int, int]:
    consumer = Consumer(consumer_config(hub.bootstrap, f"probe-{uuid.uuid4().hex}"))
    try:
        return {
            p: consumer.get_watermark_offsets(
                TopicPartition(hub.topics.activity_requests, p), timeout=10
            )[1]
            for p in range(hub.partitions)
        }
    finally:
        consumer.close()


def test_restarted_workers_resume_after_committed_work(hub, registry, results) -> None:
    """New worker instances in one process pick up where the last one committed."""
    first = _request("double", "cycle", 1, "1")
    _produce(hub.bootstrap, hub.topics.activity_requests, [(b"cycle", CODEC.encode(first))])
    worker = ActivityWorker(hub.bootstrap, hub, registry)
    worker.start()
    try:
        results.read_until(1, OrchestratorMessage)
    finally:
        worker.stop()

    second = _request("double", "cycle", 2, "2")
    _produce(hub.bootstrap, hub.topics.activity_requests, [(b"cycle", CODEC.encode(second))])
    worker = ActivityWorker(hub.bootstrap, hub, registry)
    worker.start()
    try:
        records = results.read_until(2, OrchestratorMessage)
        # let a wrongly re-executed first request show up before checking
        partition = next(p for p, o in _partitions_with_data(hub).items() if o)
        _wait_for_commit(hub, f"{hub}.activity-workers", partition, 2)
    finally:
        worker.stop()
    records = results.read_until(2, OrchestratorMessage)  # picks up any late duplicate too
    assert [m.body.task_id for m in records] == [1, 2]


def test_a_worker_cannot_be_started_twice(hub, registry) -> None:
    worker = ActivityWorker(hub.bootstrap, hub, registry)
    worker.start()
    try:
        with pytest.raises(ConfigurationError):
            worker.start()
    finally:
        worker.stop()


def test_in_flight_work_is_bounded(hub, results) -> None:
    """With max_in_flight reached the consumer pauses: no more requests are taken on."""
    release = threading.Event()
    started: list[int] = []

    def blocking(ctx: ActivityContext, _: object) -> int:
        started.append(ctx.task_id)
        assert release.wait(WAIT)
        return ctx.task_id

    registry = ActivityRegistry()
    registry.add_activity(blocking)
    _produce(hub.bootstrap, hub.topics.activity_requests, [
        (f"k{i}".encode(), CODEC.encode(_request("blocking", f"k{i}", i, None))) for i in range(10)
    ])
    worker = ActivityWorker(hub.bootstrap, hub, registry, max_workers=4, max_in_flight=3)
    worker.start()
    try:
        deadline = time.monotonic() + WAIT
        while len(started) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # room for a wrongly taken fourth request to show up
        assert worker.in_flight == 3 and len(started) == 3
        release.set()
        got = _by_task(results.read_until(10, OrchestratorMessage))
        assert sorted(got) == list(range(10))
    finally:
        release.set()
        worker.stop()
