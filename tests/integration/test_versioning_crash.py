"""kill -9 of a worker that parks the instances of a version it rejects: parking commits with the
offsets, so after the restart and a hand-over to a worker of the other version every instance
of both versions completes exactly once (no lost event, no doubled history record)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from durable_kafka import Client, OrchestrationStatus

from crash_app import expected_output  # tests/integration is on sys.path (rootdir-style tests)
from sizes import sized  # tests/ is on sys.path (rootdir conftest)
from test_crash import _assert_no_duplicate_history

ROOT = Path(__file__).resolve().parents[2]
N = sized(80, 48)  # half of each version; 80 at full size (make chaos)


def _spawn(hub, state: Path, version: str) -> subprocess.Popen:
    env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": hub.bootstrap, "DK_CRASH_HUB": hub.name,
           "DK_CRASH_STATE": str(state), "DK_CRASH_PARTITIONS": str(hub.partitions), "DK_CRASH_VERSION": version}
    proc = subprocess.Popen([sys.executable, "-m", "durable_kafka", "worker", "tests.integration.crash_app:make_worker"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:  # type: ignore[union-attr]
        seen.append(line)
        if "running" in line:
            return proc
    raise AssertionError(f"worker did not start: {''.join(seen)}")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _status(client: Client, iid: str) -> OrchestrationStatus | None:
    s = client.get_orchestration_state(iid)
    return s.runtime_status if s is not None else None


@pytest.mark.slow
@pytest.mark.chaos
def test_kill_9_while_parking_then_restart_and_hand_over(hub, tmp_path):
    worker = _spawn(hub, tmp_path / "v1", "1.0")
    try:
        with Client(hub.bootstrap, hub=hub.name) as client:
            ids = {f"vc-{i}-{uuid.uuid4().hex[:6]}": ("1.0" if i % 2 else "2.0") for i in range(N)}
            for i, (iid, version) in enumerate(ids.items()):
                client.schedule_new_orchestration("crash_orchestration", input=i, instance_id=iid, version=version,
                                                  wait_for_acceptance=False)
            v1 = [iid for iid, v in ids.items() if v == "1.0"]
            v2 = [iid for iid, v in ids.items() if v == "2.0"]
            deadline = time.monotonic() + 60
            while not any(_status(client, iid) == OrchestrationStatus.COMPLETED for iid in v1[:5]):
                assert time.monotonic() < deadline, "no progress before the kill"
                time.sleep(0.2)
            _stop(worker, signal.SIGKILL)
            assert sum(_status(client, iid) == OrchestrationStatus.COMPLETED for iid in v1) < len(v1)
            worker = _spawn(hub, tmp_path / "v1", "1.0")  # same worker back: v1 goes on, v2 stays parked
            for iid in v1:
                state = client.wait_for_orchestration_completion(iid, timeout=120)
                assert state.get_output() == expected_output(int(iid.split("-")[1])), state.failure_details
            assert {_status(client, iid) for iid in v2} == {OrchestrationStatus.PENDING}
            _stop(worker)
            worker = _spawn(hub, tmp_path / "v2", "2.0")  # the new version takes the partitions over
            for iid in v2:
                state = client.wait_for_orchestration_completion(iid, timeout=120)
                assert state.runtime_status == OrchestrationStatus.COMPLETED, (iid, state.failure_details)
                assert state.get_output() == expected_output(int(iid.split("-")[1])) and state.version == "2.0"
    finally:
        _stop(worker)
    _assert_no_duplicate_history(hub, set(ids))
