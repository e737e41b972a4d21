"""The broker restarts under a running worker, and every orchestration still completes once.

The worker runs as `python -m durable_kafka worker` in a subprocess and this test plays the
process supervisor (systemd, Kubernetes): if the worker exits, it is started again. Two paths
are legitimate: the worker recovers in-process (its fenced producer is replaced and it rewinds
to the committed offsets), or, when librdkafka stays blocked in a transactional call (librdkafka
issue #5456), it reports itself stuck and exits, and the restarted worker resumes from the last
committed transaction. Either way the history must hold no duplicate and the audit must pass.
Runs on a private broker (the session's ``private_broker``: free ports, state in a temporary
directory; test_broker.py may have left it running) so the shared one is never touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from crash_app import expected_output  # tests/integration is on sys.path (rootdir-style tests)

from durable_kafka import Client, OrchestrationStatus
from durable_kafka.connectors import broker
from durable_kafka.connectors.audit import audit
from durable_kafka.streams.admin import ensure_topics

ROOT = Path(__file__).resolve().parents[2]
N = 60
pytestmark = pytest.mark.timeout(400)


def _spawn(bootstrap: str, hub: str, state: Path) -> subprocess.Popen:
    env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": bootstrap, "DK_CRASH_HUB": hub, "DK_CRASH_STATE": str(state),
           "DK_CRASH_PARTITIONS": "4", "DK_STUCK_AFTER": "20"}
    proc = subprocess.Popen([sys.executable, "-m", "durable_kafka", "worker", "tests.integration.crash_app:make_worker"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "running" in line:
            return proc
    raise AssertionError(f"worker did not start (exit {proc.wait()})")


@pytest.mark.slow
def test_orchestrations_survive_a_broker_restart(private_broker, tmp_path):
    cfg = private_broker
    broker.up(cfg)
    bootstrap, hub = cfg.bootstrap, "restart"
    ensure_topics(hub, 4, bootstrap=bootstrap)
    worker = _spawn(bootstrap, hub, tmp_path / "worker")
    restarts = 0
    try:
        with Client(bootstrap, hub=hub) as c:
            ids = [f"r-{i}-{uuid.uuid4().hex[:6]}" for i in range(N)]
            for i, iid in enumerate(ids):
                c.schedule_new_orchestration("crash_orchestration", input=i, instance_id=iid, wait_for_acceptance=False)
            c.flush()
            deadline = time.monotonic() + 60
            while (s := c.get_orchestration_state(ids[0])) is None or s.runtime_status != OrchestrationStatus.COMPLETED:
                assert time.monotonic() < deadline, "no progress before the broker restart"
                time.sleep(0.1)
            broker.down(cfg)
            time.sleep(2)
            broker.up(cfg)
            deadline = time.monotonic() + 240
            pending = list(ids)
            while pending:
                assert time.monotonic() < deadline, f"{len(pending)} instances never completed"
                if worker.poll() is not None:  # the supervisor's job: start it again
                    restarts += 1
                    worker = _spawn(bootstrap, hub, tmp_path / "worker")
                s = c.get_orchestration_state(pending[0])
                if s is not None and s.runtime_status == OrchestrationStatus.COMPLETED:
                    assert s.get_output() == expected_output(int(pending[0].split("-")[1]))
                    pending.pop(0)
                else:
                    time.sleep(0.2)
        report = audit(hub, bootstrap)
        assert report.ok, report.problems
        assert report.instances == N
        print(f"worker restarts needed: {restarts}")
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        broker.down(cfg)
