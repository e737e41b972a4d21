"""Metrics and traces on the real broker: one HelloSequence5 gives one trace of the right shape.

The in-process test reads spans from the SDK's in-memory exporter and the metrics from the
worker's registry (and its HTTP endpoint); the restart test runs the worker in a subprocess that
writes its spans to a file (two processes export parts of one trace), kills it mid-instance and
starts it again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from durable_kafka import Client, OrchestrationStatus, Worker

from netutil import free_ports  # tests/integration is on sys.path
from tracing_app import CITIES, child, counter, hello_sequence5, mixed, say_hello, span_record

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EXPECTED = [f"Hello {c}!" for c in CITIES]


def _wait_for(condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _check_shape(spans: list[dict], caller_trace: str, caller_span: str, min_activities: int = 5) -> dict:
    """One orchestration span under the caller; every activity span under it; one trace."""
    orchestrations = [s for s in spans if s["name"] == "orchestration:hello_sequence5"]
    assert len(orchestrations) == 1, [s["name"] for s in spans]
    orch = orchestrations[0]
    assert orch["trace_id"] == caller_trace and orch["parent_id"] == caller_span
    activities = [s for s in spans if s["name"] == "activity:say_hello"]
    assert len(activities) >= min_activities
    assert {s["trace_id"] for s in spans} == {caller_trace}
    assert {s["parent_id"] for s in activities} == {orch["span_id"]}
    cities = {json.loads(json.dumps(s["attributes"]))["durable_kafka.task_id"] for s in activities}
    assert len(cities) == 5  # each of the five tasks has a span (a re-run after a kill adds one)
    assert orch["start"] <= min(s["start"] for s in activities)
    assert orch["end"] >= max(s["end"] for s in activities)
    return orch


def _metric(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    value = registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


def test_hello_sequence5_one_trace_and_its_metrics(hub, tmp_path):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    port = free_ports(1)[0]
    worker = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "state"), partitions=hub.partitions,
                    tracer_provider=provider, metrics_registry=registry, metrics_port=port,
                    metrics_addr="127.0.0.1")
    worker.add_orchestrator(hello_sequence5)
    worker.add_activity(say_hello)
    caller = provider.get_tracer("test-caller")
    with worker, Client(hub.bootstrap, hub=hub.name) as client:
        with caller.start_as_current_span("caller") as span:  # a traced service calls the client
            iid = client.schedule_new_orchestration(hello_sequence5, instance_id=f"hello-{uuid.uuid4().hex[:8]}")
            ctx = span.get_span_context()
        state = client.wait_for_orchestration_completion(iid, timeout=60)
        assert state.runtime_status == OrchestrationStatus.COMPLETED and state.get_output() == EXPECTED

        def engine_spans():
            spans = [span_record(s) for s in exporter.get_finished_spans() if s.name != "caller"]
            return spans if any(s["name"].startswith("orchestration:") for s in spans) else None

        spans = _wait_for(engine_spans, "the orchestration span")
        _check_shape(spans, f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
        assert len([s for s in spans if s["name"] == "activity:say_hello"]) == 5  # no restart: no re-run

        # the metrics of that one instance
        name = {"orchestrator": "hello_sequence5"}
        assert _metric(registry, "durable_kafka_orchestrations_started_total", name) == 1
        _wait_for(lambda: _metric(registry, "durable_kafka_orchestrations_ended_total",
                                  {**name, "status": "completed"}) == 1, "the ended count")
        assert _metric(registry, "durable_kafka_activity_executions_total", {"activity": "say_hello"}) == 5
        assert _metric(registry, "durable_kafka_activity_failures_total", {"activity": "say_hello"}) == 0
        assert _metric(registry, "durable_kafka_activity_seconds_count", {"activity": "say_hello"}) == 5
        assert _metric(registry, "durable_kafka_activity_queue_wait_seconds_count", {"activity": "say_hello"}) == 5
        committed = {"processor": "orchestrations", "outcome": "committed"}
        assert _metric(registry, "durable_kafka_transactions_total", committed) >= 6  # start + 5 results
        assert _metric(registry, "durable_kafka_batch_records_sum", {"processor": "orchestrations"}) >= 6
        assert _metric(registry, "durable_kafka_restore_seconds_count", {"processor": "orchestrations"}) >= 1
        # a poison record: dead-lettered, counted by its reason
        from confluent_kafka import Producer

        from durable_kafka.streams.config import producer_config

        producer = Producer(producer_config(hub.bootstrap, partitioner="murmur2_random"))
        producer.produce(hub.topics.orchestrator_events, key=b"poison", value=b"not avro at all")
        assert producer.flush(30) == 0
        _wait_for(lambda: _metric(registry, "durable_kafka_deadletter_records_total",
                                  {"processor": "orchestrations", "reason": "CorruptRecordError"}) == 1,
                  "the dead letter's count")
        # the endpoint serves the same registry
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert 'durable_kafka_orchestrations_started_total{orchestrator="hello_sequence5"} 1.0' in text
        assert "durable_kafka_consumer_lag_records" in text


def test_no_tracer_no_metrics_by_default(hub, tmp_path):
    """Off by default: no registry, no tracer; the instance runs as before."""
    worker = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "state"), partitions=hub.partitions)
    worker.add_orchestrator(hello_sequence5)
    worker.add_activity(say_hello)
    with worker, Client(hub.bootstrap, hub=hub.name) as client:
        assert worker.metrics is None and worker._tracing is None
        iid = client.schedule_new_orchestration(hello_sequence5)
        state = client.wait_for_orchestration_completion(iid, timeout=60)
        assert state.get_output() == EXPECTED


def _spawn(hub, state: Path, spans: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": hub.bootstrap, "DK_TRACE_HUB": hub.name,
           "DK_TRACE_STATE": str(state), "DK_TRACE_FILE": str(spans), "DK_TRACE_PARTITIONS": str(hub.partitions),
           "DK_TRACE_ACTIVITY_SLEEP": "0.4", "PYTHONPATH": str(ROOT / "tests" / "integration")}
    proc = subprocess.Popen([sys.executable, "-m", "durable_kafka", "worker", "tracing_app:make_worker", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "running" in line:
            return proc
    raise AssertionError(f"worker did not start: {''.join(seen)}")


def _read_spans(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_one_trace_across_a_worker_restart(hub, tmp_path):
    """kill -9 after two activities; the restarted worker finishes: still one trace, one orchestration span."""
    spans_file = tmp_path / "spans.jsonl"
    state = tmp_path / "state"
    worker = _spawn(hub, state, spans_file)
    caller = TracerProvider().get_tracer("test-caller")
    try:
        with Client(hub.bootstrap, hub=hub.name) as client:
            with caller.start_as_current_span("caller") as span:
                iid = client.schedule_new_orchestration("hello_sequence5", instance_id=f"hello-{uuid.uuid4().hex[:8]}")
                ctx = span.get_span_context()
            _wait_for(lambda: len([s for s in _read_spans(spans_file) if s["name"] == "activity:say_hello"]) >= 2,
                      "two activity spans before the kill", 60)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            first = _read_spans(spans_file)
            assert not any(s["name"].startswith("orchestration:") for s in first), "finished before the kill"
            port = free_ports(1)[0]
            worker = _spawn(hub, state, spans_file, "--metrics-port", str(port), "--metrics-addr", "127.0.0.1")
            state_ = client.wait_for_orchestration_completion(iid, timeout=120)
            assert state_.runtime_status == OrchestrationStatus.COMPLETED and state_.get_output() == EXPECTED
            spans = _wait_for(lambda: (lambda s: s if any(x["name"].startswith("orchestration:") for x in s)
                                       else None)(_read_spans(spans_file)), "the orchestration span")
            # the CLI's --metrics-port: the restarted worker counts the end (not the start: before it)
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            assert ('durable_kafka_orchestrations_ended_total{orchestrator="hello_sequence5",status="completed"} 1.0'
                    in text)
            assert 'durable_kafka_restore_records_total{processor="orchestrations"}' in text
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    _check_shape(spans, f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
    assert len({s["pid"] for s in spans}) == 2  # both processes exported parts of the one trace


CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def _traced_worker(hub, tmp_path, **kwargs) -> tuple[Worker, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    worker = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "state"), partitions=hub.partitions,
                    tracer_provider=provider, **kwargs)
    worker.add_orchestrator(hello_sequence5)
    worker.add_activity(say_hello)
    return worker, exporter


def _orchestration_trace(exporter: InMemorySpanExporter, instance_id: str) -> list[dict]:
    def spans():
        found = [span_record(s) for s in exporter.get_finished_spans()]
        orch = [s for s in found if s["name"].startswith("orchestration:")
                and s["attributes"].get("durable_kafka.instance_id") == instance_id]
        return found if orch else None

    return _wait_for(spans, f"the span of {instance_id}")


def test_a_trigger_record_with_traceparent_continues_its_trace(hub, tmp_path):
    """A source record's ``traceparent`` header: the started orchestration joins that trace."""
    from confluent_kafka import Producer

    from durable_kafka import triggers
    from durable_kafka.streams.config import producer_config

    topic = f"{hub}-greetings"
    worker, exporter = _traced_worker(hub, tmp_path)
    worker.add_trigger(triggers.Start(topic, "hello_sequence5", instance_id="greet-{key}"), create_missing=True)
    with worker, Client(hub.bootstrap, hub=hub.name) as client:
        producer = Producer(producer_config(hub.bootstrap))
        producer.produce(topic, key=b"1", value=b"{}", headers=[("traceparent", CALLER.encode())])
        assert producer.flush(30) == 0
        state = _wait_for(lambda: client.get_orchestration_state("greet-1"), "the started instance", 60)
        state = client.wait_for_orchestration_completion(state.instance_id, timeout=60)
        assert state.get_output() == EXPECTED
        _check_shape(_orchestration_trace(exporter, "greet-1"), CALLER_TRACE, CALLER_SPAN)


def test_an_http_request_with_traceparent_continues_its_trace_and_metrics_are_served(hub, tmp_path):
    """The management API: the request's ``traceparent`` reaches the engine; ``GET /metrics`` answers."""
    from starlette.testclient import TestClient

    from durable_kafka._client_async import AsyncClient
    from durable_kafka.http import create_app

    worker, exporter = _traced_worker(hub, tmp_path)
    with worker, Client(hub.bootstrap, hub=hub.name) as client:
        app = create_app(AsyncClient(hub.bootstrap, hub=hub.name), close_client=True)
        with TestClient(app) as http:
            response = http.post("/runtime/webhooks/durabletask/orchestrators/hello_sequence5/http-1",
                                 headers={"traceparent": CALLER})
            assert response.status_code == 202, response.text
            state = client.wait_for_orchestration_completion("http-1", timeout=60)
            assert state.get_output() == EXPECTED
            _check_shape(_orchestration_trace(exporter, "http-1"), CALLER_TRACE, CALLER_SPAN)
            metrics = http.get("/metrics")
            assert metrics.status_code == 200
            assert ('durable_kafka_http_requests_total{method="POST",route="/runtime/webhooks/durabletask/'
                    'orchestrators/{name}/{instance_id}",status="2xx"} 1.0') in metrics.text
            assert "process_cpu_seconds_total" in metrics.text


def test_timer_sub_orchestration_and_entity_call_are_children_of_the_orchestration(hub, tmp_path):
    registry = CollectorRegistry()
    worker, exporter = _traced_worker(hub, tmp_path, metrics_registry=registry)
    worker.add_orchestrator(mixed)
    worker.add_orchestrator(child)
    worker.add_entity(counter)
    caller = TracerProvider().get_tracer("test-caller")
    with worker, Client(hub.bootstrap, hub=hub.name) as client:
        with caller.start_as_current_span("caller") as span:
            iid = client.schedule_new_orchestration(mixed, instance_id=f"mixed-{uuid.uuid4().hex[:8]}")
            ctx = span.get_span_context()
        state = client.wait_for_orchestration_completion(iid, timeout=60)
        assert state.get_output() == ["Hello Oslo!", 2, "Hello Lima!"]
        spans = _orchestration_trace(exporter, iid)
        spans = _wait_for(lambda: [span_record(s) for s in exporter.get_finished_spans()]
                          if len(exporter.get_finished_spans()) >= 6 else None, "six spans")
    by_name = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)
    assert sorted(by_name) == ["activity:say_hello", "entity:counter.add", "orchestration:child",
                               "orchestration:mixed", "timer"], sorted(by_name)
    root = by_name["orchestration:mixed"][0]
    assert root["parent_id"] == f"{ctx.span_id:016x}"
    assert {s["trace_id"] for s in spans} == {f"{ctx.trace_id:032x}"}
    sub = by_name["orchestration:child"][0]
    for name in ("timer", "entity:counter.add", "orchestration:child"):
        assert [s["parent_id"] for s in by_name[name]] == [root["span_id"]], name
    parents = sorted(s["parent_id"] for s in by_name["activity:say_hello"])
    assert parents == sorted([root["span_id"], sub["span_id"]])  # Lima under mixed, Oslo under the child
    timer = by_name["timer"][0]
    assert timer["end"] - timer["start"] >= 300_000_000  # from its creation to its firing
    # the metrics of the same run: the entity operation, the timer's lateness, the sub-orchestration
    assert _metric(registry, "durable_kafka_entity_operations_total", {"entity": "counter"}) == 1
    assert _metric(registry, "durable_kafka_timer_lateness_seconds_count") == 1
    assert registry.get_sample_value("durable_kafka_timers_pending") is not None
    assert _metric(registry, "durable_kafka_orchestrations_started_total", {"orchestrator": "child"}) == 1
    assert _metric(registry, "durable_kafka_transactions_total",
                   {"processor": "entities", "outcome": "committed"}) >= 1
