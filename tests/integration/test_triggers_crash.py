"""kill -9 of a worker while trigger records are being turned into commands: none lost, none doubled.

The worker runs as a subprocess (``python -m durable_kafka worker``), reading 1,000 orders (starts)
and 1,000 payments (raises, some before their order) from two source topics at full size (``make
chaos``; 250 of each in the normal suite). It is killed with SIGKILL once the first instances
complete, while records are still coming, then restarted. Every order must complete with its
payment, every trigger record must have become exactly one committed command on the hub's input
topic, and each instance must have exactly one start and one raised event in its history.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from durable_kafka import Client, OrchestrationStatus
from durable_kafka.connectors.audit import read_topic
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import producer_config

from sizes import sized  # tests/ is on sys.path (rootdir conftest)
from test_triggers import make_topics

ROOT = Path(__file__).resolve().parents[2]
ORDERS = sized(1000, 250)  # and as many payments: 2,000 trigger records at full size (the issue's)


def _spawn(hub, state: Path, orders: str, payments: str) -> subprocess.Popen:
    env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": hub.bootstrap, "DK_TRIG_HUB": hub.name,
           "DK_TRIG_RESULTS": f"{hub}-results",
           "DK_TRIG_STATE": str(state), "DK_TRIG_PARTITIONS": str(hub.partitions), "DK_TRIG_ORDERS": orders,
           "DK_TRIG_PAYMENTS": payments, "PYTHONPATH": str(ROOT / "tests" / "integration")}
    proc = subprocess.Popen([sys.executable, "-m", "durable_kafka", "worker", "trigger_app:make_worker"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if "running" in line:
            return proc
    raise AssertionError(f"worker did not start: {''.join(seen)}")


def _send_all(bootstrap: str, orders: str, payments: str, killed: threading.Event) -> None:
    """Orders and payments in small flushed chunks (a payment before its order for every fifth).

    The last fifth waits for the kill if it has not happened yet: records keep arriving after
    the kill (while the worker is down and restarting) whatever the size and the machine's speed.
    """
    p = Producer(producer_config(bootstrap))
    for i in range(ORDERS):
        if i == ORDERS * 4 // 5:
            assert p.flush(30) == 0
            killed.wait(120)
        order = (orders, json.dumps({"order_id": i, "sku": f"s{i}"}))
        payment = (payments, json.dumps({"order_id": i, "amount": i * 10}))
        for topic, value in ((payment, order) if i % 5 == 0 else (order, payment)):
            p.produce(topic, key=str(i), value=value)
        if i % 10 == 9:
            p.flush(30)
            time.sleep(0.02)  # pacing only: no assertion depends on it
    assert p.flush(30) == 0


def _completed(client: Client, ids: list[str]) -> int:
    done = 0
    for iid in ids:
        s = client.get_orchestration_state(iid)
        done += s is not None and s.runtime_status == OrchestrationStatus.COMPLETED
    return done


@pytest.mark.slow
@pytest.mark.chaos
def test_kill_9_while_triggers_flow_then_restart(hub, tmp_path):
    orders, payments = f"{hub}-orders", f"{hub}-payments"
    make_topics(hub.bootstrap, orders, payments, partitions=3)
    make_topics(hub.bootstrap, f"{hub}-results", partitions=1)
    state = tmp_path / "worker-state"
    worker = _spawn(hub, state, orders, payments)
    ids = [f"order-{i}" for i in range(ORDERS)]
    try:
        with Client(hub.bootstrap, hub=hub.name) as client:
            # records keep coming while the worker runs and dies: it is killed mid-stream
            killed = threading.Event()
            sender = threading.Thread(target=_send_all, args=(hub.bootstrap, orders, payments, killed), daemon=True)
            sender.start()
            deadline = time.monotonic() + 60
            while _completed(client, ids[:10]) < 1:
                assert time.monotonic() < deadline, "no progress before the kill"
                time.sleep(0.1)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            killed.set()
            done_at_kill = _completed(client, ids)
            assert done_at_kill < ORDERS, "everything finished before the kill; the test proves nothing"
            worker = _spawn(hub, state, orders, payments)
            sender.join(120)
            for i, iid in enumerate(ids):
                s = client.wait_for_orchestration_completion(iid, timeout=120)
                assert s.runtime_status == OrchestrationStatus.COMPLETED, (iid, s.failure_details)
                assert s.get_output() == {"order": {"order_id": i, "sku": f"s{i}"}, "paid": i * 10}
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    codec = Codec.default()
    commands = [v for _, v in read_topic(hub.bootstrap, hub.topics.orchestrator_events, codec)
                if v is not None and (isinstance(v.body, ev.RaiseEvent)
                                      or (isinstance(v.body, ev.StartOrchestration) and v.body.source))]
    counts = Counter(m.id for m in commands)
    assert len(counts) == 2 * ORDERS, f"{len(counts)} distinct trigger commands for {2 * ORDERS} records"
    assert max(counts.values()) == 1, "a trigger record became two committed commands"
    history = [r for _, v in read_topic(hub.bootstrap, hub.topics.history, codec) for r in ev.history_records(v)]
    starts = Counter(r.instance_id for r in history if isinstance(r.event, ev.ExecutionStarted))
    raised = Counter(r.instance_id for r in history if isinstance(r.event, ev.EventRaised))
    assert starts == Counter(ids) and raised == Counter(ids)
    # the completion route: exactly one committed record per instance, across the kill
    from test_trigger_outputs import read_all

    results = read_all(hub.bootstrap, f"{hub}-results", expect=ORDERS)
    assert Counter(k.decode() for k, _ in results) == Counter(ids)
    assert all(json.loads(v)["runtimeStatus"] == "Completed" for _, v in results)
