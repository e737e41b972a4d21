"""The orchestrations and activities the benchmark runs on durable-kafka, and its worker factory.

The worker runs in its own process (``python -m durable_kafka worker _ours_app:make_worker``
with ``bench/`` as the working directory), configured from the environment by the driver in
``orchestrations.py``. The Temporal peer runs the same workloads (``_temporal_peer.py``).
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

from durable_kafka import Worker, task

# bench/http.py (the HTTP benchmark) shadows the standard library's `http` package for a worker
# started in bench/; the metrics endpoint (prometheus_client) needs the real one: load it first
_BENCH = os.path.dirname(os.path.abspath(__file__))
_saved_path = list(sys.path)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _BENCH]
try:
    import http.client  # noqa: E402,F401
    import http.server  # noqa: E402,F401
finally:
    sys.path[:] = _saved_path

#: The five inputs of Netherite's HelloSequence5 (an orchestration calling SayHello five times).
CITIES = ("Tokyo", "Seattle", "London", "Amsterdam", "Tampa")


# Activities are ``async def`` (run on the worker's activity event loop): trivial, non-blocking
# work, written the same way in the Temporal peer.
async def say_hello(ctx: task.ActivityContext, name: str) -> str:
    return f"Hello {name}!"


async def square(ctx: task.ActivityContext, n: int) -> int:
    return n * n


def hello_sequence5(ctx, _input):
    results = []
    for city in CITIES:
        results.append((yield ctx.call_activity(say_hello, input=city)))
    return results


def fan_out_fan_in(ctx, count: int):
    results = yield task.when_all([ctx.call_activity(square, input=i) for i in range(count)])
    return sum(results)


def timer_wait(ctx, seconds: float):
    yield ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=seconds))
    return "fired"


def expected_hello() -> list[str]:
    return [f"Hello {city}!" for city in CITIES]


def _noop_exporting_provider():
    """An SDK tracer provider whose spans are recorded, batched and handed to an exporter that drops them.

    That is the engine's whole tracing cost without an exporter's network cost (which depends on
    the collector, not on us).
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    return provider


def make_worker() -> Worker:
    mode = os.environ.get("BENCH_OBSERVE", "off")  # bench/orchestrations.py --observability
    observe: dict = {}
    if mode in ("metrics", "both"):
        observe.update(metrics_port=int(os.environ["BENCH_METRICS_PORT"]), metrics_addr="127.0.0.1")
    if mode in ("tracing", "both"):
        observe["tracer_provider"] = _noop_exporting_provider()
    worker = Worker(os.environ["DURABLE_KAFKA_BOOTSTRAP"], hub=os.environ["BENCH_HUB"],
                    state_dir=os.environ["BENCH_STATE_DIR"], partitions=int(os.environ["BENCH_PARTITIONS"]),
                    **observe)
    worker.add_orchestrator(hello_sequence5)
    worker.add_orchestrator(fan_out_fan_in)
    worker.add_orchestrator(timer_wait)
    worker.add_activity(say_hello)
    worker.add_activity(square)
    return worker
