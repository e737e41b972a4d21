"""HelloSequence5 on a worker whose spans go to a JSON-lines file (the tracing tests' subprocess).

Configured from the environment: DK_TRACE_HUB, DK_TRACE_STATE, DK_TRACE_FILE, DK_TRACE_PARTITIONS,
DK_TRACE_ACTIVITY_SLEEP (seconds each activity takes, so a kill lands mid-instance).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from durable_kafka import Worker

CITIES = ("Tokyo", "Seattle", "London", "Amsterdam", "Tampa")


def say_hello(ctx, name):
    time.sleep(float(os.environ.get("DK_TRACE_ACTIVITY_SLEEP", "0")))
    return f"Hello {name}!"


def hello_sequence5(ctx, _input):
    results = []
    for city in CITIES:
        results.append((yield ctx.call_activity(say_hello, input=city)))
    return results


def counter(ctx, amount):
    """An entity: adds to its state, returns the sum."""
    total = ctx.get_state(int, 0) + amount
    ctx.set_state(total)
    return total


def child(ctx, name):
    return (yield ctx.call_activity(say_hello, input=name))


def mixed(ctx, _input):
    """One of each child kind: a timer, a sub-orchestration, an entity call, an activity."""
    from datetime import timedelta

    from durable_kafka.entities import EntityInstanceId

    yield ctx.create_timer(timedelta(milliseconds=300))
    greeting = yield ctx.call_sub_orchestrator(child, input="Oslo", instance_id=f"{ctx.instance_id}-child")
    total = yield ctx.call_entity(EntityInstanceId("counter", ctx.instance_id), "add", 2)
    return [greeting, total, (yield ctx.call_activity(say_hello, input="Lima"))]


def span_record(span: ReadableSpan) -> dict:
    """What the tests compare: names, ids, parent, times (one JSON object per span)."""
    ctx = span.get_span_context()
    return {"name": span.name, "trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}",
            "parent_id": f"{span.parent.span_id:016x}" if span.parent is not None else None,
            "start": span.start_time, "end": span.end_time, "pid": os.getpid(),
            "attributes": dict(span.attributes or {})}


class FileExporter(SpanExporter):
    """Appends each span as one JSON line (O_APPEND: two processes can share the file)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(s)) + "\n" for s in spans)
        with self.lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(lines)
            f.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def make_worker() -> Worker:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(os.environ["DK_TRACE_FILE"])))
    w = Worker(os.environ["DURABLE_KAFKA_BOOTSTRAP"], hub=os.environ["DK_TRACE_HUB"],
               state_dir=os.environ["DK_TRACE_STATE"], partitions=int(os.environ["DK_TRACE_PARTITIONS"]),
               tracer_provider=provider)
    w.add_orchestrator(hello_sequence5)
    w.add_activity(say_hello)
    return w
