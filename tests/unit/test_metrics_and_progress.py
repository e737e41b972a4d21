"""Bounded label values of durable_kafka._metrics, and the progress bars' terminal-only rule."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys

from prometheus_client import CollectorRegistry

from durable_kafka._metrics import MAX_REASONS, OTHER, EngineMetrics
from durable_kafka._progress import Progress, progress_enabled


def test_labels_stay_bounded():
    m = EngineMetrics(CollectorRegistry(), orchestrators=["hello"], activities=["say"], entities=["counter"])
    m.orchestration_started("hello")
    m.orchestration_started("made-up-by-a-client")  # a start for a name no worker has
    assert m.registry.get_sample_value("durable_kafka_orchestrations_started_total", {"orchestrator": "hello"}) == 1
    assert m.registry.get_sample_value("durable_kafka_orchestrations_started_total", {"orchestrator": OTHER}) == 1
    m.entity_ops("@counter@k1", 3)
    m.entity_ops("@nobody@k", 1)
    assert m.registry.get_sample_value("durable_kafka_entity_operations_total", {"entity": "counter"}) == 3
    assert m.registry.get_sample_value("durable_kafka_entity_operations_total", {"entity": OTHER}) == 1
    for n in range(MAX_REASONS + 10):
        m.deadletter("orchestrations", f"Error{n}")
    reasons = {s.labels["reason"] for metric in m.registry.collect() if metric.name == "durable_kafka_deadletter_records"
               for s in metric.samples if s.name.endswith("_total")}
    assert len(reasons) == MAX_REASONS + 1 and OTHER in reasons
    assert m.activity("say").executions is m.activity("say").executions  # children are bound once per label


def test_two_workers_in_one_process_have_their_own_registries():
    a, b = EngineMetrics(), EngineMetrics()
    a.orchestration_started("x")
    assert b.registry.get_sample_value("durable_kafka_orchestrations_started_total", {"orchestrator": OTHER}) is None


def test_progress_is_quiet_off_a_terminal(monkeypatch):
    monkeypatch.delenv("DURABLE_KAFKA_PROGRESS", raising=False)
    stream = io.StringIO()
    assert not progress_enabled(stream)
    assert list(Progress.over(range(5), "counting", 5, stream=stream)) == [0, 1, 2, 3, 4]
    assert stream.getvalue() == ""
    monkeypatch.setenv("DURABLE_KAFKA_PROGRESS", "1")  # forced on (a CI log that wants it)
    assert progress_enabled(stream)


def _run_with_stderr_on_a_pty(code: str) -> str:
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "DURABLE_KAFKA_PROGRESS"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(30)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_progress_draws_on_a_terminal():
    code = "from durable_kafka._progress import Progress\nfor _ in Progress.over(range(3), 'counting', 3): pass\n"
    out = _run_with_stderr_on_a_pty(code)
    assert "counting" in out and "3/3" in out
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                           env={k: v for k, v in os.environ.items() if k != "DURABLE_KAFKA_PROGRESS"})
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout == ""
