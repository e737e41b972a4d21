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
import time
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


class _Forced(threading.local):
    """The ids the next span of the calling thread takes (class attributes: per-thread defaults)."""

    span_id: int | None = None
    trace_id: int | None = None


class _ForcedIds:
    """Wraps the SDK tracer's id generator: the next ids can be set for the calling thread."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.local = _Forced()

    def generate_span_id(self) -> int:
        local = self.local
        forced = local.span_id
        if forced is not None:
            local.span_id = None
            return forced
        return int(self.inner.generate_span_id())

    def generate_trace_id(self) -> int:
        local = self.local
        forced = local.trace_id
        if forced is not None:
            local.trace_id = None
            return forced
        return int(self.inner.generate_trace_id())

    def is_trace_id_random(self) -> bool:
        probe = getattr(self.inner, "is_trace_id_random", None)
        return bool(probe()) if probe is not None else False


_ROOT = Context()


@functools.lru_cache(maxsize=4096)
def _remote_parent(trace_id: int, span_id: int, flags: int) -> tuple[Context, trace.SpanContext]:
    """The context whose current span is the remote span (trace id, span id), and that span's
    context; cached: every step and every activity of an execution names the same parent."""
    parent = trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags))
    return trace.set_span_in_context(trace.NonRecordingSpan(parent), _ROOT), parent


@functools.lru_cache(maxsize=4096)
def _header_parent(value: bytes | None) -> tuple[Context, trace.SpanContext | None]:
    """The parent a record's ``traceparent`` value names: its context (the empty one if none)
    and its span context; cached: the activities of an execution carry the same value."""
    parsed = parse_traceparent(value)
    return _remote_parent(*parsed) if parsed is not None else (_ROOT, None)


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


class _Shortcut:
    """The engine's spans handed straight to the SDK's span processors, where that is exact.

    ``start_span`` + ``end`` build a live SDK span (a lock, bounded attribute, event and link
    lists, the processors' ``on_start`` and ``_on_ending``) only to hand the processors its
    read-only copy at the end. Most of the engine's spans need none of it:

    * a recorded span (orchestration, timer, entity call) is known whole when it is emitted;
      :meth:`record` builds the ``ReadableSpan`` the processors would get, with the same fields;
    * an activity span is live while the function runs, but usually nothing touches it but
      the engine; :meth:`start_activity` returns a :class:`_LazySpan` that has the span's
      context (so spans the activity starts are its children) and turns itself into a real SDK
      span, with the same ids and start time, the first time code changes it (an attribute, an
      event, an exception, a status); untouched, it ends as a ``ReadableSpan`` like a recorded one.

    The sampler is asked as ``start_span`` asks it. Used only where skipping the live span changes
    nothing: the SDK's own tracer, enabled, its internal metrics off, no attribute length limit,
    and every span processor one whose ``on_start`` and ``_on_ending`` do nothing (the SDK's
    batch and simple processors, what an exporter is set up with); anything else takes the
    public path. ``tests/unit/test_tracing.py`` compares both paths field by field.
    """

    def __init__(self, tracer: Any, ids: _ForcedIds, multi: Any, readable: Any,
                 inert: tuple[set[Any], set[Any]], clean: Callable[[Any], Any]) -> None:
        self.tracer = tracer
        self.ids = ids
        self.multi = multi
        self.readable = readable
        self.inert_start, self.inert_ending = inert
        self.clean = clean
        self.parent_based_on: Any = None  # the SDK's default sampler, ParentBased(ALWAYS_ON)
        self.always_on: Any = None
        self._checked: object = None
        self._ok = False

    @classmethod
    def of(cls, tracer: Any, ids: _ForcedIds | None) -> "_Shortcut | None":
        try:
            from opentelemetry.attributes import BoundedAttributes
            from opentelemetry.sdk.trace import (
                ConcurrentMultiSpanProcessor,
                ReadableSpan,
                SpanProcessor,
                SynchronousMultiSpanProcessor,
            )
            from opentelemetry.sdk.trace import Tracer as SdkTracer
            from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.sdk.trace.sampling import ALWAYS_ON, DEFAULT_ON
        except ImportError:  # no SDK, or one laid out differently: the public path
            return None
        multi = getattr(tracer, "span_processor", None)
        limits = getattr(tracer, "_span_limits", None)
        if (ids is None or type(tracer) is not SdkTracer
                or type(multi) not in (SynchronousMultiSpanProcessor, ConcurrentMultiSpanProcessor)
                or not isinstance(getattr(tracer, "_tracer_metrics", None), NoOpTracerMetrics)
                or not hasattr(tracer, "_instrumentation_scope") or not callable(getattr(tracer, "_is_enabled", None))
                or limits is None or limits.max_span_attribute_length is not None
                or (limits.max_span_attributes is not None and limits.max_span_attributes < _MAX_ATTRIBUTES)):
            return None
        inert_start = {SpanProcessor.on_start, BatchSpanProcessor.on_start, SimpleSpanProcessor.on_start}
        inert_ending = {SpanProcessor._on_ending, BatchSpanProcessor._on_ending, SimpleSpanProcessor._on_ending}

        def clean(attributes: Any) -> Any:  # what a sampler added: kept as the SDK's span keeps it
            return BoundedAttributes(limits.max_span_attributes, attributes, immutable=True)

        shortcut = cls(tracer, ids, multi, ReadableSpan, (inert_start, inert_ending), clean)
        shortcut.parent_based_on, shortcut.always_on = DEFAULT_ON, ALWAYS_ON
        return shortcut

    def usable(self) -> bool:
        """Still exact? (A provider takes new span processors, a tracer can be disabled, at any time.)"""
        processors = getattr(self.multi, "_span_processors", None)
        if processors is not self._checked:
            self._checked = processors
            self._ok = processors is not None and all(
                getattr(type(p), "on_start", None) in self.inert_start
                and getattr(type(p), "_on_ending", None) in self.inert_ending for p in processors)
        return self._ok and bool(self.tracer._is_enabled())

    def _sample(self, ctx: Context, parent: trace.SpanContext | None, trace_id: int, name: str,
                kind: trace.SpanKind, attributes: dict[str, Any]) -> tuple[bool, trace.TraceFlags, Any, Any]:
        """Recorded or not, the new span's trace flags, trace state and attributes, as ``start_span``
        derives them from the sampler (the SDK's default samplers decided without a call: by
        the parent's sampled flag, ``ParentBased(ALWAYS_ON)``, or always, ``ALWAYS_ON``)."""
        sampler = self.tracer.sampler
        if sampler is self.parent_based_on or sampler is self.always_on:
            sampled = parent is None or sampler is self.always_on or parent.trace_flags.sampled
            recording, trace_state = sampled, parent.trace_state if parent is not None else None
        else:
            result = sampler.should_sample(ctx, trace_id, name, kind, attributes, ())
            recording, sampled, trace_state = result.decision.is_recording(), result.decision.is_sampled(), \
                result.trace_state
            if result.attributes != attributes:  # what a sampler added: kept as the SDK's span keeps it
                attributes = self.clean(result.attributes)
        flags = _SAMPLED if sampled else _NOT_SAMPLED
        if parent.trace_flags.random_trace_id if parent is not None else self.ids.is_trace_id_random():
            flags |= _RANDOM_TRACE_ID
        return recording, _FLAGS[flags], trace_state, attributes

    def _end(self, name: str, context: trace.SpanContext, parent: trace.SpanContext | None, kind: trace.SpanKind,
             attributes: Any, status: trace.Status, start: int, end: int) -> None:
        tracer = self.tracer
        self.multi.on_end(self.readable(
            name=name, context=context, parent=parent, resource=tracer.resource, attributes=attributes, kind=kind,
            instrumentation_info=tracer.instrumentation_info, status=status, start_time=start, end_time=end,
            instrumentation_scope=tracer._instrumentation_scope))

    def record(self, s: PendingSpan) -> None:
        """What ``start_span(start_time=...)`` + ``end(end_time=...)`` of ``s`` would hand the processors."""
        o = s.orchestration
        ctx, parent = _remote_parent(o.trace_id, s.parent_span_id, o.flags) if s.parent_span_id is not None \
            else (_ROOT, None)
        recording, flags, trace_state, attributes = self._sample(ctx, parent, o.trace_id, s.name, s.kind, s.attributes)
        if not recording:
            return  # a non-recording span: the processors never see it
        context = trace.SpanContext(o.trace_id, s.span_id, is_remote=False, trace_flags=flags, trace_state=trace_state)
        start = _ns(s.start)
        self._end(s.name, context, parent, s.kind, attributes,
                  trace.Status(trace.StatusCode.ERROR, s.error) if s.error is not None else _UNSET,
                  start, max(_ns(s.end), start))

    def start_activity(self, name: str, ctx: Context, parent: trace.SpanContext | None,
                       attributes: dict[str, Any]) -> trace.Span:
        """The span ``start_span(name, ctx, CONSUMER, attributes)`` would start, made lazily."""
        ids = self.ids.inner  # random ids: nothing is forced on this path
        trace_id = parent.trace_id if parent is not None else int(ids.generate_trace_id())
        recording, flags, trace_state, attributes = self._sample(ctx, parent, trace_id, name, _CONSUMER, attributes)
        context = trace.SpanContext(trace_id, int(ids.generate_span_id()), is_remote=False, trace_flags=flags,
                                    trace_state=trace_state)
        if not recording:
            return trace.NonRecordingSpan(context)
        return _LazySpan(self, name, context, ctx, parent, attributes, time.time_ns())

    def materialize(self, lazy: "_LazySpan") -> Any:
        """The real SDK span of ``lazy``: same ids, start time, attributes (the sampler is asked again)."""
        forced = self.ids.local
        forced.span_id, forced.trace_id = lazy.context.span_id, lazy.context.trace_id
        try:
            return self.tracer.start_span(lazy.name, context=lazy.parent_ctx, kind=_CONSUMER,
                                          attributes=lazy.attributes, start_time=lazy.start)
        finally:
            forced.span_id = forced.trace_id = None


_SAMPLED, _NOT_SAMPLED, _RANDOM_TRACE_ID = 0x01, 0x00, 0x02
_FLAGS = [trace.TraceFlags(f) for f in range(4)]
_UNSET = trace.Status(trace.StatusCode.UNSET)
#: the most attributes one of the engine's spans has (a span limit below this: the public path)
_MAX_ATTRIBUTES = 8
_LAZY = threading.Lock()  # taken when a lazy span ends or becomes real


class _LazySpan(trace.Span):
    """An activity's span while the function runs (see :class:`_Shortcut`).

    Until code changes it, it is only its context; the first change makes it a real SDK span
    (same ids, start time and attributes) that takes this and every later call, so whatever the
    activity does to its span is recorded exactly as on a span from ``start_span``.
    """

    __slots__ = ("shortcut", "name", "context", "parent_ctx", "parent", "attributes", "start", "ended", "real")

    def __init__(self, shortcut: _Shortcut, name: str, context: trace.SpanContext, parent_ctx: Context,
                 parent: trace.SpanContext | None, attributes: Any, start: int) -> None:
        self.shortcut, self.name, self.context = shortcut, name, context
        self.parent_ctx, self.parent, self.attributes, self.start = parent_ctx, parent, attributes, start
        self.ended = False
        self.real: Any = None

    def _real(self) -> Any:
        """The real span (made now if need be); None once ended untouched (a change after the end
        is ignored, as the SDK's span ignores it)."""
        real = self.real
        if real is None:
            with _LAZY:
                real = self.real
                if real is None and not self.ended:
                    real = self.real = self.shortcut.materialize(self)
        return real

    def get_span_context(self) -> trace.SpanContext:
        return self.context

    def is_recording(self) -> bool:
        real = self.real
        return bool(real.is_recording()) if real is not None else not self.ended

    def end(self, end_time: int | None = None) -> None:
        with _LAZY:  # against a change made at the same time from another thread
            real, ended = self.real, self.ended
            self.ended = True
        if real is not None:
            real.end(end_time)
        elif not ended:
            self.shortcut._end(self.name, self.context, self.parent, _CONSUMER, self.attributes, _UNSET,
                               self.start, end_time if end_time is not None else time.time_ns())

    # every change goes to the real span
    def set_attributes(self, attributes: Any) -> None:
        if (real := self._real()) is not None:
            real.set_attributes(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        if (real := self._real()) is not None:
            real.set_attribute(key, value)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        if (real := self._real()) is not None:
            real.add_event(name, attributes, timestamp)

    def add_link(self, context: trace.SpanContext, attributes: Any = None) -> None:
        if (real := self._real()) is not None:
            real.add_link(context, attributes)

    def update_name(self, name: str) -> None:
        if (real := self._real()) is not None:
            real.update_name(name)

    def set_status(self, status: Any, description: str | None = None) -> None:
        if (real := self._real()) is not None:
            real.set_status(status, description)

    def record_exception(self, exception: BaseException, attributes: Any = None, timestamp: int | None = None,
                         escaped: bool = False) -> None:
        if (real := self._real()) is not None:
            real.record_exception(exception, attributes, timestamp, escaped)


class Tracing:
    """The engine's tracer; build with :meth:`create` (None when tracing is off)."""

    def __init__(self, provider: Any) -> None:
        self.tracer = provider.get_tracer("durable_kafka")
        self._ids: _ForcedIds | None = None
        inner = getattr(self.tracer, "id_generator", None)
        if isinstance(inner, _ForcedIds):  # the SDK caches its tracers: wrapped by an earlier start
            self._ids = inner
        elif inner is not None:  # the SDK's tracer: let it take the derived ids
            self._ids = _ForcedIds(inner)
            self.tracer.id_generator = self._ids
        self._activity_names: dict[str, str] = {}
        #: the SDK's span processors without a live span, where that is exact (None: never)
        self._shortcut = _Shortcut.of(self.tracer, self._ids)

    @classmethod
    def create(cls, provider: Any = None) -> "Tracing | None":
        """A Tracing for ``provider`` (default: the global one); None if no real provider is set."""
        if provider is None:
            provider = trace.get_tracer_provider()
            if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
                return None
        return cls(provider)

    def _fast(self) -> _Shortcut | None:
        shortcut = self._shortcut
        return shortcut if shortcut is not None and shortcut.usable() else None

    # ------------------------------------------------------------------ engine-side spans
    def emit(self, spans: Iterable[PendingSpan]) -> None:
        """Emit spans of a committed step with their derived ids and recorded times."""
        fast = self._fast()
        if fast is not None:
            for s in spans:
                fast.record(s)
            return
        tracer, forced = self.tracer, self._ids.local if self._ids is not None else None
        for s in spans:
            o = s.orchestration
            ctx = _remote_parent(o.trace_id, s.parent_span_id, o.flags)[0] if s.parent_span_id is not None else _ROOT
            start = _ns(s.start)
            if forced is not None:
                forced.span_id, forced.trace_id = s.span_id, o.trace_id
            try:
                span = tracer.start_span(s.name, context=ctx, kind=s.kind, attributes=s.attributes, start_time=start)
            finally:
                if forced is not None:
                    forced.span_id = forced.trace_id = None
            if s.error is not None:
                span.set_status(trace.Status(trace.StatusCode.ERROR, s.error))
            span.end(end_time=max(_ns(s.end), start))

    # ------------------------------------------------------------------ activity execution
    def activity_wrapper(self, fn: F, name: str, headers: Sequence[tuple[str, bytes | None]] | None,
                         attributes: dict[str, Any], is_async: bool) -> F:
        """``fn`` run inside an ``activity:<name>`` span, child of the orchestration's span."""
        ctx, parent = _header_parent(header_of(headers))  # cached: the activities of a step share it
        span_name = self._activity_names.get(name)
        if span_name is None:
            span_name = self._activity_names[name] = f"activity:{name}"
        tracer, fast = self.tracer, self._fast()

        def start() -> Any:
            if fast is not None:
                return fast.start_activity(span_name, ctx, parent, attributes)
            return tracer.start_span(span_name, context=ctx, kind=_CONSUMER, attributes=attributes)

        # start + attach, not start_as_current_span: the same span for less (no generator
        # context manager per call); the activity's own spans still nest under it
        if is_async:
            async def run_async(*args: Any) -> Any:
                span = start()
                token = _attach(_set_span(span, ctx))
                try:
                    return await fn(*args)
                except BaseException as error:
                    _failed(span, error)
                    raise
                finally:
                    _detach(token)
                    span.end()

            return run_async  # type: ignore[return-value]

        def run(*args: Any) -> Any:
            span = start()
            token = _attach(_set_span(span, ctx))
            try:
                return fn(*args)
            except BaseException as error:
                _failed(span, error)
                raise
            finally:
                _detach(token)
                span.end()

        return run  # type: ignore[return-value]


_attach, _detach, _set_span = otel_context.attach, otel_context.detach, trace.set_span_in_context
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
