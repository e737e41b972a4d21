"""The trace context rules of durable_kafka._tracing: parsing, derived ids, emission with them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from durable_kafka._tracing import (
    TRACE_TAG,
    OrchestrationTrace,
    PendingSpan,
    Tracing,
    adopt_caller,
    parse_traceparent,
    tag_outgoing,
)
from durable_kafka.processors.instance import Produce, status_of
from durable_kafka.streams import events as ev

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_parse_traceparent_takes_valid_w3c_values_only():
    assert parse_traceparent(CALLER) == (0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, 1)
    assert parse_traceparent(CALLER.encode()) == parse_traceparent(CALLER)
    for bad in (None, "", "garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01", "ff-" + CALLER[3:],
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", "00-zz" + CALLER[5:]):
        assert parse_traceparent(bad) is None, bad


def test_orchestration_trace_is_derived_and_follows_the_caller():
    a = OrchestrationTrace.of("i", "e1", {TRACE_TAG: CALLER})
    assert a == OrchestrationTrace.of("i", "e1", {TRACE_TAG: CALLER})  # any worker, any restart: same ids
    assert a.trace_id == 0x4bf92f3577b34da6a3ce929d0e0e4736 and a.parent_span_id == 0x00f067aa0ba902b7
    assert OrchestrationTrace.of("i", "e2", {TRACE_TAG: CALLER}).span_id != a.span_id  # per execution
    root = OrchestrationTrace.of("i", "e1", {})
    assert root.parent_span_id is None and root == OrchestrationTrace.of("i", "e1", None)
    assert root.trace_id != a.trace_id and root.span_id == a.span_id
    assert parse_traceparent(a.traceparent()) == (a.trace_id, a.span_id, 1)


@dataclass
class _Raw:
    value: list

    def headers(self):
        return self.value


def test_a_start_command_keeps_its_callers_context_as_a_tag():
    start = ev.OrchestratorMessage(id="m", instance_id="i", sent_at=NOW,
                                   body=ev.StartOrchestration(name="n", execution_id="e", tags={"a": "b"}))
    other = ev.OrchestratorMessage(id="m2", instance_id="i", sent_at=NOW, body=ev.RaiseEvent(name="x"))
    adopt_caller([start, other], [_Raw([("traceparent", CALLER.encode())]), _Raw([("traceparent", b"x")])])
    assert start.body.tags == {"a": "b", TRACE_TAG: CALLER}
    bad = ev.OrchestratorMessage(id="m3", instance_id="j", sent_at=NOW,
                                 body=ev.StartOrchestration(name="n", execution_id="e"))
    adopt_caller([bad], [_Raw([("traceparent", b"not-a-context")])])
    assert bad.body.tags == {}


def test_what_a_step_sends_carries_the_orchestration_span():
    header = ev.InstanceHeader(instance_id="i", name="n", execution_id="e", runtime_status="RUNNING",
                               created_at=NOW, last_updated_at=NOW, tags={TRACE_TAG: CALLER})
    request = Produce("t.activity-requests", "i", ev.ActivityRequest(id="i/e/0", instance_id="i", execution_id="e",
                                                                     task_id=0, name="a"))
    history = Produce("t.history", "i", None)
    child = Produce("t.orchestrator-events", "c", ev.OrchestratorMessage(
        id="m", instance_id="c", sent_at=NOW, body=ev.StartOrchestration(name="c", execution_id="x",
                                                                          parent_instance_id="i")))
    tag_outgoing([request, history, child], "i", header)
    expected = [("traceparent", OrchestrationTrace.of("i", "e", header.tags).traceparent().encode())]
    assert request.headers == expected and child.headers == expected and history.headers is None


def test_status_hides_the_engines_tag():
    header = ev.InstanceHeader(instance_id="i", name="n", execution_id="e", runtime_status="RUNNING",
                               created_at=NOW, last_updated_at=NOW, tags={TRACE_TAG: CALLER, "team": "x"})
    assert status_of(header).tags == {"team": "x"}


def test_emitted_spans_take_the_derived_ids_and_recorded_times():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing.create(provider)
    assert tracing is not None
    ot = OrchestrationTrace.of("i", "e", {TRACE_TAG: CALLER})
    rooted = OrchestrationTrace.of("j", "e", {})
    tracing.emit([
        PendingSpan("orchestration:n", ot, ot.span_id, ot.parent_span_id, NOW, NOW + timedelta(seconds=2), {}),
        PendingSpan("timer", ot, 12345, ot.span_id, NOW, NOW + timedelta(seconds=1), {}, error="boom"),
        PendingSpan("orchestration:root", rooted, rooted.span_id, None, NOW, NOW, {}),
    ])
    orch, timer, root = exporter.get_finished_spans()
    assert (orch.context.trace_id, orch.context.span_id, orch.parent.span_id) == (ot.trace_id, ot.span_id,
                                                                                  ot.parent_span_id)
    assert orch.end_time - orch.start_time == 2_000_000_000
    assert timer.parent.span_id == ot.span_id and timer.context.span_id == 12345
    assert timer.status.description == "boom"
    assert root.parent is None and (root.context.trace_id, root.context.span_id) == (rooted.trace_id, rooted.span_id)
    # ids not forced are random again (a user's own spans on the same tracer are unaffected)
    with tracing.tracer.start_as_current_span("mine") as mine:
        assert mine.get_span_context().span_id not in (ot.span_id, 12345, rooted.span_id)


def test_tracing_is_off_without_a_configured_provider():
    assert Tracing.create() is None  # the API's default provider: no tracer, every hook skipped
