"""Auditors replay the history topic: the fold of the events equals the published state, and the
orchestrator code replays every history (a changed orchestrator is caught as non-determinism)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from durable_kafka import Client, Worker, task
from durable_kafka.errors import NonDeterminismError
from durable_kafka.testing import Replayer
from durable_kafka.connectors.audit import audit
from durable_kafka.processors.executor import OrchestratorRegistry

ROOT = Path(__file__).resolve().parents[2]


def double(ctx, x):
    return 2 * x


def pipeline(ctx, n):
    values = yield task.when_all([ctx.call_activity(double, input=i) for i in range(n)])
    total = yield ctx.call_activity(double, input=sum(values))
    return total


def pipeline_changed(ctx, n):  # same name, different first call: not the code that ran
    total = yield ctx.call_activity("triple", input=n)
    return total


def waits(ctx, _):
    return (yield ctx.wait_for_external_event("x"))


def test_history_fold_matches_status_and_code_replays(hub, tmp_path):
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "s"), partitions=hub.partitions)
    w.add_orchestrator(pipeline)
    w.add_orchestrator(waits)
    w.add_activity(double)
    with w, Client(hub.bootstrap, hub=hub.name) as c:
        ids = [c.schedule_new_orchestration(pipeline, input=n) for n in range(1, 6)]
        for iid in ids:
            c.wait_for_orchestration_completion(iid, timeout=30)
        running = c.schedule_new_orchestration(waits)
        c.wait_for_orchestration_start(running, timeout=30)
        c.terminate_orchestration(running, output="stop")
        c.wait_for_orchestration_completion(running, timeout=30)

    same_code = OrchestratorRegistry()
    same_code.add_orchestrator(pipeline)
    same_code.add_orchestrator(waits)
    report = audit(hub.name, hub.bootstrap, orchestrators=same_code)
    assert report.ok, report.problems
    assert report.instances == 6 and report.records > 6 * 5

    changed = OrchestratorRegistry()
    changed.add_orchestrator(pipeline_changed, name="pipeline")
    changed.add_orchestrator(waits)
    report = audit(hub.name, hub.bootstrap, orchestrators=changed)
    assert len(report.problems) == 5
    assert all("replay with the given code" in p and "at sequence number 1" in p and "triple" in p
               for p in report.problems), report.problems

    cli = subprocess.run([sys.executable, "-m", "durable_kafka", "audit", "--hub", hub.name,
                          "--bootstrap", hub.bootstrap, "--export", str(tmp_path / "export")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "audit: OK" in cli.stdout and "6 orchestration instances" in cli.stdout

    # the export: one Replayer file per instance; the same code replays them, the changed code does not
    files = sorted((tmp_path / "export").glob("*.json"))
    assert len(files) == 6 and "exported 6 histories" in cli.stdout
    results = Replayer(orchestrators=[pipeline, waits]).replay_all(files)
    assert sorted(r.runtime_status.name for r in results) == ["COMPLETED"] * 5 + ["TERMINATED"]
    with pytest.raises(NonDeterminismError, match="TaskScheduled, sequence number 1.*triple"):
        Replayer(orchestrators=[("pipeline", pipeline_changed), waits]).replay_all(files)


def test_foreign_records_on_history_and_status_are_reported_not_fatal(hub):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": hub.bootstrap})
    p.produce(hub.topics.history, key=b"x", value=b"\xc3\x01garbage")
    p.produce(hub.topics.status, key=None, value=b"")
    p.produce(hub.topics.status, key=b"y", value=None)
    p.flush(10)
    report = audit(hub.name, hub.bootstrap)
    assert any("undecodable record at" in problem for problem in report.problems), report.problems
    assert report.records == 0
