"""Scenario 6: every kind of bad record on every input topic, while valid work shares the partition.

One in-process worker (so ``Worker.errors()`` can be asked) on a 3-partition hub. Every bad
record goes to partition 0 of its topic, between valid orchestrations, activity requests and
entity signals that also live on partition 0. Each must come out on ``<hub>.deadletter`` with
its coordinates, a reason naming what is wrong, and the truncation fields (size and SHA-256
of the whole original; a copy cut to 256 KiB when it is larger). Valid work before and after
must complete exactly once, and the worker must report no error.

A null *key* is not a fault by itself: records are routed by the id inside the value, so a
valid record with no key on the partition that owns its id is simply processed (that is
asserted too); a valid record with no key on a partition that does not own its id is
misrouted and is dead-lettered like any other misrouted record.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest
from confluent_kafka import Producer

from chaos_harness import SUMMARIES, read_committed, sized, wait_until
from durable_kafka import Client, OrchestrationStatus, Worker
from durable_kafka.entities import EntityContext
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import partition_for
from durable_kafka.streams.deadletter import MAX_ORIGINAL_BYTES

PARTITIONS = 3
HOME = 0  # every bad record and every valid item of this test lives on partition 0
OVERSIZED = 1_040_000
_runs: list[str] = []
_runs_lock = threading.Lock()


def shout(ctx, x):
    with _runs_lock:
        _runs.append(f"{ctx.orchestration_id}/{ctx.task_id}")
    return str(x).upper()


def two_steps(ctx, x):
    a = yield ctx.call_activity(shout, input=x)
    b = yield ctx.call_activity(shout, input=f"{a}!")
    return b


def counter(ctx: EntityContext, amount):
    if ctx.operation == "add":
        ctx.set_state(ctx.get_state(int, 0) + amount)


def _ids_on(partition: int, prefix: str, count: int, entity: bool = False) -> list[str]:
    """Ids (instance ids, or '@counter@key' entity ids) that hash to ``partition``."""
    out: list[str] = []
    i = 0
    while len(out) < count:
        candidate = f"@counter@{prefix}{i}" if entity else f"{prefix}-{i}"
        if partition_for(candidate.encode(), PARTITIONS) == partition:
            out.append(candidate)
        i += 1
    return out


@dataclass
class Bad:
    """One bad record: where it went, what it was, what its dead letter must say."""

    kind: str
    topic: str
    key: bytes | None
    value: bytes | None
    reason: tuple[str, ...]  # the dead letter's reason must contain one of these
    offset: int = -1


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _valid_records(codec: Codec, hub, owner_id: str) -> dict[str, bytes]:
    """One valid record per topic for ``owner_id``-like ids (the content is irrelevant to the test)."""
    iid = owner_id
    start = ev.OrchestratorMessage(id=f"m-{uuid.uuid4().hex}", instance_id=iid, sent_at=_now(),
                                   body=ev.StartOrchestration(name="two_steps", execution_id="e1", input='"z"'))
    signal = ev.EntityMessage(id=f"s-{uuid.uuid4().hex}", entity_id=f"@counter@{iid}", sent_at=_now(),
                              body=ev.SignalEntity(operation="add", input="1000"))
    request = ev.ActivityRequest(id=f"{iid}/e0/7", instance_id=iid, execution_id="e0", task_id=7, name="shout",
                                 input='"ghost"')
    return {hub.topics.orchestrator_events: codec.encode(start), hub.topics.entity_operations: codec.encode(signal),
            hub.topics.activity_requests: codec.encode(request)}


def _bad_records(hub, codec: Codec) -> list[Bad]:
    """The matrix: 8 kinds x 3 topics, each on partition HOME."""
    t = hub.topics
    # ids owned by another partition: their valid records on HOME are misrouted
    away = next(f"away-{i}" for i in range(1000) if partition_for(f"away-{i}".encode(), PARTITIONS) != HOME)
    away_entity = next(f"away{i}" for i in range(1000)
                       if partition_for(f"@counter@away{i}".encode(), PARTITIONS) != HOME)
    valid_away = _valid_records(codec, hub, away)
    valid_away[t.entity_operations] = codec.encode(ev.EntityMessage(
        id="s-away", entity_id=f"@counter@{away_entity}", sent_at=_now(), body=ev.SignalEntity(operation="add", input="1")))
    wrong_type = {  # a valid record of a type another topic carries
        t.orchestrator_events: codec.decode(valid_away[t.activity_requests]),
        t.entity_operations: codec.decode(valid_away[t.orchestrator_events]),
        t.activity_requests: codec.decode(valid_away[t.entity_operations]),
    }
    out: list[Bad] = []
    for topic in (t.orchestrator_events, t.entity_operations, t.activity_requests):
        good = valid_away[topic]
        unknown_fp = b"\xc3\x01" + b"\x13\x37" * 4 + good[10:]
        out += [
            Bad("garbage bytes", topic, b"bad-garbage", b"\x00garbage" + os.urandom(40), ("wrong marker",)),
            Bad("truncated Avro", topic, b"bad-truncated", good[: len(good) - 7], ("truncated body",)),
            Bad("unknown fingerprint", topic, b"bad-unknown", unknown_fp, ("unknown writer schema",)),
            Bad("wrong record type", topic, b"bad-type", codec.encode(wrong_type[topic]), ("expected",)),
            Bad("empty value", topic, b"bad-empty", b"", ("shorter than",)),
            Bad("null value", topic, b"bad-null", None, ("null value", "no value", "tombstone")),
            Bad("null key, bad value", topic, None, b"\xc3\x01\x00", ("shorter than",)),
            Bad("oversized", topic, b"bad-big", b"\xc3\x01" + os.urandom(OVERSIZED - 2),
                ("unknown writer schema", "too large", "cannot")),
        ]
        if topic != t.activity_requests:  # activity requests carry no state: see the test below
            out.append(Bad("oversized, valid Avro", topic, b"bad-big-valid", _oversized_valid(codec, hub, topic),
                           ("PayloadTooLargeError",)))
            out.append(Bad("misrouted (valid, null key)", topic, None, good, ("misrouted",)))
            out.append(Bad("misrouted (valid, keyed)", topic, b"bad-misrouted", good, ("misrouted",)))
    return out


def _oversized_valid(codec: Codec, hub, topic: str) -> bytes:
    """A well-formed record of the topic's own type, over a megabyte (its payload is huge)."""
    iid = _ids_on(HOME, "huge", 1)[0]
    payload = '"' + "h" * (OVERSIZED - 200) + '"'
    t = hub.topics
    if topic == t.orchestrator_events:
        record: Any = ev.OrchestratorMessage(id="m-huge", instance_id=iid, sent_at=_now(), body=ev.StartOrchestration(
            name="two_steps", execution_id="e-huge", input=payload))
    elif topic == t.entity_operations:
        record = ev.EntityMessage(id="s-huge", entity_id=_ids_on(HOME, "huge", 1, entity=True)[0], sent_at=_now(),
                                  body=ev.SignalEntity(operation="add", input=payload))
    else:
        record = ev.ActivityRequest(id=f"{iid}/e0/9", instance_id=iid, execution_id="e0", task_id=9, name="shout",
                                    input=payload)
    return codec.encode(record)


@pytest.mark.hub_partitions(PARTITIONS)
@pytest.mark.timeout(300)
def test_every_bad_record_on_every_input_topic_is_dead_lettered(hub, tmp_path):
    codec = Codec.default()
    rounds = sized(20, 4)  # valid orchestrations before and after the bad records
    _runs.clear()
    worker = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "state"), partitions=PARTITIONS)
    worker.add_orchestrator(two_steps)
    worker.add_activity(shout)
    worker.add_entity(counter)
    with worker, Client(hub.bootstrap, hub=hub.name) as client:
        before = _ids_on(HOME, "before", rounds)
        after = _ids_on(HOME, "after", rounds)
        keyless = _ids_on(HOME, "keyless", 1)[0]
        entity = _ids_on(HOME, "n", 1, entity=True)[0]
        for iid in before:
            client.schedule_new_orchestration(two_steps, input=iid, instance_id=iid, wait_for_acceptance=False)
        for _ in range(rounds):
            client.signal_entity(entity, "add", 1)
        client.flush()

        bad = _bad_records(hub, codec)
        producer = Producer({"bootstrap.servers": hub.bootstrap, "message.max.bytes": 2_000_000,
                             "partitioner": "murmur2_random", "linger.ms": 5})
        for b in bad:
            def delivered(err, msg, b=b):  # noqa: ANN001 - librdkafka callback
                assert err is None, err
                b.offset = msg.offset()
            producer.produce(b.topic, key=b.key, value=b.value, partition=HOME, on_delivery=delivered)
        # valid records with no key, on their owner partition: handled like any other
        valid_home = _valid_records(codec, hub, keyless)
        producer.produce(hub.topics.orchestrator_events, key=None, value=valid_home[hub.topics.orchestrator_events],
                         partition=HOME)
        assert producer.flush(30) == 0
        assert all(b.offset >= 0 for b in bad)

        for iid in after:
            client.schedule_new_orchestration(two_steps, input=iid, instance_id=iid, wait_for_acceptance=False)
        for _ in range(rounds):
            client.signal_entity(entity, "add", 1)
        client.flush()

        for iid in [*before, *after, keyless]:
            state = client.wait_for_orchestration_completion(iid, timeout=120)
            assert state.runtime_status == OrchestrationStatus.COMPLETED, (iid, state.failure_details)
            want = "Z" if iid == keyless else iid
            assert state.get_output() == f"{want.upper()}!", iid
        wait_until("the entity's signals", lambda: (e := client.get_entity(entity)) is not None
                   and e.get_state(int) == 2 * rounds, timeout=60)

        letters = _letters_for(hub, codec, bad)
        problems = []
        for b in bad:
            letter = letters.get((b.topic, b.offset))
            if letter is None:
                problems.append(f"{b.kind} on {b.topic}: no dead letter")
                continue
            problems += _check_letter(b, letter)
            print(f"  {b.kind:28} {b.topic.split('.', 1)[1]:20} size={letter.original_size} "
                  f"truncated={letter.original_truncated} {letter.error_type}: {letter.reason[:110]}")
        assert not problems, "\n".join(problems)
        time.sleep(1.0)  # anything still in flight would be counted twice below
        assert worker.errors() == []
        # every activity of the valid orchestrations ran; none of the dead-lettered records ran one
        mine = [r for r in _runs if r.split("/")[0] in {*before, *after, keyless}]
        stats = worker.stats()
        print(f"[chaos] bad records: {len(bad)} bad records on 3 topics, all dead-lettered with reason and "
              f"truncation fields; valid work completed={2 * rounds + 1} entity_signals={2 * rounds} "
              f"activity_runs={len(mine)} aborts={stats.get('aborts', 0)} incurable={stats.get('incurable', 0)} "
              f"worker_errors=0")
        SUMMARIES.append(f"[chaos] bad records: {len(bad)} bad records, {len(bad)} dead letters, "
                         f"{2 * rounds + 1} valid instances completed, aborts={stats.get('aborts', 0)}, worker errors 0")
        assert len(mine) == len(set(mine)) >= 2 * (2 * rounds + 1)


def _letters_for(hub, codec: Codec, bad: list[Bad]) -> dict[tuple[str, int], ev.DeadLetter]:
    wanted = {(b.topic, b.offset) for b in bad}
    found: dict[tuple[str, int], ev.DeadLetter] = {}

    def collect() -> bool:
        for _ts, _k, letter in read_committed(hub.bootstrap, hub.topics.deadletter, codec):
            if letter is not None and letter.partition == HOME and (letter.topic, letter.offset) in wanted:
                found[(letter.topic, letter.offset)] = letter
        return wanted <= set(found)

    try:
        wait_until("every dead letter", collect, timeout=60, interval=1.0)
    except AssertionError:
        pass  # reported one by one by the caller
    return found


def _check_letter(b: Bad, letter: ev.DeadLetter) -> list[str]:
    where = f"{b.kind} on {b.topic}"
    out = []
    if not any(r in letter.reason for r in b.reason):
        out.append(f"{where}: reason {letter.reason[:200]!r} names none of {b.reason}")
    if (letter.topic, letter.partition, letter.offset) != (b.topic, HOME, b.offset):
        out.append(f"{where}: wrong coordinates {letter.topic}[{letter.partition}]@{letter.offset}")
    if b.value is None:
        if letter.original_size is not None or letter.original_sha256 is not None or letter.original_truncated:
            out.append(f"{where}: a null value must have no size or hash: {letter.original_size}")
    else:
        if letter.original_size != len(b.value):
            out.append(f"{where}: original_size {letter.original_size} != {len(b.value)}")
        if letter.original_sha256 != hashlib.sha256(b.value).hexdigest():
            out.append(f"{where}: original_sha256 does not match")
        truncated = len(b.value) > MAX_ORIGINAL_BYTES
        if letter.original_truncated != truncated:
            out.append(f"{where}: original_truncated={letter.original_truncated}, expected {truncated}")
        if letter.original != b.value[: len(letter.original)] or len(letter.original) > MAX_ORIGINAL_BYTES:
            out.append(f"{where}: the kept copy is not a prefix of the original (or too long)")
        if not truncated and letter.original != b.value:
            out.append(f"{where}: a small original must be kept whole")
    if letter.key != b.key:
        out.append(f"{where}: key {letter.key!r} != {b.key!r}")
    return out


@pytest.mark.hub_partitions(PARTITIONS)
@pytest.mark.timeout(120)
def test_valid_activity_requests_run_even_misrouted_or_oversized(hub, tmp_path):
    """Activity requests carry no state, so the partition does not matter: a valid request on a
    partition that does not own its instance is executed (at least once, like any other) and its
    result goes to the owner's partition by key. A valid request over a megabyte runs too (its
    result, too large to send, is replaced by an ActivityResultTooLargeError failure). Neither
    is dead-lettered: only what cannot be decoded is."""
    codec = Codec.default()
    _runs.clear()
    worker = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "state"), partitions=PARTITIONS)
    worker.add_orchestrator(two_steps)
    worker.add_activity(shout)
    with worker:
        ghost = next(f"ghost-{i}" for i in range(1000) if partition_for(f"ghost-{i}".encode(), PARTITIONS) != HOME)
        request = _valid_records(codec, hub, ghost)[hub.topics.activity_requests]
        p = Producer({"bootstrap.servers": hub.bootstrap, "message.max.bytes": 2_000_000})
        p.produce(hub.topics.activity_requests, key=ghost.encode(), value=request, partition=HOME)
        big = _oversized_valid(codec, hub, hub.topics.activity_requests)
        huge = codec.decode(big).instance_id
        p.produce(hub.topics.activity_requests, key=huge.encode(), value=big, partition=HOME)
        assert p.flush(10) == 0
        wait_until("the misrouted request to run", lambda: f"{ghost}/7" in _runs, timeout=60)
        wait_until("the oversized request to run", lambda: f"{huge}/9" in _runs, timeout=60)
        time.sleep(1.0)
        letters: list[Any] = [v for _, _, v in read_committed(hub.bootstrap, hub.topics.deadletter, codec) if v]
        assert letters == []
        assert _runs.count(f"{ghost}/7") == 1 and _runs.count(f"{huge}/9") == 1
        assert worker.errors() == []
