"""The activity worker: runs activity functions for the requests of the activities it hosts.

Each activity has its own request topic (``<hub>.activity.<name>``, docs/ROUTING.md); a worker
subscribes to the topics of the activities it hosts, all in one consumer group, so Kafka gives
each topic's partitions only to the workers that host that activity, and a set of activities
scales by starting or stopping workers that host it. Requests on the shared topic of earlier
releases (``<hub>.activity-requests``) are run when hosted here, else forwarded to their
activity's topic, so an upgrade loses nothing.

At-least-once, never a lost result: a request's offset is committed only after its
``ActivityResult`` has been acknowledged by the broker, and only as part of a contiguous prefix
of finished requests of its partition (an offset is never committed past a request still in
flight). A worker killed at any point therefore re-executes, and the orchestration drops the
second result because that task is no longer pending.

Threads: one loop thread owns the consumer and the producer (confluent-kafka objects are used
from that thread only); sync activities run in a thread pool, ``async def`` ones on one asyncio
event-loop thread. Finished work comes back to the loop thread through a queue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from durable_kafka.errors import CodecError, ConfigurationError, ConsumerFatalError, InvalidArgumentError
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.payloads import PayloadCodec, bind, externalize, looks_like_reference, resolve
from durable_kafka.streams.config import (
    bootstrap_servers,
    command_producer_config,
    consumer_config,
    resolve_kafka_config,
)
from durable_kafka.streams.connection import authorization_error
from durable_kafka.streams.events import (
    ActivityRequest,
    ActivityResult,
    FailureDetails,
    OrchestratorMessage,
)
from durable_kafka.streams.deadletter import dead_letter_for
from durable_kafka.streams.topics import ACTIVITY_TOPIC_INFIX, HubTopics
from durable_kafka.task import ActivityContext, get_name

__all__ = ["ActivityRegistry", "ActivityWorker"]

log = logging.getLogger(__name__)

_COMMIT_INTERVAL = 0.2  # seconds between asynchronous commits of finished work
_IDLE_POLL = 0.1  # consumer poll timeout when nothing is in flight
_BUSY_POLL = 0.005  # ... and when results may be waiting to be produced


class ActivityRegistry:
    """Activity functions by name (the name orchestrators schedule them under)."""

    def __init__(self) -> None:
        self._functions: dict[str, Callable[..., Any]] = {}

    def add_activity(self, fn: Callable[..., Any], name: str | None = None) -> str:
        """Register ``fn`` as ``name`` (default: its ``__name__``) and return the name."""
        if not callable(fn):
            raise InvalidArgumentError(f"an activity must be callable, got {type(fn).__name__}")
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidArgumentError(f"activity name must be a non-empty str, got {name!r}")
        resolved = get_name(fn) if name is None else name
        if resolved in self._functions:
            raise ConfigurationError(f"an activity named {resolved!r} is already registered")
        self._functions[resolved] = fn
        return resolved

    def get(self, name: str) -> Callable[..., Any] | None:
        return self._functions.get(name)

    def names(self) -> list[str]:
        return sorted(self._functions)

    def __contains__(self, name: object) -> bool:
        return name in self._functions


# --------------------------------------------------------------------------- offset tracking


@dataclass
class _PartitionTracker:
    """Offsets of one assigned partition, in arrival order, and which of them are finished.

    ``epoch`` changes with every assignment, so work that finishes after its partition was
    revoked (and maybe re-assigned) cannot mark offsets of the new assignment.
    """

    epoch: int
    order: deque[int] = field(default_factory=deque)
    finished: set[int] = field(default_factory=set)
    commit_at: int | None = None  # the next offset to commit (None: nothing new)

    def add(self, offset: int) -> None:
        self.order.append(offset)

    def finish(self, offset: int) -> None:
        self.finished.add(offset)
        while self.order and self.order[0] in self.finished:
            done = self.order.popleft()
            self.finished.discard(done)
            self.commit_at = done + 1


@dataclass
class _Outgoing:
    """A record to produce for a finished request (its result or its dead letter).

    Once the broker acknowledges it, the request's offset counts as finished.
    """

    partition: int
    offset: int
    epoch: int
    topic: str
    key: bytes | None
    value: bytes
    label: str
    #: Builds a small stand-in value when ``value`` is larger than the broker accepts.
    shrink: Callable[[str], bytes] | None = None
    #: the topic the request was read from (its offset is committed there)
    source: str = ""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _failure(error: BaseException) -> FailureDetails:
    return FailureDetails.from_exception(error)  # qualified type name and the cause chain


def _run_sync(fn: Callable[..., Any], ctx: ActivityContext, text: str | None,
              payloads: PayloadCodec | None = None) -> tuple[str | None, FailureDetails | None]:
    try:
        with bind(payloads, ctx.orchestration_id):  # large inputs and results (docs/PAYLOADS.md)
            value = fn(ctx, None if text is None else json.loads(resolve(text) or ""))
            return externalize(json.dumps(value)), None
    except Exception as error:  # user code: any failure becomes the activity's failure
        return None, _failure(error)


async def _run_async(fn: Callable[..., Any], ctx: ActivityContext, text: str | None,
                     payloads: PayloadCodec | None = None) -> tuple[str | None, FailureDetails | None]:
    try:
        with bind(payloads, ctx.orchestration_id):
            value = await fn(ctx, None if text is None else json.loads(await _resolve_async(payloads, text, ctx.orchestration_id)))
            return await asyncio.to_thread(_externalize_in, payloads, ctx.orchestration_id, json.dumps(value)), None
    except Exception as error:  # user code: any failure becomes the activity's failure
        return None, _failure(error)


def _timed(fn: Callable[..., Any], am: Any, is_async: bool) -> Callable[..., Any]:
    """Count, time and count the failures of ``fn``'s executions (``_metrics.ActivityMetrics``)."""
    if is_async:
        async def run_async(*args: Any) -> Any:
            began = time.perf_counter()
            try:
                return await fn(*args)
            except BaseException:
                am.failures.inc()
                raise
            finally:
                am.seconds.observe(time.perf_counter() - began)
                am.executions.inc()

        return run_async

    def run(*args: Any) -> Any:
        began = time.perf_counter()
        try:
            return fn(*args)
        except BaseException:
            am.failures.inc()
            raise
        finally:
            am.seconds.observe(time.perf_counter() - began)
            am.executions.inc()

    return run

async def _resolve_async(payloads: PayloadCodec | None, text: str, instance_id: str) -> str:
    if payloads is None or not looks_like_reference(text):
        return text
    return await asyncio.to_thread(payloads.resolve, text, instance_id)


def _externalize_in(payloads: PayloadCodec | None, owner: str, text: str) -> str:
    """Store a large result off the event loop thread (the loop serves other activities)."""
    return text if payloads is None else payloads.externalize(text, owner)


class ActivityWorker:
    """Consumes activity requests of one hub, runs them and produces their results."""

    #: set by the Worker when asked for (durable_kafka._metrics / _tracing); None: off, one check each
    metrics: Any = None  # EngineMetrics
    tracing: Any = None  # Tracing

    #: large inputs and results (docs/PAYLOADS.md): set by the worker; None leaves JSON text as it is
    payloads: PayloadCodec | None = None

    def __init__(
        self,
        bootstrap: str | None,
        hub: str,
        registry: ActivityRegistry,
        *,
        max_workers: int = 16,
        group_id: str | None = None,
        max_in_flight: int | None = None,
        drain_timeout: float = 10.0,
        kafka_config: Mapping[str, Any] | None = None,
        group_instance_id: str | None = None,
        hosted: list[str] | None = None,
        ensure_topics: Callable[[list[str]], Any] | None = None,
    ) -> None:
        """``hosted``: the activity names whose requests this worker takes (default: every name
        in ``registry``; ``["*"]``: every activity request of the hub, as a worker whose
        work-item filters were cleared). ``ensure_topics`` creates request topics by activity
        name (to forward requests found on the shared topic of earlier releases)."""
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigurationError(f"max_workers must be a positive int, got {max_workers!r}")
        self._kafka_config = resolve_kafka_config(kafka_config)
        self._bootstrap = bootstrap_servers(bootstrap, self._kafka_config)
        self._topics = HubTopics(hub)
        self._registry = registry
        self._max_workers = max_workers
        self._max_in_flight = max_in_flight or 2 * max_workers
        self._group_id = group_id or f"{hub}.activity-workers"
        names = registry.names() if hosted is None else list(hosted)
        self._take_all = "*" in names
        self._hosted = frozenset(n for n in names if n != "*")
        self._ensure_topics = ensure_topics or self._create_topics
        self._known_topics: set[str] = set()
        #: static membership: a restarted worker with the same id gets its partitions back at
        #: once (no rebalance); one that is gone is replaced after the session timeout
        self._group_instance_id = group_instance_id
        self._drain_timeout = drain_timeout
        self._codec = Codec.default()
        self._done: queue.SimpleQueue[_Outgoing] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._started = False
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        # Loop-thread state (touched only by the loop thread and the rebalance callbacks it runs).
        self._trackers: dict[tuple[str, int], _PartitionTracker] = {}
        self._epoch = 0
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._paused = False
        self._assigned = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._last_commit = 0.0
        self._failure: BaseException | None = None
        self._consumer_metrics: Any = None  # ProcessorMetrics "activities": lag, dead letters
        self._activity_metrics: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Join the consumer group and start processing (returns at once)."""
        if self._started:
            raise ConfigurationError("an ActivityWorker can be started once; make a new one")
        self._started = True
        if self._hosted:  # subscribe to topics that exist (a missing one is only logged as unavailable)
            self._ensure_topics(sorted(self._hosted))
            self._known_topics.update(self._topics.activity_topic(n) for n in self._hosted)
        self._executor = ThreadPoolExecutor(self._max_workers, thread_name_prefix="activity")
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self._loop.run_forever, name="activity-asyncio", daemon=True
        )
        self._loop_thread.start()
        self._consumer = Consumer(
            consumer_config(
                self._bootstrap,
                self._group_id,
                kafka_config=self._kafka_config,
                # read_committed: the broker does not wake a waiting fetch when commit markers
                # land, so a long fetch wait would delay every request by that much.
                # a short session: after a kill -9 the restarted worker waits this long for the
                # dead member to be dropped (6 s is the broker's minimum by default)
                **{"fetch.wait.max.ms": 5, "max.poll.interval.ms": 300000,
                   "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                   # with no filters the subscription is a pattern: see new activity topics soon
                   **({"topic.metadata.refresh.interval.ms": 5000} if self._take_all else {}),
                   **({"group.instance.id": self._group_instance_id} if self._group_instance_id else {})},
            )
        )
        self._producer = Producer(command_producer_config(self._bootstrap, kafka_config=self._kafka_config))
        self._consumer.subscribe(
            self.subscription(),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        if self.metrics is not None:
            self._consumer_metrics = self.metrics.processor("activities")
        self._thread = threading.Thread(target=self._run, name="activity-worker", daemon=True)
        self._thread.start()

    def _create_topics(self, names: list[str]) -> None:
        """Create request topics with the hub's partition count (used when none was given)."""
        from durable_kafka.streams.admin import _admin, ensure_activity_topics, existing_partitions
        from durable_kafka.streams.topics import DEFAULT_PARTITIONS

        admin = _admin(self._bootstrap, self._kafka_config)
        counts = existing_partitions(admin, [self._topics.orchestrator_events], 30, self._bootstrap)
        ensure_activity_topics(self._topics.hub, names, counts.get(self._topics.orchestrator_events, DEFAULT_PARTITIONS),
                               self._bootstrap, kafka_config=self._kafka_config, admin=admin)

    def subscription(self) -> list[str]:
        """The topics this worker reads: its activities' topics (or all, as a pattern) and the
        shared topic of earlier releases."""
        if self._take_all:
            pattern = "^" + re.escape(f"{self._topics.hub}.{ACTIVITY_TOPIC_INFIX}") + ".*"
            return [pattern, self._topics.activity_requests]
        return [self._topics.activity_topic(n) for n in sorted(self._hosted)] + [self._topics.activity_requests]

    def hosts(self, name: str) -> bool:
        """Whether requests of activity ``name`` are run here (else forwarded or failed)."""
        return self._take_all or name in self._hosted

    def stop(self, timeout: float = 30.0) -> None:
        """Finish in-flight work (up to the drain timeout), commit it, and release everything."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout)
            if not self._loop.is_running():
                self._loop.close()
            self._loop, self._loop_thread = None, None

    def __enter__(self) -> ActivityWorker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def failure(self) -> BaseException | None:
        """Why the worker loop stopped on its own (None while healthy or after a clean stop)."""
        return self._failure

    @property
    def in_flight(self) -> int:
        """Requests received and not yet answered (for monitoring and tests)."""
        with self._in_flight_lock:
            return self._in_flight

    # ------------------------------------------------------------------ the loop thread

    def _run(self) -> None:
        consumer, producer = self._consumer, self._producer
        assert consumer is not None and producer is not None
        try:
            while not self._stopping.is_set():
                self._service(producer)
                if self._consumer_metrics is not None:
                    self._consumer_metrics.maybe_update_lag(consumer)
                if self.in_flight >= self._max_in_flight:
                    # full: serve delivery reports until there is room. Not polling the consumer
                    # for a moment is cheaper than pause()/resume(), which throws away the
                    # prefetched records and costs a fetch backoff on every cycle.
                    producer.poll(0.002)
                    continue
                message = consumer.poll(_BUSY_POLL if self.in_flight else _IDLE_POLL)
                if message is not None:
                    self._receive(message)
            self._drain(producer)
            self._commit(sync=True)
        except BaseException as error:  # surfaced in the log; results stay at-least-once
            self._failure = error
            log.exception("activity worker loop for %s stopped", self._topics.activity_requests)
        finally:
            producer.flush(self._drain_timeout)
            consumer.close()

    def _service(self, producer: Producer) -> None:
        """Produce finished results, serve delivery callbacks, commit now and then."""
        while True:
            try:
                done = self._done.get_nowait()
            except queue.Empty:
                break
            self._produce_result(producer, done)
        producer.poll(0)
        if time.monotonic() - self._last_commit >= _COMMIT_INTERVAL:
            self._commit(sync=False)

    def _drain(self, producer: Producer) -> None:
        deadline = time.monotonic() + self._drain_timeout
        while self.in_flight and time.monotonic() < deadline:
            self._service(producer)
            time.sleep(_BUSY_POLL)
        self._service(producer)
        producer.flush(max(0.0, deadline - time.monotonic()))
        if self.in_flight:
            log.warning("stopping with %d activities unfinished; they will run again", self.in_flight)

    def _flow_control(self, consumer: Consumer) -> None:
        busy = self.in_flight >= self._max_in_flight
        if busy != self._paused:
            assignment = consumer.assignment()
            if assignment:
                (consumer.pause if busy else consumer.resume)(assignment)
            self._paused = busy

    def _receive(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            denied = authorization_error(error, {"group": self._group_id,
                                                 "topic": self._topics.activity_requests}, "consume activity requests")
            if denied is not None:
                raise denied  # not retried: the loop stops and .failure reports it
            if error.fatal() or error.code() == KafkaError._FATAL:  # e.g. a fenced static member
                raise ConsumerFatalError(f"activity worker: its Kafka consumer failed for good ({error.str()}); "
                                         "restart the worker")
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("activity requests: %s", error)
            return
        source = message.topic() or ""
        tracker = self._trackers.get((source, message.partition()))
        if tracker is None:  # a message of a partition revoked in the meantime
            return
        tracker.add(message.offset())
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            if message.value() is None:
                raise CodecError("the record has no value (a tombstone is not a request)")
            request = self._codec.decode(message.value(), expected=ActivityRequest)
        except CodecError as error:
            self._dead_letter(message, tracker.epoch, error)
            return
        if not self.hosts(request.name):
            # the shared topic of earlier releases, or (never expected) a partition of an activity
            # this worker does not host: the request goes to its activity's topic, never failed
            if source != self._topics.activity_requests:
                log.warning("got request %s of activity %r that this worker does not host; re-queueing it",
                            request.id, request.name)
            self._forward(message, request, tracker.epoch)
            return
        self._dispatch(request, message.partition(), message.offset(), tracker.epoch, source, message=message)

    def _forward(self, message: Message, request: ActivityRequest, epoch: int) -> None:
        """Move a request of the shared topic (earlier releases) to its activity's own topic.

        At least once, like everything here: the offset is committed after the copy is
        acknowledged, so a crash in between forwards it again, and a second execution's
        result is dropped by the orchestration.
        """
        topic = self._topics.activity_topic(request.name)
        if topic not in self._known_topics and self._ensure_topics is not None:
            self._ensure_topics([request.name])
        self._known_topics.add(topic)
        value = message.value()
        assert value is not None
        self._done.put(_Outgoing(message.partition(), message.offset(), epoch, topic, message.key(), value,
                                 f"forward of {request.id} to {topic}", source=message.topic() or ""))

    def _dispatch(self, request: ActivityRequest, partition: int, offset: int, epoch: int, source: str,
                  message: Message | None = None) -> None:
        fn = self._registry.get(request.name)
        is_async = fn is not None and inspect.iscoroutinefunction(fn)
        if fn is not None and (self.metrics is not None or self.tracing is not None):
            fn = self._observed(fn, request, message, is_async)
        ctx = ActivityContext(orchestration_id=request.instance_id, task_id=request.task_id)

        def encode(result: str | None, failure: FailureDetails | None) -> bytes:
            body = ActivityResult(
                execution_id=request.execution_id,
                task_id=request.task_id,
                result=result,
                failure_details=failure,
            )
            return self._codec.encode(OrchestratorMessage(
                id=f"{request.id}/result", instance_id=request.instance_id, sent_at=_utcnow(), body=body
            ))

        def too_large(reason: str) -> bytes:
            return encode(None, FailureDetails(
                message=f"the result of activity {request.name!r} is too large to send: {reason}",
                error_type="ActivityResultTooLargeError",
            ))

        def finish(outcome: tuple[str | None, FailureDetails | None]) -> None:
            try:
                value = encode(*outcome)
            except CodecError as error:  # e.g. a failure message that is not valid text
                value = encode(None, _failure(error))
            self._send_now(_Outgoing(
                partition, offset, epoch, self._topics.orchestrator_events,
                request.instance_id.encode("utf-8"), value, f"result of {request.id}", too_large, source,
            ))

        if fn is None:
            finish((None, FailureDetails(
                message=f"no activity named {request.name!r} is registered with this worker "
                    f"(it takes every activity request of the hub: its work-item filters are cleared) "
                        f"(registered: {', '.join(self._registry.names()) or 'none'})",
                error_type="ActivityNotRegisteredError",
            )))
            return
        future: Future
        if is_async:
            assert self._loop is not None
            future = asyncio.run_coroutine_threadsafe(_run_async(fn, ctx, request.input, self.payloads), self._loop)
        else:
            assert self._executor is not None
            future = self._executor.submit(_run_sync, fn, ctx, request.input, self.payloads)
        future.add_done_callback(lambda f: None if f.cancelled() else finish(f.result()))

    def _observed(self, fn: Callable[..., Any], request: ActivityRequest, message: Message | None,
                  is_async: bool) -> Callable[..., Any]:
        """``fn`` inside its trace span and timed for the metrics (only when those are on)."""
        if self.tracing is not None:
            fn = self.tracing.activity_wrapper(
                fn, request.name, message.headers() if message is not None else None,
                {"durable_kafka.instance_id": request.instance_id, "durable_kafka.task_id": request.task_id},
                is_async)
        if self.metrics is None:
            return fn
        am = self._activity_metrics.get(request.name)
        if am is None:
            am = self._activity_metrics[request.name] = self.metrics.activity(request.name)
        if message is not None:
            kind, written_ms = message.timestamp()
            if kind != 0 and written_ms > 0:  # TIMESTAMP_NOT_AVAILABLE is 0
                am.wait.observe(max(0.0, time.time() - written_ms / 1000))
        return _timed(fn, am, is_async)

    def _send_now(self, done: _Outgoing) -> None:
        """Produce a result from the thread that computed it: no wait for the loop thread.

        confluent-kafka's produce() is thread-safe; delivery reports are still served by the
        loop thread (producer.poll), which is where offsets are tracked. Anything unusual
        (a full local queue, an oversized record) goes through the loop thread's queue.
        """
        producer = self._producer
        if producer is None:
            self._done.put(done)
            return
        try:
            producer.produce(done.topic, key=done.key, value=done.value,
                             on_delivery=self._delivery_callback(done))
        except (BufferError, KafkaException):
            self._done.put(done)

    def _delivery_callback(self, done: _Outgoing) -> Callable[[KafkaError | None, Message], None]:
        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is None:
                self._finish(done.source, done.partition, done.offset, done.epoch)
            elif error.code() == KafkaError.MSG_SIZE_TOO_LARGE and done.shrink is not None:
                self._done.put(self._shrunk(done, str(error)))
            else:  # retried: a result must never be lost
                log.warning("%s not delivered (%s); retrying", done.label, error)
                self._done.put(done)

        return delivered

    def _produce_result(self, producer: Producer, done: _Outgoing) -> None:
        delivered = self._delivery_callback(done)
        while True:
            try:
                producer.produce(done.topic, key=done.key, value=done.value, on_delivery=delivered)
                return
            except BufferError:  # local queue full: let deliveries make room
                producer.poll(0.05)
            except KafkaException as error:
                if error.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE or done.shrink is None:
                    raise
                done = self._shrunk(done, str(error.args[0]))

    @staticmethod
    def _shrunk(done: _Outgoing, reason: str) -> _Outgoing:
        assert done.shrink is not None
        log.warning("%s is too large (%d bytes); sending a stand-in", done.label, len(done.value))
        return _Outgoing(done.partition, done.offset, done.epoch, done.topic, done.key,
                         done.shrink(reason), done.label, source=done.source)

    def _dead_letter(self, message: Message, epoch: int, error: CodecError) -> None:
        key = message.key()
        letter = dead_letter_for(message, str(error), type(error).__name__,
                                 key.decode("utf-8", "replace") if key is not None else None)
        log.warning("dead-lettering %s: %s", letter.id, error)
        if self._consumer_metrics is not None:
            self._consumer_metrics.deadletter(type(error).__name__)
        self._done.put(_Outgoing(
            message.partition(), message.offset(), epoch, self._topics.deadletter,
            letter.key, self._codec.encode(letter), f"dead letter {letter.id}",
            lambda reason: self._codec.encode(dataclasses.replace(
                letter, original=b"", reason=f"{letter.reason} (original dropped: {reason})")),
            message.topic() or "",
        ))

    def _finish(self, source: str, partition: int, offset: int, epoch: int) -> None:
        with self._in_flight_lock:
            self._in_flight -= 1
        tracker = self._trackers.get((source, partition))
        if tracker is not None and tracker.epoch == epoch:
            tracker.finish(offset)

    # ------------------------------------------------------------------ commits and rebalances

    def _commit(self, *, sync: bool, partitions: list[tuple[str, int]] | None = None) -> None:
        self._last_commit = time.monotonic()
        offsets = []
        for (topic, partition), tracker in self._trackers.items():
            if partitions is not None and (topic, partition) not in partitions:
                continue
            if tracker.commit_at is not None:
                offsets.append(TopicPartition(topic, partition, tracker.commit_at))
                tracker.commit_at = None
        if not offsets or self._consumer is None:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=not sync)
        except KafkaException as error:
            log.warning("committing %s failed: %s (the requests will run again)", offsets, error)

    def wait_assigned(self, timeout: float) -> bool:
        """Block until the consumer group gave this worker its first partitions (or timeout)."""
        return self._assigned.wait(timeout)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._epoch += 1
        for tp in partitions:
            self._trackers[(tp.topic, tp.partition)] = _PartitionTracker(epoch=self._epoch)
        self._assigned.set()
        if self._paused and partitions:
            consumer.pause(partitions)
        log.debug("assigned %s", [(tp.topic, tp.partition) for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = [(tp.topic, tp.partition) for tp in partitions]
        if self._producer is not None:
            # finish what is running for these partitions first (bounded by the drain timeout),
            # so that scaling a set of activities out or in re-runs nothing: the new owner
            # starts after the last request this worker answered
            deadline = time.monotonic() + self._drain_timeout
            while time.monotonic() < deadline and any(
                    (t := self._trackers.get(key)) is not None and t.order for key in revoked):
                self._service(self._producer)
                self._producer.poll(_BUSY_POLL)
            self._producer.poll(0)  # take in acknowledgements that already arrived
        self._commit(sync=True, partitions=revoked)
        for partition in revoked:
            self._trackers.pop(partition, None)
        log.debug("revoked %s", revoked)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:  # another member owns them now: committing would be wrong
            self._trackers.pop((tp.topic, tp.partition), None)
