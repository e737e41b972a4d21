"""Payloads larger than a Kafka record, end to end on the real broker (docs/PAYLOADS.md).

With no configuration the hub's Kafka-native store carries 5 MB and 50 MB inputs, outputs,
activity inputs and results, event data and entity states (50 MB at full size, ``make chaos``;
20 MB in the normal suite); history and status records stay
small (they hold references); purge tombstones the chunks; a missing or corrupt chunk is a
``PayloadUnavailableError`` naming the instance; a worker killed between storing the chunks
and committing leaves nothing visible and completes the instance after a restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from durable_kafka import (
    AsyncClient,
    Client,
    FileSystemPayloadStore,
    LargePayloadStorageOptions,
    OrchestrationStatus,
    Worker,
)
from durable_kafka.connectors.audit import audit
from durable_kafka.entities import EntityContext
from durable_kafka.errors import PayloadUnavailableError
from durable_kafka.processors.executor import OrchestratorRegistry
from durable_kafka.streams import events as ev
from durable_kafka.streams.config import consumer_config
from durable_kafka.streams.payload_topic import KafkaPayloadStore
from durable_kafka.streams.reading import read_to_end, watermarks

from sizes import sized  # tests/ is on sys.path (rootdir conftest)

ROOT = Path(__file__).resolve().parents[2]
MB = 1_000_000
LARGE_MB = sized(50, 20)  # the largest payload: 50 MB at full size (make chaos)


def _blob(n: int, seed: str = "") -> str:
    """``n`` characters that do not compress to nothing (hex of a hash chain)."""
    import hashlib

    block = "".join(hashlib.sha256(f"{seed}{i}".encode()).hexdigest() for i in range(2048))  # 128 KiB
    return (block * (n // len(block) + 1))[:n]


# ------------------------------------------------------------------ the code under test
def reverse(ctx, text):
    return text[::-1]


def store(ctx: EntityContext, value):
    if ctx.operation == "set":
        ctx.set_state(value)
        return None
    return ctx.get_state(str)


def everything(ctx, data):
    """A large input, activity input and result, event, entity state and call result, output."""
    back = yield ctx.call_activity(reverse, input=data)
    blob = yield ctx.wait_for_external_event("blob")
    yield ctx.call_entity(f"@store@{ctx.instance_id}", "set", blob)
    again = yield ctx.call_entity(f"@store@{ctx.instance_id}", "get")
    return {"input": len(data), "reversed_ok": back == data[::-1], "event": len(blob),
            "state_ok": again == blob, "echo": back}


def through_activity(ctx, data):
    back = yield ctx.call_activity(reverse, input=data)
    return back


def wait_event(ctx, _):
    data = yield ctx.wait_for_external_event("e")
    return len(data)


def _worker(hub, tmp_path, **kwargs) -> Worker:
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "state"), partitions=hub.partitions, **kwargs)
    for o in (everything, through_activity, wait_event):
        w.add_orchestrator(o)
    w.add_activity(reverse)
    w.add_entity(store)
    return w


def _raw(hub, topic: str, committed: bool = True) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of ``topic`` (read_committed, or read_uncommitted to see aborted ones too)."""
    c = Consumer(consumer_config(hub.bootstrap, f"{hub.name}.test-{uuid.uuid4().hex}",
                                 **{"isolation.level": "read_committed" if committed else "read_uncommitted"}))
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        ranges = {p: watermarks(c, TopicPartition(topic, p)) for p in parts}
        return [(m.key(), m.value()) for batch in read_to_end(c, topic, ranges) for m in batch]
    finally:
        c.close()


def _largest_record(hub, topic: str) -> int:
    return max((len(v) for _, v in _raw(hub, topic) if v is not None), default=0)


# ------------------------------------------------------------------ tests
@pytest.mark.hub_partitions(2)
def test_5mb_input_output_activity_event_and_entity_state_with_no_configuration(hub, tmp_path):
    data, blob = _blob(5 * MB, "in"), _blob(5 * MB, "ev")
    with _worker(hub, tmp_path), Client(hub.bootstrap, hub=hub.name) as client:
        iid = client.schedule_new_orchestration(everything, input=data)
        client.raise_orchestration_event(iid, "blob", data=blob)
        state = client.wait_for_orchestration_completion(iid, timeout=120)
        assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
        out = state.get_output()
        assert out["input"] == len(data) and out["event"] == len(blob)
        assert out["reversed_ok"] and out["state_ok"] and out["echo"] == data[::-1]
        assert state.get_input() == data
        entity = client.get_entity(f"@store@{iid}")
        assert entity is not None and entity.get_state(str) == blob
        history = client.get_orchestration_history(iid)  # the client resolves references...
        started = next(e for e in history if isinstance(e, ev.ExecutionStarted))
        assert started.input == f'"{data}"'
        kept = [v for _, v in _raw(hub, hub.topics.history)]  # ...the history topic keeps them
        assert any(b"kafka:v1:" in v for v in kept if v is not None)
    # what the engine wrote stays small: references, not payloads
    for topic in (hub.topics.history, hub.topics.status, hub.topics.orchestrations_changelog,
                  hub.topics.entities_changelog, hub.topics.activity_requests, hub.topics.orchestrator_events):
        assert _largest_record(hub, topic) < 64 * 1024, topic


@pytest.mark.hub_partitions(1)
@pytest.mark.chaos
def test_large_input_activity_and_output(hub, tmp_path):
    """LARGE_MB (50 MB at full size) in, through an activity, and out: many chunks each way."""
    data = _blob(LARGE_MB * MB, "big")
    with _worker(hub, tmp_path), Client(hub.bootstrap, hub=hub.name) as client:
        iid = client.schedule_new_orchestration(through_activity, input=data, timeout=240)
        state = client.wait_for_orchestration_completion(iid, timeout=300)
        assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
        assert state.get_output() == data[::-1]


@pytest.mark.hub_partitions(1)
def test_purge_tombstones_every_chunk_of_the_instance(hub, tmp_path):
    with _worker(hub, tmp_path), Client(hub.bootstrap, hub=hub.name) as client:
        iid = client.schedule_new_orchestration(through_activity, input=_blob(3 * MB, "p"))
        state = client.wait_for_orchestration_completion(iid, timeout=120)
        assert state.runtime_status == OrchestrationStatus.COMPLETED
        records = _raw(hub, hub.topics.payloads)
        chunk_keys = {k for k, v in records if v is not None}
        # input (client), activity input, activity result, output: four payloads, none tombstoned yet
        assert len({k.split(b":")[0] for k in chunk_keys}) == 4
        assert client.purge_orchestration(iid).deleted_instance_count == 1
    last: dict[bytes | None, bytes | None] = {}
    for k, v in _raw(hub, hub.topics.payloads):
        last[k] = v
    assert chunk_keys and all(last[k] is None for k in chunk_keys)


@pytest.mark.hub_partitions(1)
def test_missing_or_corrupt_chunks_are_a_typed_error_naming_the_instance(hub, tmp_path):
    kafka = KafkaPayloadStore(hub.bootstrap, hub.name)
    try:
        good = kafka.upload(b'"' + b"z" * 2_000_000 + b'"', instance_id="someone")
        assert kafka.download(good) == b'"' + b"z" * 2_000_000 + b'"'
        parts = good.split(":")
        corrupt = ":".join(parts[:7] + ["0" * 64] + parts[8:])  # the digest no longer matches
        missing = ":".join(parts[:2] + [parts[2], parts[3], str(int(parts[4]) + 5)] + parts[5:8]
                           + [uuid.uuid4().hex] + parts[9:])  # chunks that were never written
        with pytest.raises(PayloadUnavailableError, match="do not match"):
            kafka.download(corrupt)
        with pytest.raises(PayloadUnavailableError, match="missing|past the end"):
            kafka.download(missing)
    finally:
        kafka.close()
    with _worker(hub, tmp_path), Client(hub.bootstrap, hub=hub.name) as client:
        for name, token in (("corrupt", corrupt), ("missing", missing)):
            iid = f"bad-{name}-{uuid.uuid4().hex[:6]}"
            client.schedule_new_orchestration(wait_event, instance_id=iid)
            client._send(iid, ev.RaiseEvent(name="e", input=token))  # a reference as another writer would
            state = client.wait_for_orchestration_completion(iid, timeout=60)
            assert state.runtime_status == OrchestrationStatus.FAILED
            assert state.failure_details.error_type == "durable_kafka.errors.PayloadUnavailableError"
            assert iid in state.failure_details.message
        # a client reading a state whose payload is gone gets the same typed error
        iid = client.schedule_new_orchestration(wait_event, input=None)
        client._send(iid, ev.TerminateOrchestration(output=missing, recursive=False))
        client.wait_for_orchestration_completion(iid, timeout=60, fetch_payloads=False)
        with pytest.raises(PayloadUnavailableError, match=iid):
            client.get_orchestration_state(iid)


@pytest.mark.hub_partitions(1)
def test_filesystem_store_and_its_purge(hub, tmp_path):
    directory = tmp_path / "payloads"
    options = LargePayloadStorageOptions(threshold_bytes=10_000)
    data = _blob(2 * MB, "fs")
    with _worker(hub, tmp_path, payload_store=FileSystemPayloadStore(directory, options)), \
            Client(hub.bootstrap, hub=hub.name, payload_store=FileSystemPayloadStore(directory, options)) as client:
        iid = client.schedule_new_orchestration(through_activity, input=data)
        state = client.wait_for_orchestration_completion(iid, timeout=120)
        assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
        assert state.get_output() == data[::-1]
        assert len(list(directory.rglob("*"))) >= 4  # owner folder + input, activity in/out, output
        assert not _raw(hub, hub.topics.payloads)  # nothing went to Kafka
        client.purge_orchestration(iid)
        assert [p for p in directory.rglob("*") if p.is_file()] == []


@pytest.mark.hub_partitions(1)
def test_async_client_round_trip(hub, tmp_path):
    import asyncio

    data = _blob(2 * MB, "async")

    async def main() -> None:
        async with AsyncClient(hub.bootstrap, hub=hub.name) as client:
            iid = await client.schedule_new_orchestration(through_activity, input=data)
            state = await client.wait_for_orchestration_completion(iid, timeout=120)
            assert state.get_output() == data[::-1]
            await client.signal_entity("@store@async", "set", data)  # a large signal input and state
            for _ in range(300):
                entity = await client.get_entity("@store@async")
                if entity is not None:
                    break
                await asyncio.sleep(0.1)
            assert entity is not None and entity.get_state(str) == data

    with _worker(hub, tmp_path):
        asyncio.run(main())
    # the audit replays the history (references) against the code: it reads payloads, never writes
    chunks_before = len(_raw(hub, hub.topics.payloads))
    registry = OrchestratorRegistry()
    registry.add_orchestrator(through_activity)
    report = audit(hub.name, hub.bootstrap, orchestrators=registry)
    assert report.ok and report.instances == 1, report.problems
    assert len(_raw(hub, hub.topics.payloads)) == chunks_before


def _spawn(hub, state: Path, crash: bool) -> subprocess.Popen:
    env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": hub.bootstrap, "DK_CRASH_HUB": hub.name,
           "DK_CRASH_STATE": str(state), "DK_CRASH_PARTITIONS": str(hub.partitions),
           "DK_PAYLOAD_CRASH": "1" if crash else "0"}
    proc = subprocess.Popen([sys.executable, "-m", "durable_kafka", "worker",
                             "tests.integration.payload_crash_app:make_worker"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "running" in line:
            return proc
    raise AssertionError("worker did not start")


@pytest.mark.hub_partitions(1)
def test_kill_9_between_storing_and_committing(hub, tmp_path):
    n = 3 * MB
    crashing = _spawn(hub, tmp_path / "state", crash=True)
    try:
        with Client(hub.bootstrap, hub=hub.name) as client:
            # the step that accepts the start also completes it: its reply dies with the worker
            iid = client.schedule_new_orchestration("big_output", input=n, wait_for_acceptance=False)
            client.flush()
            assert crashing.wait(timeout=120) == -signal.SIGKILL  # died with the chunks stored, uncommitted
            aborted = {k for k, v in _raw(hub, hub.topics.payloads, committed=False) if v is not None}
            assert aborted  # the chunks reached the broker...
            assert not _raw(hub, hub.topics.payloads)  # ...but no read_committed reader sees them
            assert client.get_orchestration_state(iid) is None  # the whole step was aborted
            survivor = _spawn(hub, tmp_path / "state", crash=False)
            try:
                state = client.wait_for_orchestration_completion(iid, timeout=120)
                assert state.runtime_status == OrchestrationStatus.COMPLETED
                assert state.get_output() == "o" * n
            finally:
                survivor.send_signal(signal.SIGTERM)
                survivor.wait(timeout=60)
        visible = {k for k, v in _raw(hub, hub.topics.payloads) if v is not None}
        # exactly the committed output's chunks are visible, none of the aborted attempt's
        assert visible and not (visible & aborted)
        assert len({k.split(b":")[0] for k in visible}) == 1
    finally:
        if crashing.poll() is None:
            crashing.kill()
