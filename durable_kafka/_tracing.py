"""OpenTelemetry traces of orchestrations: W3C trace context in Kafka record headers.

Why this shape: an orchestration runs as many short steps, possibly on several workers and
across restarts, so its span cannot be held open by one process. Its identity is derived
instead: the span id is a hash of (instance id, execution id), the trace id comes from the
caller's ``traceparent`` (kept durably as a reserved tag of the instance, ``TRACE_TAG``) or,
with no caller, from a hash too. Every step can therefore name the orchestration span as the
parent of what it sends (activity requests, sub-orchestration starts, entity operations carry
a ``traceparent`` record header), and the step that ends the execution emits the orchestration
span itself, with its start time and that same id. Spans are emitted only for what a committed
transaction recorded for the first time, so replays and retried transactions emit none twice.

Forcing a span id needs the OpenTelemetry SDK's tracer (its ``id_generator``); with another
implementation the orchestration span gets a fresh id (its children then point at the derived
one). Tracing is off (every hook is one ``is None`` check) unless a tracer provider other than
the API's default is configured, globally or passed to the worker.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context

from durable_kafka.streams.events import (
    ActivityRequest,
    EntityMessage,
    EntityOperationCalled,
    EntityResponse,
    OrchestratorMessage,
    StartOrchestration,
    TimerCreated,
)

__all__ = ["TRACEPARENT", "TRACE_TAG", "RecordHeaders", "Tracing", "carry_header", "current_traceparent",
           "parse_traceparent"]

#: Kafka record headers as confluent-kafka's ``produce()`` takes them (its list form)
RecordHeaders = list[tuple[str, str | bytes | None]]

TRACEPARENT = "traceparent"
#: the reserved instance tag that keeps the caller's trace context durably (history and store)
TRACE_TAG = "durable-kafka.traceparent"

F = TypeVar("F", bound=Callable[..., Any])


def parse_traceparent(value: str | bytes | None) -> tuple[int, int, int] | None:
    """(trace id, parent span id, flags) of a W3C ``traceparent`` value; None if it is not one."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2 or parts[0] == "ff":
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, flags


def format_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def current_traceparent() -> str | None:
    """The ``traceparent`` of the caller's current span (a client inside a traced service)."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format_traceparent(ctx.trace_id, ctx.span_id, int(ctx.trace_flags))


def client_headers() -> RecordHeaders | None:
    """Record headers for a command a client sends: the current trace context, if any."""
    tp = current_traceparent()
    return [(TRACEPARENT, tp.encode())] if tp is not None else None


def header_of(headers: Sequence[tuple[str, bytes | None]] | None) -> bytes | None:
    """The ``traceparent`` value among a record's headers."""
    if not headers:
        return None
    for k, v in headers:
        if k == TRACEPARENT:
            return v
    return None


def carry_header(rec: Any) -> RecordHeaders | None:
    """The ``traceparent`` header of a consumed record, to pass on with what it caused (triggers)."""
    value = header_of(rec.headers())
    return [(TRACEPARENT, value)] if value is not None and parse_traceparent(value) else None


def _hash_int(text: str, size: int) -> int:
    value = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=size).digest(), "big")
    return value or 1


def orchestration_span_id(instance_id: str, execution_id: str) -> int:
    return _hash_int(f"{instance_id}/{execution_id}", 8)


def child_span_id(instance_id: str, execution_id: str, kind: str, ident: object) -> int:
    return _hash_int(f"{instance_id}/{execution_id}/{kind}/{ident}", 8)


@dataclass(frozen=True)
class OrchestrationTrace:
    """Where one execution's spans belong: its trace, its own span id, the caller's span."""

    trace_id: int
    span_id: int
    parent_span_id: int | None
    flags: int

    @classmethod
    def of(cls, instance_id: str, execution_id: str, tags: dict[str, str] | None) -> "OrchestrationTrace":
        caller = parse_traceparent((tags or {}).get(TRACE_TAG))
        span_id = orchestration_span_id(instance_id, execution_id)
        if caller is None:
            return cls(_hash_int(f"{instance_id}/{execution_id}/trace", 16), span_id, None, 1)
        return cls(caller[0], span_id, caller[1], caller[2])

    def traceparent(self) -> str:
        """The header that makes a record's spans children of the orchestration span."""
        return format_traceparent(self.trace_id, self.span_id, self.flags)

    def header(self) -> RecordHeaders:
        return [(TRACEPARENT, self.traceparent().encode())]


class _ForcedIds:
    """Wraps the SDK tracer's id generator: the next ids can be set for the calling thread."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.local = threading.local()

    def generate_span_id(self) -> int:
        forced = getattr(self.local, "span_id", None)
        if forced is not None:
            self.local.span_id = None
            return int(forced)
        return int(self.inner.generate_span_id())

    def generate_trace_id(self) -> int:
        forced = getattr(self.local, "trace_id", None)
        if forced is not None:
            self.local.trace_id = None
            return int(forced)
        return int(self.inner.generate_trace_id())

    def is_trace_id_random(self) -> bool:
        probe = getattr(self.inner, "is_trace_id_random", None)
        return bool(probe()) if probe is not None else False


@dataclass
class PendingSpan:
    """A span decided by a step, emitted once its transaction committed."""

    name: str
    orchestration: OrchestrationTrace
    span_id: int
    parent_span_id: int | None
    start: datetime
    end: datetime
    attributes: dict[str, Any]
    error: str | None = None
    kind: trace.SpanKind = trace.SpanKind.INTERNAL


class Tracing:
    """The engine's tracer; build with :meth:`create` (None when tracing is off)."""

    def __init__(self, provider: Any) -> None:
        self.tracer = provider.get_tracer("durable_kafka")
        self._ids: _ForcedIds | None = None
        inner = getattr(self.tracer, "id_generator", None)
        if inner is not None:  # the SDK's tracer: let it take the derived ids
            self._ids = _ForcedIds(inner)
            self.tracer.id_generator = self._ids

    @classmethod
    def create(cls, provider: Any = None) -> "Tracing | None":
        """A Tracing for ``provider`` (default: the global one); None if no real provider is set."""
        if provider is None:
            provider = trace.get_tracer_provider()
            if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
                return None
        return cls(provider)

    # ------------------------------------------------------------------ engine-side spans
    def emit(self, spans: Iterable[PendingSpan]) -> None:
        """Emit spans of a committed step with their derived ids and recorded times."""
        for s in spans:
            if s.parent_span_id is not None:
                parent = trace.NonRecordingSpan(trace.SpanContext(
                    s.orchestration.trace_id, s.parent_span_id, is_remote=True, trace_flags=trace.TraceFlags(s.orchestration.flags)))
                ctx = trace.set_span_in_context(parent, Context())
            else:
                ctx = Context()
            if self._ids is not None:
                self._ids.local.span_id = s.span_id
                self._ids.local.trace_id = s.orchestration.trace_id
            try:
                span = self.tracer.start_span(s.name, context=ctx, kind=s.kind, attributes=s.attributes,
                                              start_time=_ns(s.start))
            finally:
                if self._ids is not None:
                    self._ids.local.span_id = self._ids.local.trace_id = None
            if s.error is not None:
                span.set_status(trace.Status(trace.StatusCode.ERROR, s.error))
            span.end(end_time=max(_ns(s.end), _ns(s.start)))

    # ------------------------------------------------------------------ activity execution
    def activity_wrapper(self, fn: F, name: str, headers: Sequence[tuple[str, bytes | None]] | None,
                         attributes: dict[str, Any], is_async: bool) -> F:
        """``fn`` run inside an ``activity:<name>`` span, child of the orchestration's span."""
        parsed = parse_traceparent(header_of(headers))
        if parsed is not None:
            ctx = trace.set_span_in_context(trace.NonRecordingSpan(trace.SpanContext(
                parsed[0], parsed[1], is_remote=True, trace_flags=trace.TraceFlags(parsed[2]))), Context())
        else:
            ctx = Context()
        tracer, span_name = self.tracer, f"activity:{name}"
        # start_span + attach, not start_as_current_span: the same span for less (no generator
        # context manager per call); the activity's own spans still nest under it
        if is_async:
            async def run_async(*args: Any) -> Any:
                span = tracer.start_span(span_name, context=ctx, kind=_CONSUMER, attributes=attributes)
                token = otel_context.attach(trace.set_span_in_context(span))
                try:
                    return await fn(*args)
                except BaseException as error:
                    _failed(span, error)
                    raise
                finally:
                    otel_context.detach(token)
                    span.end()

            return run_async  # type: ignore[return-value]

        def run(*args: Any) -> Any:
            span = tracer.start_span(span_name, context=ctx, kind=_CONSUMER, attributes=attributes)
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                return fn(*args)
            except BaseException as error:
                _failed(span, error)
                raise
            finally:
                otel_context.detach(token)
                span.end()

        return run  # type: ignore[return-value]


_CONSUMER = trace.SpanKind.CONSUMER


def _failed(span: Any, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def _ns(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000_000)


# ---------------------------------------------------------------------- the orchestration step's part
def adopt_caller(msgs: Sequence[Any], raws: Sequence[Any]) -> None:
    """Keep the ``traceparent`` header of a start command among the new instance's tags.

    The tags go into ``ExecutionStarted`` and the instance header, so the caller's context
    survives restarts, rebalances and continue-as-new (no schema change needed).
    """
    for m, raw in zip(msgs, raws):
        body = m.body
        if isinstance(body, StartOrchestration) and TRACE_TAG not in body.tags:
            value = header_of(raw.headers())
            if value is not None and parse_traceparent(value) is not None:
                m.body = replace(body, tags={**body.tags, TRACE_TAG: value.decode("ascii")})


def tag_outgoing(produce: Sequence[Any], instance_id: str, header: Any) -> None:
    """Give what the step sends on the instance's behalf the orchestration span as parent."""
    if header is None:
        return
    carried: RecordHeaders | None = None
    for p in produce:
        v = p.value
        if isinstance(v, (ActivityRequest, EntityMessage)) or (
                isinstance(v, OrchestratorMessage) and isinstance(v.body, StartOrchestration)
                and v.body.parent_instance_id == instance_id):
            if carried is None:
                carried = _orchestration_header(instance_id, header.execution_id, header.tags.get(TRACE_TAG))
            p.headers = carried


@functools.lru_cache(maxsize=4096)
def _orchestration_header(instance_id: str, execution_id: str, caller: str | None) -> RecordHeaders:
    """The ``traceparent`` header naming an execution's span (cached: every step of it sends one)."""
    return OrchestrationTrace.of(instance_id, execution_id, {TRACE_TAG: caller} if caller else None).header()


def step_spans(instance_id: str, header: Any, msgs: Sequence[Any], timers: Sequence[Any],
               completed: Callable[[str, int | str], bool], history: Callable[[str], list[Any]],
               now: datetime) -> list[PendingSpan]:
    """Spans of the timers and entity calls this step completed for the first time."""
    if header is None:
        return []
    spans: list[PendingSpan] = []
    for t in timers:
        if t.timer_id >= 0 and completed("timer", t.timer_id):
            ot = OrchestrationTrace.of(instance_id, t.execution_id, header.tags)
            created = next((e for e in history(t.execution_id)
                            if isinstance(e, TimerCreated) and e.event_id == t.timer_id), None)
            spans.append(PendingSpan(
                "timer", ot, child_span_id(instance_id, t.execution_id, "timer", t.timer_id), ot.span_id,
                created.timestamp if created is not None else now, now,
                {"durable_kafka.instance_id": instance_id, "durable_kafka.timer_id": t.timer_id,
                 "durable_kafka.fire_at": t.fire_at.isoformat()}))
    for m in msgs:
        body = m.body
        if isinstance(body, EntityResponse) and not body.lock_granted and completed("request", body.request_id):
            ot = OrchestrationTrace.of(instance_id, body.execution_id, header.tags)
            called = next((e for e in history(body.execution_id)
                           if isinstance(e, EntityOperationCalled) and e.request_id == body.request_id), None)
            operation = called.operation if called is not None else "?"
            entity = called.target_instance_id if called is not None else "?"
            spans.append(PendingSpan(
                f"entity:{entity.split('@')[1] if entity.count('@') >= 2 else entity}.{operation}", ot,
                child_span_id(instance_id, body.execution_id, "entity", body.request_id), ot.span_id,
                called.timestamp if called is not None else now, now,
                {"durable_kafka.instance_id": instance_id, "durable_kafka.entity_id": entity,
                 "durable_kafka.operation": operation},
                error=body.failure_details.message if body.failure_details is not None else None,
                kind=trace.SpanKind.CLIENT))
    return spans


def orchestration_span(header: Any, end: datetime) -> PendingSpan:
    """The span of an execution that ended: from its creation to its end, id derived."""
    ot = OrchestrationTrace.of(header.instance_id, header.execution_id, header.tags)
    failure = header.failure_details
    status = getattr(header.runtime_status, "name", str(header.runtime_status)).lower()
    return PendingSpan(
        f"orchestration:{header.name}", ot, ot.span_id, ot.parent_span_id, header.created_at, end,
        {"durable_kafka.instance_id": header.instance_id, "durable_kafka.execution_id": header.execution_id,
         "durable_kafka.runtime_status": status},
        error=failure.message if failure is not None and status == "failed" else None,
        kind=trace.SpanKind.SERVER)
