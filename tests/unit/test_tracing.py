"""The trace context rules of durable_kafka._tracing: parsing, derived ids, emission with them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
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


# ---------------------------------------------------------------------- the shortcut past the live span
def _pair(sampler=None):
    """Two tracings on providers of their own: one with the shortcut, one made to take the public path."""
    out = []
    for shortcut in (True, False):
        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracing = Tracing.create(provider)
        assert tracing is not None and tracing._fast() is not None  # exact for the SDK's simple processor
        if not shortcut:
            tracing._shortcut = None
        out.append((tracing, exporter))
    return out


def _fields(span, ids: bool = True) -> dict:
    """Everything an exporter reads of a finished span (span ids and times only with ``ids``)."""
    ctx, parent = span.get_span_context(), span.parent
    out = {
        "name": span.name, "kind": span.kind, "trace_id": ctx.trace_id, "flags": int(ctx.trace_flags),
        "trace_state": ctx.trace_state, "remote": ctx.is_remote, "parent": parent,
        "attributes": dict(span.attributes), "dropped": (span.dropped_attributes, span.dropped_events, span.dropped_links),
        "events": [(e.name, {k: v for k, v in e.attributes.items() if k != "exception.stacktrace"}) for e in span.events],
        "links": list(span.links), "status": (span.status.status_code, span.status.description),
        "resource": span.resource, "scope": span.instrumentation_scope,
    }
    if ids:
        out.update(span_id=ctx.span_id, start=span.start_time, end=span.end_time)
    elif parent is not None and not parent.is_remote:  # a random id (the activity span's), on either path
        out["parent"] = (parent.trace_id, int(parent.trace_flags))
    return out


class _Tagging:
    """A sampler of one's own: samples even trace ids (the caller's), adds an attribute and a trace state entry."""

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
        from opentelemetry.sdk.trace.sampling import Decision, SamplingResult
        from opentelemetry.trace import TraceState

        decision = Decision.RECORD_AND_SAMPLE if trace_id % 2 == 0 else Decision.RECORD_ONLY
        return SamplingResult(decision, {**(attributes or {}), "sampled.by": "me"}, TraceState([("me", "1")]))

    def get_description(self):
        return "tagging"


SAMPLERS = ["default", "always_on", "ratio", "tagging"]


def _sampler(name):
    from opentelemetry.sdk.trace import sampling

    return {"default": None, "always_on": sampling.ALWAYS_ON, "tagging": _Tagging(),
            "ratio": sampling.ParentBased(sampling.TraceIdRatioBased(0.5))}[name]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_recorded_spans_take_the_shortcut_with_the_same_fields(sampler):
    ot = OrchestrationTrace.of("i", "e", {TRACE_TAG: CALLER})
    rooted = OrchestrationTrace.of("j", "e", {})
    unsampled = OrchestrationTrace.of("k", "e", {TRACE_TAG: CALLER[:-2] + "00"})
    spans = [
        PendingSpan("orchestration:n", ot, ot.span_id, ot.parent_span_id, NOW, NOW + timedelta(seconds=2),
                    {"durable_kafka.instance_id": "i", "durable_kafka.runtime_status": "completed"}),
        PendingSpan("timer", ot, 12345, ot.span_id, NOW, NOW + timedelta(seconds=1), {"durable_kafka.timer_id": 3},
                    error="boom"),
        PendingSpan("orchestration:root", rooted, rooted.span_id, None, NOW, NOW - timedelta(seconds=1), {}),
        PendingSpan("orchestration:unsampled", unsampled, unsampled.span_id, unsampled.parent_span_id, NOW, NOW, {}),
    ]
    (fast, fast_out), (public, public_out) = _pair(_sampler(sampler))
    fast.emit(spans)
    public.emit(spans)
    got, expected = fast_out.get_finished_spans(), public_out.get_finished_spans()
    if sampler == "default":
        assert len(expected) == 3  # the unsampled caller's span is not recorded, on either path
    assert [_fields(s) for s in got] == [_fields(s) for s in expected]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_activity_spans_take_the_shortcut_and_keep_what_the_activity_does_to_them(sampler):
    from opentelemetry import trace

    header = [("traceparent", OrchestrationTrace.of("i", "e", {TRACE_TAG: CALLER}).traceparent().encode())]

    def plain(ctx, x):
        return x

    def annotated(ctx, x):
        span = trace.get_current_span()
        assert span.is_recording()
        span.set_attribute("mine", 7)
        span.add_event("looked", {"where": "cache"})
        return x

    user: list = []

    def nested(ctx, x):
        with user[0].start_as_current_span("inner"):
            return x

    def failing(ctx, x):
        raise ValueError("no")

    results = []
    for tracing, exporter in _pair(_sampler(sampler)):
        user[:] = [tracing.tracer]
        cases = [(plain, header), (annotated, header), (nested, header), (failing, header),
                 (plain, [("traceparent", CALLER[:-2].encode() + b"00")])]
        if sampler == "default":  # a root: a random trace id, which samplers by trace id decide by
            cases.insert(4, (plain, None))
        for fn, headers in cases:
            run = tracing.activity_wrapper(fn, "say", headers, {"durable_kafka.instance_id": "i",
                                                                 "durable_kafka.task_id": 1}, False)
            try:
                run(None, 1)
            except ValueError:
                pass
        results.append([_fields(s, ids=False) for s in exporter.get_finished_spans()])
        results.append(exporter.get_finished_spans())
    got_fields, got, expected_fields, expected = results
    for fields in got_fields + expected_fields:  # the rooted one: a random trace id on either path
        if fields["parent"] is None:
            fields.pop("trace_id")
    assert got_fields == expected_fields
    if sampler != "default":
        return
    # plain, annotated, nested (the user's span, then the activity's), failing, rooted; unsampled: none
    assert [s.name for s in expected] == ["activity:say"] * 2 + ["inner"] + ["activity:say"] * 3
    annotated_span, inner, nesting, failed = got[1], got[2], got[3], got[4]
    assert inner.parent.span_id == nesting.context.span_id
    assert annotated_span.attributes["mine"] == 7 and [e.name for e in annotated_span.events] == ["looked"]
    assert failed.status.status_code == trace.StatusCode.ERROR and failed.events[0].name == "exception"
    assert all(s.end_time >= s.start_time for s in got)


def test_activity_children_name_the_lazy_span_as_parent():
    from opentelemetry import trace

    (tracing, exporter), _ = _pair()
    user = tracing.tracer  # any tracer of the same provider

    def nested(ctx, x):
        with user.start_as_current_span("inner"):
            return x

    tracing.activity_wrapper(nested, "say", None, {}, False)(None, 1)
    inner, activity = exporter.get_finished_spans()
    assert inner.parent.span_id == activity.context.span_id and inner.context.trace_id == activity.context.trace_id
    assert activity.kind == trace.SpanKind.CONSUMER and activity.parent is None


def test_a_processor_that_acts_on_start_gets_live_spans():
    from opentelemetry.sdk.trace import SpanProcessor

    class Stamp(SpanProcessor):
        def on_start(self, span, parent_context=None):
            span.set_attribute("stamped", True)

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing.create(provider)
    assert tracing is not None and tracing._fast() is not None
    provider.add_span_processor(Stamp())  # added after the start: checked again at every use
    assert tracing._fast() is None
    ot = OrchestrationTrace.of("i", "e", {TRACE_TAG: CALLER})
    tracing.emit([PendingSpan("orchestration:n", ot, ot.span_id, ot.parent_span_id, NOW, NOW, {})])
    tracing.activity_wrapper(lambda ctx, x: x, "say", None, {}, False)(None, 1)
    assert [s.attributes.get("stamped") for s in exporter.get_finished_spans()] == [True, True]


def test_an_async_activity_gets_the_same_lazy_span_and_a_change_after_the_end_is_ignored():
    import asyncio

    from opentelemetry import trace

    (tracing, exporter), _ = _pair()
    kept = []

    async def activity(ctx, x):
        span = trace.get_current_span()
        kept.append(span)
        await asyncio.sleep(0)
        return x

    assert asyncio.run(tracing.activity_wrapper(activity, "say", None, {"durable_kafka.task_id": 2}, True)(None, 1)) == 1
    (span,) = exporter.get_finished_spans()
    assert span.name == "activity:say" and span.context.span_id == kept[0].get_span_context().span_id
    assert not kept[0].is_recording()
    kept[0].set_attribute("late", 1)  # ignored, as on an ended SDK span
    assert len(exporter.get_finished_spans()) == 1 and "late" not in exporter.get_finished_spans()[0].attributes


def test_a_samplers_attributes_and_trace_state_reach_the_shortcuts_spans():
    (tracing, exporter), _ = _pair(_Tagging())
    ot = OrchestrationTrace.of("i", "e", {TRACE_TAG: CALLER})
    tracing.emit([PendingSpan("orchestration:n", ot, ot.span_id, ot.parent_span_id, NOW, NOW, {"a": 1})])
    header = [("traceparent", ot.traceparent().encode())]
    tracing.activity_wrapper(lambda ctx, x: x, "say", header, {"b": 2}, False)(None, 1)
    orch, activity = exporter.get_finished_spans()
    assert dict(orch.attributes) == {"a": 1, "sampled.by": "me"} and dict(activity.attributes) == {"b": 2, "sampled.by": "me"}
    assert orch.context.trace_state.get("me") == activity.context.trace_state.get("me") == "1"
