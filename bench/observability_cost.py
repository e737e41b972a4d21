"""Per-operation CPU cost of the engine's metrics and tracing hooks (no broker needed).

Run::

    .venv/bin/python bench/observability_cost.py [--n 20000]

What the end-to-end A/B (``bench/orchestrations.py --only hello --observability``) cannot
separate on a shared machine: how many CPU microseconds each hook adds, measured with
``time.process_time`` over N calls. The activity path is the real ``ActivityWorker._observed``
wrapper around a trivial function; the tracer is the OpenTelemetry SDK with a
``BatchSpanProcessor`` and an exporter that drops everything (the configuration of the A/B).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone

# bench/ is sys.path[0] when run as a script, and bench/http.py would shadow the standard
# library's http package that prometheus_client needs
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != os.path.dirname(os.path.abspath(__file__))]

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402

from durable_kafka._metrics import EngineMetrics  # noqa: E402
from durable_kafka._tracing import TRACE_TAG, OrchestrationTrace, PendingSpan, Tracing  # noqa: E402
from durable_kafka.connectors.activities import ActivityRegistry, ActivityWorker  # noqa: E402
from durable_kafka.streams.events import ActivityRequest  # noqa: E402

CALLER = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class _Discard(SpanExporter):
    def export(self, spans):  # noqa: ANN001, ANN201 - the SDK's signature
        return SpanExportResult.SUCCESS


class _Message:
    """What the activity worker reads of a consumed record (headers, timestamp)."""

    def headers(self):  # noqa: ANN201
        return [("traceparent", CALLER)]

    def timestamp(self):  # noqa: ANN201
        return (1, int(time.time() * 1000))


def _us(fn, n: int) -> float:  # noqa: ANN001
    began = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - began) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    n = parser.parse_args().n
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=1_000_000))
    tracing = Tracing.create(provider)
    assert tracing is not None
    metrics = EngineMetrics(orchestrators=["hello"], activities=["say"])
    request = ActivityRequest(id="i/e/0", instance_id="i", execution_id="e", task_id=0, name="say")
    worker = ActivityWorker("127.0.0.1:1", "bench", ActivityRegistry())

    def activity() -> None:
        worker._observed(lambda ctx, x: x, request, _Message())(None, 1)

    rows = []
    worker.metrics, worker.tracing = metrics, None
    rows.append(("activity execution, metrics only", _us(activity, n)))
    worker.metrics, worker.tracing = None, tracing
    rows.append(("activity execution, tracing only (one span)", _us(activity, n)))
    worker.metrics, worker.tracing = metrics, tracing
    rows.append(("activity execution, both", _us(activity, n)))
    pm = metrics.processor("orchestrations")
    rows.append(("one transaction's metrics (latency, batch size, commit count)", _us(lambda: pm.transaction(0.01, 10), n)))
    rows.append(("one orchestration counted (start or end)", _us(lambda: metrics.orchestration_started("hello"), n)))
    now = datetime.now(timezone.utc)
    ot = OrchestrationTrace.of("i", "e", {TRACE_TAG: CALLER.decode()})
    span = PendingSpan("orchestration:hello", ot, ot.span_id, ot.parent_span_id, now, now, {"a": "b"})
    rows.append(("orchestration span emitted (derived ids)", _us(lambda: tracing.emit([span]), n)))
    rows.append(("bare SDK span (start + end, the floor)", _us(lambda: tracing.tracer.start_span("x").end(), n)))
    print(f"| hook | CPU µs per call (N = {n:,}) |\n|---|---:|")
    for label, us in rows:
        print(f"| {label} | {us:.1f} |")


if __name__ == "__main__":
    main()
