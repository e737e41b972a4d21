"""The engine of :class:`durable_kafka.testing.InMemoryBackend`: the real handlers on in-memory topics.

What runs is the production code path minus Kafka and RocksDB: the orchestration and entity
handlers (:mod:`durable_kafka.processors.orchestrations`, :mod:`~durable_kafka.processors.entities`,
hence the same shell, instance step, executor, appliers and entity step), records encoded and
sized by the same Avro codec, and activities run by the activity worker's own call wrappers.
What is replaced:

* topics are in-memory queues (one partition each), the stores are sorted dicts, and a batch's
  store writes and produced records become visible together when it "commits", as with a Kafka
  transaction;
* time is a virtual clock (the handlers' ``clock`` seam): the step time, hence
  ``ctx.current_utc_datetime`` and every timer's due time, come from it, and it moves only
  when a test asks (:meth:`Backend.skip_time`) or when a client waits for an instance that
  nothing but timers can move on (auto time skipping);
* nothing runs in the background: work is processed in the calling thread, to the point where
  nothing is left but timers and waits, whenever a client sends a command or reads. Runs are
  deterministic and need no sleeps.
"""

from __future__ import annotations

import asyncio
import bisect
import inspect
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, cast

from durable_kafka.connectors.activities import _failure, _run_async, _run_sync
from durable_kafka.errors import CodecError, ConfigurationError, InvalidArgumentError, PayloadTooLargeError
from durable_kafka.processors import store as keys
from durable_kafka.processors.actions import action_to_event
from durable_kafka.processors.entities import EntityHandler
from durable_kafka.processors.entity_step import SCHEDULED_PREFIX, EntityTopics
from durable_kafka.processors.executor import OrchestrationExecutor, OrchestratorRegistry
from durable_kafka.processors.instance import Topics
from durable_kafka.processors.orchestrations import OrchestrationHandler
from durable_kafka.processors.runtime import Transaction
from durable_kafka.processors.shell import KeyedHandlerShell
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.events import (
    ActivityRequest,
    ActivityResult,
    ClientReply,
    DeadLetter,
    EntityState,
    FailureDetails,
    HistoryEvent,
    HistoryBatch,
    HistoryRecord,
    InstanceStatus,
    OrchestratorMessage,
)
from durable_kafka.streams.events import history_records
from durable_kafka.streams.limits import check_record_size
from durable_kafka.streams.topics import HubTopics, validate_hub_name
from durable_kafka.task import ActivityContext

if TYPE_CHECKING:
    from durable_kafka._testing_client import InMemoryWorker

log = logging.getLogger(__name__)

#: One step of a run that never settles (an orchestrator looping on zero-length timers, say)
#: must not hang a test: past this many batches without settling, the run stops with an error.
MAX_BATCHES_PER_RUN = 100_000


def _ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


@dataclass
class _Record:
    """A consumed record, with the accessors of ``confluent_kafka.Message`` the handlers use."""

    _topic: str
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _timestamp_ms: int

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return 1, self._timestamp_ms  # TIMESTAMP_CREATE_TIME

    def error(self) -> None:
        return None

    def headers(self) -> None:
        return None


class _Store:
    """One partition's state store (the RocksDB ``PartitionStore`` reads the handlers use).

    Keys are kept sorted (bisect), so prefix scans and the due-time lookups cost what they
    cost in RocksDB rather than a sort of the whole store each time.
    """

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        keys = self._keys
        i = bisect.bisect_left(keys, prefix)
        found = []
        while i < len(keys) and keys[i].startswith(prefix):
            found.append(keys[i])
            i += 1
        for k in found:  # a snapshot: callers may write while they iterate
            yield k, self.data[k]

    def first(self, prefix: bytes) -> tuple[bytes, bytes] | None:
        i = bisect.bisect_left(self._keys, prefix)
        if i < len(self._keys) and self._keys[i].startswith(prefix):
            return self._keys[i], self.data[self._keys[i]]
        return None

    def apply(self, changes: dict[bytes, bytes | None]) -> None:
        for k, v in changes.items():
            if v is None:
                if self.data.pop(k, None) is not None:
                    del self._keys[bisect.bisect_left(self._keys, k)]
            else:
                if k not in self.data:
                    bisect.insort(self._keys, k)
                self.data[k] = v


class _Stores:
    """The StoreSet of a processor that owns the one partition 0."""

    def __init__(self) -> None:
        self.store = _Store()

    def get(self, partition: int) -> _Store | None:
        return self.store if partition == 0 else None


@dataclass
class _Config:
    changelog_topic: str


class _Processor:
    """What a handler reads of its :class:`~durable_kafka.processors.runtime.Processor`."""

    def __init__(self, changelog_topic: str) -> None:
        self.stores = _Stores()
        self.owned = {0}
        self.config = _Config(changelog_topic)

    @staticmethod
    def source_partition_count() -> int:
        return 1


class _Buffer:
    """The producer of one batch: records are kept until the batch commits."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None]] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, **_: Any) -> None:
        self.records.append((topic, key, value))


class _Registries:
    """The orchestrators of every started worker of a backend, looked up in start order."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def get(self, name: str) -> Callable[..., Any] | None:
        for worker in self._backend.running_workers():
            fn = worker._orchestrators.get(name)
            if fn is not None:
                return fn
        return None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def names(self) -> list[str]:
        return sorted({n for w in self._backend.running_workers() for n in w._orchestrators.names()})

    @property
    def versioning(self) -> Any:
        """The first running worker's ``use_versioning`` options (workers of a backend share code)."""
        for worker in self._backend.running_workers():
            return worker._orchestrators.versioning
        return None


class Backend:
    """In-memory topics, stores and clock, and the loop that runs the real handlers on them."""

    def __init__(self, *, hub: str = "default", start_time: datetime | None = None,
                 auto_skip_time: bool = True) -> None:
        self.hub = validate_hub_name(hub)
        self.topics = HubTopics(self.hub)
        self.codec = Codec.default()
        self.auto_skip_time = auto_skip_time
        if start_time is not None and not isinstance(start_time, datetime):
            raise InvalidArgumentError(f"start_time must be a datetime, got {start_time!r}")
        self._now_ms = _ms(start_time or datetime.now(timezone.utc))
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        t = self.topics
        self._queues: dict[str, deque[_Record]] = {
            t.orchestrator_events: deque(), t.entity_operations: deque(), t.activity_requests: deque()}
        self._offsets: dict[str, int] = {}
        self.history: list[HistoryRecord] = []
        self.statuses: dict[str, InstanceStatus] = {}
        self.entities: dict[str, EntityState] = {}
        self.replies: dict[str, ClientReply] = {}
        self.dead_letters: list[DeadLetter] = []
        self.outputs: dict[str, list[tuple[bytes | None, bytes | None]]] = {}
        self._workers: list[InMemoryWorker] = []
        self._entity_fns: dict[str, Any] = {}
        self._in_batch = False
        self._executor = OrchestrationExecutor(cast(OrchestratorRegistry, _Registries(self)))
        self._orch_proc = _Processor(t.orchestrations_changelog)
        self._entity_proc = _Processor(t.entities_changelog)
        self.orchestrations = OrchestrationHandler(
            cast(Any, self._orch_proc),
            topics=Topics(t.orchestrator_events, t.activity_requests, t.entity_operations, t.history, t.status,
                          t.replies, t.deadletter),
            deadletter_topic=t.deadletter, executor=self._executor,
            action_to_event=lambda a, ts, iid=None: action_to_event(a, ts, iid), codec=self.codec)
        self.entity_handler = EntityHandler(
            cast(Any, self._entity_proc),
            topics=EntityTopics(t.entity_operations, t.orchestrator_events, t.history, t.status),
            deadletter_topic=t.deadletter, entities=self._entity_fns, codec=self.codec)
        for handler in (self.orchestrations, self.entity_handler):
            handler.clock = self.now

    # ------------------------------------------------------------------ clock
    def now(self) -> datetime:
        """The virtual time (UTC)."""
        return _from_ms(self._now_ms)

    def skip_time(self, delta: timedelta) -> None:
        """Move the clock by ``delta``, firing every timer (and scheduled signal) due on the way, in
        due order, each at its own due time, with everything it starts run before the next."""
        if not isinstance(delta, timedelta) or delta < timedelta(0):
            raise InvalidArgumentError(f"skip_time takes a non-negative timedelta, got {delta!r}")
        with self.lock:
            target = self._now_ms + int(delta.total_seconds() * 1000)
            self.run()
            while True:
                due = self.next_due_ms()
                if due is None or due > target or not self._workers:
                    break
                self._now_ms = max(self._now_ms, due)
                self.run()
            self._now_ms = target
            self.run()

    def skip_to_next_timer(self) -> bool:
        """Move the clock to the earliest pending due time and run; False if nothing is due."""
        due = self.next_due_ms()
        if due is None or not self._workers:
            return False
        self._now_ms = max(self._now_ms, due)
        self.run()
        return True

    def next_due_ms(self) -> int | None:
        dues = [keys.due_ms_of(first[0]) for first in (
            self._orch_proc.stores.store.first(keys.TIMER_PREFIX),
            self._entity_proc.stores.store.first(SCHEDULED_PREFIX)) if first is not None]
        return min(dues) if dues else None

    # ------------------------------------------------------------------ workers
    def running_workers(self) -> list[InMemoryWorker]:
        return list(self._workers)

    def attach(self, worker: InMemoryWorker) -> None:
        with self.lock:
            if worker in self._workers:
                return
            if not self._workers:  # the first worker's timer chunking applies (Worker(maximum_timer_interval=...))
                self._executor.maximum_timer_interval = worker.maximum_timer_interval
            if worker._triggers or worker._outputs:
                raise ConfigurationError("trigger and output routes read and write Kafka topics: the in-memory "
                                         "backend does not run them (test them against the broker)")
            self._workers.append(worker)
            self._refresh_entities()
            self.run()

    def detach(self, worker: InMemoryWorker) -> None:
        with self.lock:
            if worker in self._workers:
                self._workers.remove(worker)
                self._refresh_entities()
                # the executor cache holds generators of the stopped worker's code: drop it, as a
                # restarted worker would (the next step replays from the stored history)
                self.orchestrations.cache.clear()
            self.changed.notify_all()

    def _refresh_entities(self) -> None:
        self._entity_fns.clear()
        for worker in reversed(self._workers):
            self._entity_fns.update(worker._entities)

    # ------------------------------------------------------------------ topics
    def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Append a record to a topic (what a producer's delivered record amounts to)."""
        with self.lock:
            queue = self._queues.get(topic)
            if queue is not None:
                offset = self._offsets.get(topic, 0)
                self._offsets[topic] = offset + 1
                queue.append(_Record(topic, offset, key, value, self._now_ms))
            else:
                self._deliver(topic, key, value)
            self.changed.notify_all()

    def _deliver(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        t = self.topics
        text_key = key.decode("utf-8", "replace") if key is not None else ""
        if topic == t.history:
            if value is not None:
                # one HistoryBatch per orchestration step (D20), a HistoryRecord per entity event
                self.history.extend(history_records(self.codec.decode(value, expected=(HistoryRecord, HistoryBatch))))
        elif topic == t.status:
            if value is None:
                self.statuses.pop(text_key, None)
                self.entities.pop(text_key, None)
                return
            record = self.codec.decode(value)
            if isinstance(record, EntityState):
                self.entities[record.entity_id] = record
            else:
                self.statuses[record.instance_id] = record
        elif topic == t.replies:
            if value is not None:
                reply = self.codec.decode(value, expected=ClientReply)
                self.replies[reply.request_id] = reply
        elif topic == t.deadletter:
            if value is not None:
                letter = self.codec.decode(value, expected=DeadLetter)
                log.warning("dead letter on %s: %s", topic, letter.reason)
                self.dead_letters.append(letter)
        else:
            self.outputs.setdefault(topic, []).append((key, value))

    # ------------------------------------------------------------------ running
    def run(self) -> None:
        """Process every queued record and due timer, until nothing but timers and waits is left.

        Runs only while a worker is started. Re-entrant: an activity that uses a client runs
        what it sends at once; inside a batch (an entity operation that uses a client) the
        records wait for the running loop.
        """
        with self.lock:
            if not self._workers or self._in_batch:
                return
            t = self.topics
            for _ in range(MAX_BATCHES_PER_RUN):
                if self._queues[t.orchestrator_events]:
                    self._batch(self.orchestrations, self._orch_proc, self._drain(t.orchestrator_events))
                elif self._queues[t.entity_operations]:
                    self._batch(self.entity_handler, self._entity_proc, self._drain(t.entity_operations))
                elif self._queues[t.activity_requests]:
                    for rec in self._drain(t.activity_requests):
                        self._run_activity(rec)
                elif not self._tick():
                    self.changed.notify_all()
                    return
            raise RuntimeError(f"the in-memory backend did not settle after {MAX_BATCHES_PER_RUN} batches "
                               "(an orchestration that loops without waiting on anything?)")

    def _drain(self, topic: str) -> list[_Record]:
        queue = self._queues[topic]
        out = list(queue)
        queue.clear()
        return out

    def _tick(self) -> bool:
        fired = False
        for handler, proc in ((self.orchestrations, self._orch_proc), (self.entity_handler, self._entity_proc)):
            if handler.has_due_work(self._now_ms):
                self._batch(handler, proc, None)
                fired = True
        return fired

    def _batch(self, handler: KeyedHandlerShell, proc: _Processor, records: list[_Record] | None) -> None:
        """One transaction: the handler's step, then its store writes and records, all or nothing."""
        buffer = _Buffer()
        txn = Transaction(cast(Any, buffer), cast(Any, proc.stores), changelog_topic=proc.config.changelog_topic)
        self._in_batch = True
        try:
            if records is None:
                cast(Any, handler).tick(txn, self._now_ms)
            else:
                handler.process(txn, cast(Any, records))
        except BaseException:
            handler.on_aborted()
            raise
        finally:
            self._in_batch = False
        proc.stores.store.apply(txn.changes.get(0, {}))
        handler.on_committed()
        for topic, key, value in buffer.records:
            self.send(topic, key, value)

    def _run_activity(self, rec: _Record) -> None:
        """What the activity worker does with one request, in this thread (async ones on a loop)."""
        try:
            request = self.codec.decode(rec.value() or b"", expected=ActivityRequest)
        except CodecError as error:
            log.error("undecodable activity request at offset %d: %s", rec.offset(), error)
            return
        fn = None
        for worker in self._workers:
            fn = worker._activities.get(request.name)
            if fn is not None:
                break
        ctx = ActivityContext(orchestration_id=request.instance_id, task_id=request.task_id)
        outcome: tuple[str | None, FailureDetails | None]
        if fn is None:
            registered = sorted({n for w in self._workers for n in w._activities.names()})
            outcome = (None, FailureDetails(
                message=f"no activity named {request.name!r} is registered with this worker "
                        f"(registered: {', '.join(registered) or 'none'})",
                error_type="ActivityNotRegisteredError"))
        elif inspect.iscoroutinefunction(fn):
            with ThreadPoolExecutor(1) as pool:  # its own event loop, whatever loop the test runs
                outcome = pool.submit(asyncio.run, _run_async(fn, ctx, request.input)).result()
        else:
            outcome = _run_sync(fn, ctx, request.input)
        self.send(self.topics.orchestrator_events, request.instance_id.encode("utf-8"),
                  self._activity_result(request, *outcome))

    def _activity_result(self, request: ActivityRequest, result: str | None,
                         failure: FailureDetails | None) -> bytes:
        def encode(result: str | None, failure: FailureDetails | None) -> bytes:
            return self.codec.encode(OrchestratorMessage(
                id=f"{request.id}/result", instance_id=request.instance_id, sent_at=self.now(),
                body=ActivityResult(execution_id=request.execution_id, task_id=request.task_id, result=result,
                                    failure_details=failure)))

        try:
            value = encode(result, failure)
        except CodecError as error:
            value = encode(None, _failure(error))
        try:
            check_record_size(self.topics.orchestrator_events, request.instance_id.encode(), value)
        except PayloadTooLargeError as error:
            value = encode(None, FailureDetails(
                message=f"the result of activity {request.name!r} is too large to send: {error}",
                error_type="ActivityResultTooLargeError"))
        return value

    # ------------------------------------------------------------------ reads
    def history_of(self, instance_id: str, execution_id: str) -> list[HistoryEvent]:
        seen: dict[str, HistoryRecord] = {}
        for rec in self.history:
            if rec.instance_id == instance_id and rec.execution_id == execution_id:
                seen.setdefault(rec.id, rec)
        return [r.event for r in sorted(seen.values(), key=lambda r: r.index)]

    def is_idle(self) -> bool:
        """True when nothing is queued (timers may be pending)."""
        return not any(self._queues.values())

