"""``/metrics`` and trace context for the HTTP management API (durable_kafka.http).

Why a middleware and not per-route code: every route (including the dashboard's, mounted by
another module) is counted and continues the caller's trace the same way. The caller's W3C
``traceparent`` request header becomes the current OpenTelemetry context while the route
runs, so the commands the route sends through the client carry it on in their Kafka record
headers (durable_kafka._tracing): a trace started by the HTTP caller continues through the engine.
Labels are bounded: the route's path template (never the raw path), the method, the status class.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HttpMetrics", "ObserveMiddleware", "metrics_endpoint"]

_PROPAGATOR = TraceContextTextMapPropagator()
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class HttpMetrics:
    """The HTTP server's registry: requests by route template, method and status class, and the process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.requests = Counter("durable_kafka_http_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=r)
        self.seconds = Histogram("durable_kafka_http_request_seconds", "HTTP request handling time",
                                 ["route", "method"], buckets=_BUCKETS, registry=r)


class ObserveMiddleware:
    """Counts and times each request; makes the caller's ``traceparent`` the current context."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])
                   if k in (b"traceparent", b"tracestate")}
        token = otel_context.attach(_PROPAGATOR.extract(carrier)) if carrier else None
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        began = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            if token is not None:
                otel_context.detach(token)
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "?")
            self.metrics.seconds.labels(template, method).observe(time.perf_counter() - began)
            self.metrics.requests.labels(template, method, f"{status[0] // 100}xx").inc()


def metrics_endpoint(metrics: HttpMetrics) -> Any:
    """The ``GET /metrics`` route handler (Prometheus text format)."""

    async def serve_metrics(_request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return serve_metrics
