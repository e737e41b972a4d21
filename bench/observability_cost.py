"""Per-operation CPU cost of the engine's metrics and tracing hooks (no broker needed).

Run::

    .venv/bin/python bench/observability_cost.py [--n 5000] [--rounds 7] [--baseline-ref main]

What the end-to-end A/B (``bench/orchestrations.py --only hello --observability``) cannot
separate on a shared machine: how many CPU microseconds each hook adds, measured with
``time.process_time`` over N calls (the span processor's export thread included). Every row runs
once per round, the rows interleaved, and the median round is reported, so a load spike on a
shared machine moves every row alike. The activity rows are the real ``ActivityWorker._observed``
wrapper around a trivial function; the tracer is the OpenTelemetry SDK with a
``BatchSpanProcessor`` and an exporter that drops everything (the configuration of the A/B).
The "public path" rows are the same hooks with the engine's shortcut past the SDK's live span
turned off (``Tracing._shortcut = None``, what a provider with other span processors gets), and
the SDK rows are the floor of that public path: a span started and ended, nothing else.
``--baseline-ref REF`` adds the two span hooks of ``durable_kafka/_tracing.py`` as it is at the
git revision REF (loaded from ``git show``), so a change is measured against its base in one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any
from datetime import datetime, timedelta, timezone

# bench/ is sys.path[0] when run as a script, and bench/http.py would shadow the standard
# library's http package that prometheus_client needs
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != os.path.dirname(os.path.abspath(__file__))]

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402

from durable_kafka._metrics import EngineMetrics  # noqa: E402
from durable_kafka._tracing import TRACE_TAG, OrchestrationTrace, PendingSpan, Tracing, tag_outgoing  # noqa: E402
from durable_kafka.connectors.activities import ActivityRegistry, ActivityWorker  # noqa: E402
from durable_kafka.processors.instance import Produce  # noqa: E402
from durable_kafka.streams.events import ActivityRequest, InstanceHeader  # noqa: E402

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ORCHESTRATION = OrchestrationTrace.of("i", "e", {TRACE_TAG: CALLER})


class _Discard(SpanExporter):
    def export(self, spans):  # noqa: ANN001, ANN201 - the SDK's signature
        return SpanExportResult.SUCCESS


class _Message:
    """What the activity worker reads of a consumed record (headers, timestamp)."""

    HEADERS = [("traceparent", ORCHESTRATION.traceparent().encode())]

    def headers(self):  # noqa: ANN201
        return list(self.HEADERS)  # confluent-kafka builds the list at every call

    def timestamp(self):  # noqa: ANN201
        return (1, int(time.time() * 1000))


def _tracing() -> Tracing:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=1_000_000))
    tracing = Tracing.create(provider)
    assert tracing is not None
    return tracing


def _tracing_at(ref: str) -> object:
    """``durable_kafka/_tracing.py`` as it is at git revision ``ref``, as a module of its own."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = subprocess.run(["git", "show", f"{ref}:durable_kafka/_tracing.py"], cwd=root, check=True,
                            capture_output=True, text=True).stdout
    path = os.path.join(tempfile.mkdtemp(prefix="tracing-at-"), "_tracing_baseline.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("_tracing_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_tracing_baseline"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def baseline_rows(ref: str) -> dict[str, tuple[str, Callable[[], object]]]:
    """The activity span and the orchestration span, by this tree's module and by ``ref``'s."""
    out: dict[str, tuple[str, Callable[[], object]]] = {}
    import durable_kafka._tracing as current

    for tag, module in (("this tree", current), (ref, _tracing_at(ref))):
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=1_000_000))
        tracing: Any = module.Tracing.create(provider)  # type: ignore[attr-defined]
        ot = module.OrchestrationTrace.of("i", "e", {module.TRACE_TAG: CALLER})  # type: ignore[attr-defined]
        now = datetime.now(timezone.utc)
        span = module.PendingSpan("orchestration:hello", ot, ot.span_id, ot.parent_span_id,  # type: ignore[attr-defined]
                                  now - timedelta(seconds=1), now, {"durable_kafka.instance_id": "i",
                                  "durable_kafka.execution_id": "e", "durable_kafka.runtime_status": "completed"})

        def activity(tracing: Any = tracing) -> object:
            return tracing.activity_wrapper(lambda ctx, x: x, "say", _Message.HEADERS, {
                "durable_kafka.instance_id": "i", "durable_kafka.task_id": 0}, False)(None, 1)

        out[f"activity span, {tag}"] = (f"activity span (activity_wrapper), {tag}", activity)
        out[f"orchestration span, {tag}"] = (f"orchestration span emitted, {tag}",
                                             lambda tracing=tracing, span=span: tracing.emit([span]))
    return out


def rows() -> dict[str, tuple[str, Callable[[], object]]]:
    tracing, public = _tracing(), _tracing()
    public._shortcut = None  # the SDK's live spans: what other span processors get
    metrics = EngineMetrics(orchestrators=["hello"], activities=["say"])
    request = ActivityRequest(id="i/e/0", instance_id="i", execution_id="e", task_id=0, name="say")
    message = _Message()

    def activity(m: EngineMetrics | None, t: Tracing | None, msg: object = message) -> Callable[[], object]:
        worker = ActivityWorker("127.0.0.1:1", "bench", ActivityRegistry())
        worker.metrics, worker.tracing = m, t
        return lambda: worker._observed(lambda ctx, x: x, request, msg, False)(None, 1)  # type: ignore[arg-type]

    unsampled = _Message()
    unsampled.HEADERS = [("traceparent", OrchestrationTrace.of("i", "e", {TRACE_TAG: CALLER[:-2] + "00"})
                          .traceparent().encode())]

    pm = metrics.processor("orchestrations")
    now = datetime.now(timezone.utc)
    ot = ORCHESTRATION
    span = PendingSpan("orchestration:hello", ot, ot.span_id, ot.parent_span_id, now - timedelta(seconds=1), now,
                       {"durable_kafka.instance_id": "i", "durable_kafka.execution_id": "e",
                        "durable_kafka.runtime_status": "completed"})
    parent = trace.set_span_in_context(trace.NonRecordingSpan(trace.SpanContext(
        ot.trace_id, ot.span_id, is_remote=True, trace_flags=trace.TraceFlags(1))))
    header = InstanceHeader(instance_id="i", name="hello", execution_id="e", runtime_status="RUNNING",
                            created_at=now, last_updated_at=now, tags={TRACE_TAG: CALLER})
    sdk = public.tracer
    start, end = int(span.start.timestamp() * 1e9), int(span.end.timestamp() * 1e9)

    def sdk_activity_floor() -> None:
        sdk.start_span("activity:say", context=parent, kind=trace.SpanKind.CONSUMER,
                       attributes={"durable_kafka.instance_id": "i", "durable_kafka.task_id": 0}).end()

    def sdk_orchestration_floor() -> None:
        sdk.start_span(span.name, context=parent, kind=trace.SpanKind.SERVER, attributes=span.attributes,
                       start_time=start).end(end_time=end)

    def step_context() -> None:
        tag_outgoing([Produce("t.activity-requests", "i", request)], "i", header)

    return {  # key: (label, one call)
        "bare": ("activity execution, nothing on (the bare call, for reference)", activity(None, None)),
        "a_metrics": ("activity execution, metrics only (count, duration, queue wait)", activity(metrics, None)),
        "a_tracing": ("activity execution, tracing only (one span)", activity(None, tracing)),
        "a_both": ("activity execution, both", activity(metrics, tracing)),
        "a_public": ("activity execution, tracing only, public path (the SDK's live span)", activity(None, public)),
        "a_unsampled": ("activity execution, tracing only, caller not sampled (no span recorded)",
                        activity(None, tracing, unsampled)),
        "txn": ("one transaction's metrics (latency, batch size, commit count)", lambda: pm.transaction(0.01, 10)),
        "count": ("one orchestration counted (start or end)", lambda: metrics.orchestration_started("hello")),
        "step": ("a step's trace context on its activity request", step_context),
        "o_span": ("orchestration span emitted (derived ids, recorded times)", lambda: tracing.emit([span])),
        "o_public": ("orchestration span emitted, public path (start_span + end)", lambda: public.emit([span])),
        "sdk": ("SDK floor: bare span (start + end)", lambda: sdk.start_span("x").end()),
        "sdk_a": ("SDK floor: the activity span's start + end (parent, kind, 2 attributes)", sdk_activity_floor),
        "sdk_o": ("SDK floor: the orchestration span's start + end (3 attributes, times)", sdk_orchestration_floor),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="calls per row and round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (the rows interleaved; the median is reported)")
    parser.add_argument("--baseline-ref", metavar="REF", help="also time the span hooks of durable_kafka/_tracing.py "
                        "at this git revision")
    args = parser.parse_args()
    table = rows()
    if args.baseline_ref:
        table.update(baseline_rows(args.baseline_ref))
    seen: dict[str, list[float]] = {key: [] for key in table}
    for _ in range(args.rounds):
        for key, (_label, fn) in table.items():
            began = time.process_time()
            for _ in range(args.n):
                fn()
            seen[key].append((time.process_time() - began) / args.n * 1e6)
    us = {key: statistics.median(v) for key, v in seen.items()}
    print(f"| hook | CPU µs per call (median of {args.rounds} rounds of {args.n:,}) |\n|---|---:|")
    for key, (label, _fn) in table.items():
        print(f"| {label} | {us[key]:.1f} |")

    # one HelloSequence5: 5 activities, 6 steps (each sending with the orchestration's context),
    # the orchestration span, 2 counts, and about one transaction's metrics (batches of a few instances)
    def net(key: str) -> float:
        return us[key] - us["bare"]

    tracing = 5 * net("a_tracing") + us["o_span"] + 6 * us["step"]
    public = 5 * net("a_public") + us["o_public"] + 6 * us["step"]
    floor = 5 * us["sdk_a"] + us["sdk_o"]
    metrics = 5 * net("a_metrics") + 2 * us["count"] + us["txn"]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nPer HelloSequence5: tracing {tracing:.0f} µs (public path {public:.0f} µs, its SDK floor "
          f"{floor:.0f} µs), metrics {metrics:.0f} µs. Load average at the end: {load}.")


if __name__ == "__main__":
    main()
