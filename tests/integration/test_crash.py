"""kill -9 of a worker in the middle of 200 orchestrations: everything completes, nothing doubles.

200 at full size (``make chaos``); the normal suite runs 80 (tests/sizes.py), the same kill.

The worker runs in a subprocess (RocksDB locks and librdkafka threads make in-process crash
simulation dishonest) and is killed with SIGKILL while orchestrations are mid-flight. The
restarted worker either keeps its local state (RocksDB lags the changelog at most) or starts
with the state directory deleted (everything rebuilt from the changelog topic).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from durable_kafka import Client, OrchestrationStatus
from durable_kafka.streams import events as ev
from durable_kafka.connectors.audit import read_topic
from durable_kafka.streams.codec import Codec

from crash_app import expected_output  # tests/integration is on sys.path (rootdir-style tests)
from sizes import full_size, sized  # tests/ is on sys.path (rootdir conftest)

ROOT = Path(__file__).resolve().parents[2]
N = sized(200, 80)  # timers of 1 s + n * 20 ms: 80 instances still spread their completions over 1.6 s


def _spawn(hub, state: Path, early_dispatch: bool = False) -> subprocess.Popen:
    env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": hub.bootstrap, "DK_CRASH_HUB": hub.name,
           "DK_CRASH_STATE": str(state), "DK_CRASH_PARTITIONS": str(hub.partitions),
           "DK_CRASH_EARLY_DISPATCH": "1" if early_dispatch else "0"}
    proc = subprocess.Popen([sys.executable, "-m", "durable_kafka", "worker", "tests.integration.crash_app:make_worker"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:  # librdkafka may log before the worker says it runs
        seen.append(line)
        if "running" in line:
            return proc
    raise AssertionError(f"worker did not start: {''.join(seen)}")


def _completed(client: Client, ids: list[str]) -> int:
    done = 0
    for iid in ids:
        s = client.get_orchestration_state(iid)
        done += s is not None and s.runtime_status == OrchestrationStatus.COMPLETED
    return done


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.parametrize("wipe_state", [False, True], ids=["keep-state", "wipe-state"])
@pytest.mark.parametrize("early_dispatch", [False, True], ids=["in-transaction", "early-dispatch"])
def test_kill_9_midway_then_restart(hub, tmp_path, wipe_state, early_dispatch):
    """Also with activity requests dispatched before their step commits (issue 13, D14): a kill
    between dispatch and commit may run an activity again, never complete a task twice."""
    if early_dispatch and not full_size():
        pytest.skip("early dispatch under kill -9 runs at full size only (make chaos); "
                    "test_early_dispatch.py aborts its transactions on purpose in every run")
    state = tmp_path / "worker-state"
    worker = _spawn(hub, state, early_dispatch)
    try:
        with Client(hub.bootstrap, hub=hub.name) as client:
            ids = [f"crash-{i}-{uuid.uuid4().hex[:6]}" for i in range(N)]
            for i, iid in enumerate(ids):
                client.schedule_new_orchestration("crash_orchestration", input=i, instance_id=iid,
                                                  wait_for_acceptance=False)
            deadline = time.monotonic() + 60
            # timers of 1-5 s spread the completions: kill as soon as the first ones completed, while
            # the rest are mid-flight (before, inside or just after their timers)
            while _completed(client, ids[:5]) < 1:
                assert time.monotonic() < deadline, "no progress before the kill"
                time.sleep(0.2)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            done_at_kill = _completed(client, ids)
            assert done_at_kill < N, "everything finished before the kill; the test proves nothing"
            if wipe_state:
                shutil.rmtree(state)
            worker = _spawn(hub, state, early_dispatch)
            for iid in ids:
                s = client.wait_for_orchestration_completion(iid, timeout=120)
                assert s.runtime_status == OrchestrationStatus.COMPLETED, (iid, s.failure_details)
                n = int(iid.split("-")[1])
                assert s.get_output() == expected_output(n)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    _assert_no_duplicate_history(hub, set(ids))


def _assert_no_duplicate_history(hub, ids: set[str]) -> None:
    # one HistoryBatch per step (D20), expanded to its events: a step committed twice would double ids
    records = [r for _, v in read_topic(hub.bootstrap, hub.topics.history, Codec.default()) for r in ev.history_records(v)]
    mine = [r for r in records if r.instance_id in ids]
    dup_ids = [k for k, c in Counter(r.id for r in mine).items() if c > 1]
    assert not dup_ids, f"duplicated history records: {dup_ids[:5]}"
    by_instance: dict[str, list[ev.HistoryRecord]] = {}
    for r in mine:
        by_instance.setdefault(r.instance_id, []).append(r)
    assert set(by_instance) == ids
    for iid, recs in by_instance.items():
        assert [r.index for r in recs] == list(range(len(recs))), f"{iid}: gaps or reordering in history"
        completions = Counter(r.event.task_scheduled_id for r in recs if isinstance(r.event, ev.TaskCompleted))
        assert all(c == 1 for c in completions.values()), f"{iid}: a task completed twice"
        assert sum(isinstance(r.event, ev.TimerFired) for r in recs) == 1
        assert sum(isinstance(r.event, ev.ExecutionStarted) for r in recs) == 1
