"""History written once per step (docs/DECISIONS.md D20) on the real broker.

A worker of the release before wrote one HistoryRecord per event; after an upgrade the same
instances go on with one HistoryBatch per step. Both formats must replay, restore from a wiped
state dir, read back through the client and the audit, and leave no history key behind after
continue-as-new and purge.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest
from rocksdict import Options, Rdict

from durable_kafka import Client, OrchestrationStatus, Worker
from durable_kafka.connectors.audit import audit, read_topic
from durable_kafka.processors import store as keys
from durable_kafka.processors.instance import InstanceStep
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec


def double(ctx, n):
    return 2 * n


def three_then_wait(ctx, n):
    out = []
    for i in range(3):
        out.append((yield ctx.call_activity(double, input=n + i)))
    go = yield ctx.wait_for_external_event("go")
    out.append((yield ctx.call_activity(double, input=go)))
    return out


def counter(ctx, n):
    """Eternal: each round waits for a tick, then continues as new (until 3)."""
    yield ctx.wait_for_external_event("tick")
    if n < 3:
        ctx.continue_as_new(n + 1)
        return None
    return n


def _worker(hub, state: Path) -> Worker:
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(state), worker_id="w", partitions=hub.partitions)
    w.add_orchestrator(three_then_wait)
    w.add_orchestrator(counter)
    w.add_activity(double)
    return w


def _wait_status(c: Client, iid: str, status: OrchestrationStatus, histlen: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        s = c.get_orchestration_state(iid)
        if s is not None and s.runtime_status == status and len(c.get_orchestration_history(iid)) >= histlen:
            return
        assert time.monotonic() < deadline, f"{iid}: {s}"
        time.sleep(0.1)


def _history_keys(state: Path, hub: str) -> Counter[str]:
    """Instance id -> number of history keys in the worker's (closed) stores."""
    found: Counter[str] = Counter()
    dirs = sorted((state / hub / "orchestrations").glob("p*"))
    assert dirs, "no orchestration stores"
    for db_dir in dirs:
        db = Rdict(str(db_dir), Options(raw_mode=True))
        try:
            for k in db.keys(from_key=b"h" + keys.SEP):
                if not k.startswith(b"h" + keys.SEP):
                    break
                found[k.split(keys.SEP)[1].decode()] += 1
        finally:
            db.close()
    return found


@pytest.fixture
def per_event_history():
    InstanceStep.per_event_history = True
    yield
    InstanceStep.per_event_history = False


def test_instances_begun_per_event_go_on_in_batches_after_a_wiped_restore(hub, tmp_path, per_event_history):
    state = tmp_path / "w"
    ids = [f"mixed-{i}" for i in range(6)]
    with _worker(hub, state), Client(hub.bootstrap, hub=hub.name) as c:
        for i, iid in enumerate(ids):
            c.schedule_new_orchestration(three_then_wait, input=10 * i, instance_id=iid)
        for iid in ids:  # ExecutionStarted..three results, then the wait: 1 + 4 x 4 - ... recorded per event
            _wait_status(c, iid, OrchestrationStatus.RUNNING, 14)
    old_format = [v for _, v in read_topic(hub.bootstrap, hub.topics.history, Codec.default())]
    assert old_format and all(isinstance(v, ev.HistoryRecord) for v in old_format)

    InstanceStep.per_event_history = False  # the upgrade
    shutil.rmtree(state)  # and a lost disk: the new worker restores the old format from the changelog
    with _worker(hub, state), Client(hub.bootstrap, hub=hub.name) as c:
        for i, iid in enumerate(ids):
            c.raise_orchestration_event(iid, "go", data=i)
        for i, iid in enumerate(ids):
            done = c.wait_for_orchestration_completion(iid, timeout=60)
            assert done.runtime_status == OrchestrationStatus.COMPLETED, done.failure_details
            assert done.get_output() == [20 * i, 20 * i + 2, 20 * i + 4, 2 * i]
            history = c.get_orchestration_history(iid)
            kinds = Counter(type(e).__name__ for e in history)
            assert kinds["TaskCompleted"] == 4 and kinds["ExecutionStarted"] == 1 and kinds["ExecutionCompleted"] == 1
    values = [v for _, v in read_topic(hub.bootstrap, hub.topics.history, Codec.default())]
    batches = [v for v in values if isinstance(v, ev.HistoryBatch)]
    assert batches and len(values) == len(old_format) + len(batches)
    records = [r for v in values for r in ev.history_records(v)]
    for iid in ids:
        mine = [r for r in records if r.instance_id == iid]
        assert [r.index for r in mine] == list(range(len(mine))), f"{iid}: gaps or reordering across formats"
        assert len({r.id for r in mine}) == len(mine)
        # after the upgrade: the raise step and the last activity's step, one batch each
        assert sum(1 for b in batches if b.instance_id == iid) == 2
    report = audit(hub.name, hub.bootstrap)
    assert report.ok, report.problems


def test_continue_as_new_and_purge_leave_no_history_key_in_the_store(hub, tmp_path):
    state = tmp_path / "w"
    with _worker(hub, state), Client(hub.bootstrap, hub=hub.name) as c:
        c.schedule_new_orchestration(counter, input=0, instance_id="eternal")
        c.schedule_new_orchestration(three_then_wait, input=1, instance_id="purged")
        for n in range(4):
            _wait_status(c, "eternal", OrchestrationStatus.RUNNING, 1)
            c.raise_orchestration_event("eternal", "tick")
            if n < 3:  # the next execution has begun (its input is the round)
                deadline = time.monotonic() + 60
                while json.loads(c.get_orchestration_state("eternal").serialized_input or "0") != n + 1:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
        assert c.wait_for_orchestration_completion("eternal", timeout=60).get_output() == 3
        _wait_status(c, "purged", OrchestrationStatus.RUNNING, 14)
        c.raise_orchestration_event("purged", "go", data=1)
        assert c.wait_for_orchestration_completion("purged", timeout=60).runtime_status == OrchestrationStatus.COMPLETED
        assert c.purge_orchestration("purged").deleted_instance_count == 1
        history = c.get_orchestration_history("eternal")
    left = _history_keys(state, hub.name)
    assert "purged" not in left
    # only the last execution's history is kept: its start step and its end step, one batch each
    assert left["eternal"] == 2, left
    assert [type(e).__name__ for e in history].count("ExecutionStarted") == 1
