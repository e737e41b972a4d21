"""The orchestration processor: `<hub>.orchestrator-events` in, everything an instance does out.

This is the shell around :mod:`.instance` (state transitions) and the pure executor; the part
it shares with the entity processor (decode, route check, group by key, dead-letter, encode and
size, dirty-cache tracking) is :mod:`.shell`. One executor episode per instance per batch,
however many messages it got; it keeps live executors in a bounded LRU cache so that a steady-state step never
replays the whole history, fires due timers from the partition-local index, and dead-letters
poison input without stopping the partition.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import OrderedDict
from dataclasses import replace
from datetime import datetime
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import Message

from durable_kafka._tracing import PendingSpan, Tracing, adopt_caller, orchestration_span, step_spans, tag_outgoing
from durable_kafka.errors import CodecError, PayloadTooLargeError
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.events import FailureDetails, HistoryEvent, InstanceHeader, InstanceStatus, OrchestratorMessage
from durable_kafka.streams.failures import qualified_name
from durable_kafka.streams.limits import check_record_size
from durable_kafka.streams.payloads import bind
from durable_kafka.streams.status import TERMINAL_STATUSES as TERMINAL

from . import store as keys
from .instance import (
    ACTIVE,
    PENDING,
    START_TIMER_ID,
    InstanceStep,
    Loaded,
    Outcome,
    Topics,
    fail_instance,
    status_of,
)
from .history_batches import split_oversized_batches
from .instance_state import recover_open_work, to_ms
from .executor import OrchestrationExecutor, OrchestratorRegistry
from .routing import ActivityRouter
from .runtime import Processor, Transaction

if TYPE_CHECKING:
    from durable_kafka._metrics import EngineMetrics
from .shell import KeyedHandlerShell, Writes, partition_of

log = logging.getLogger(__name__)

MAX_TIMERS_PER_TICK = 2000
#: the store key family of events raised to an instance that does not exist yet
#: (``store.waiting_prefix``: ``w\0<instance>\0``)
WAITING_FAMILY = b"w" + keys.SEP


class OrchestrationHandler(KeyedHandlerShell):
    """Implements :class:`~.runtime.Handler` for orchestration instances (shell: :mod:`.shell`)."""

    message_type = OrchestratorMessage
    #: set by the worker when asked for (durable_kafka._metrics / _tracing); None: off, one check each
    metrics: EngineMetrics | None = None
    tracing: Tracing | None = None

    def __init__(self, processor: Processor, *, topics: Topics, deadletter_topic: str, executor: Any,
                 action_to_event: Any, cache_size: int = 2000, codec: Codec | None = None,
                 on_ended: Callable[[InstanceStatus], list[tuple[str, bytes, bytes]]] | None = None,
                 router: ActivityRouter | None = None) -> None:
        super().__init__(processor, deadletter_topic=deadletter_topic, codec=codec)
        #: makes sure each activity's request topic exists before a transaction writes to it
        self.router = router
        #: completion routes (durable_kafka._trigger_outputs): records for an instance that ended,
        #: written in the same transaction as the step that ended it
        self.on_ended = on_ended
        self.topics = topics
        self.executor = executor
        self.action_to_event = action_to_event
        self.cache_size = cache_size
        self.stats.update({"episodes": 0, "cache_hits": 0, "cache_misses": 0, "too_large": 0})
        #: what the open transaction's steps want counted and traced, applied once it commits
        self._spans: list[PendingSpan] = []
        self._counts: list[tuple[str, str, str]] = []
        self._next_timer_count = 0.0
        #: assigned partitions whose parked instances (VersionFailureStrategy.REJECT) this worker
        #: has not re-evaluated yet: a rolling deploy hands them over with no new record for them
        self._parked_scan: set[int] = set()
        self._scanned: set[int] = set()  # scanned in the open transaction: rescanned if it aborts
        self._scan_from: dict[int, bytes] = {}  # where a scan cut by the time budget goes on
        #: owned partitions known to hold no waiting event (WAITING_FAMILY): loading an instance
        #: that does not exist there needs no store scan for its early events. Found on
        #: assignment; a step that keeps a waiting event takes its partition out for good (till
        #: the next assignment), so an aborted transaction can only leave it out, never wrongly in.
        self._no_waiting: set[int] = set()

    # ------------------------------------------------------------------ Handler protocol
    def key_of(self, msg: OrchestratorMessage) -> str:
        return msg.instance_id

    def run_key(self, txn: Transaction, partition: int, key: str, now: datetime,
                msgs: list[Any], raws: list[Message]) -> None:
        self._run_instance(txn, partition, key, now, msgs=msgs, raws=raws)

    def on_undecodable(self, txn: Transaction, rec: Message, key: str | None, exc: CodecError,
                       now: datetime) -> None:
        if key is not None and self.routed_here(rec, key):  # its instance cannot go on: it fails
            self._fail(txn, partition_of(rec), key, now, FailureDetails(
                f"poison input at {rec.topic()}[{rec.partition()}]@{rec.offset()}: {exc}", qualified_name(type(exc))))

    def has_due_work(self, now_ms: int) -> bool:
        if self.metrics is not None:
            self._count_timers()
        if self._parked_scan & set(self.proc.owned):
            return True
        return keys.any_due(self.proc.stores, list(self.proc.owned), keys.TIMER_PREFIX, now_ms)

    def _run_parked(self, txn: Transaction, now: datetime) -> None:
        """Give each parked instance of a newly assigned partition a step: it runs if this
        worker accepts its version, and stays parked (unchanged) if not."""
        for p in sorted(self._parked_scan & set(self.proc.owned)):
            store = self.proc.stores.get(p)
            self._parked_scan.discard(p)
            self._scanned.add(p)
            if store is None:
                continue
            after = self._scan_from.pop(p, b"")
            for n, (k, _) in enumerate(k_v for k_v in list(store.scan(keys.PARKED_PREFIX)) if k_v[0] > after):
                if n and txn.over_budget():  # out of time: the next transaction goes on from here
                    self._parked_scan.add(p)
                    self._scan_from[p] = after
                    return
                self._run_instance(txn, p, k[len(keys.PARKED_PREFIX):].decode(), now)
                after = k
        self._parked_scan &= set(self.proc.owned)

    def tick(self, txn: Transaction, now_ms: int) -> None:
        now = self.clock()
        if self._parked_scan:
            self._run_parked(txn, now)
        if self.metrics is not None:
            self._count_timers()
        for p in list(self.proc.owned):
            store = self.proc.stores.get(p)
            if store is None:
                continue
            due: OrderedDict[str, list[tuple[bytes, bytes, ev.TimerRecord]]] = OrderedDict()
            fired = keys.take_due(store, lambda k: txn.get(p, k), lambda k: txn.put(p, k, None),
                                  keys.TIMER_PREFIX, now_ms, MAX_TIMERS_PER_TICK)
            for k, v in fired:
                try:
                    timer = self.codec.decode(v, expected=ev.TimerRecord)
                except CodecError:  # never written by us; must not stop the partition
                    log.exception("dropping an undecodable timer under %r", k)
                    continue
                due.setdefault(timer.instance_id, []).append((k, v, timer))
                if self.metrics is not None:
                    self.metrics.timer_lateness.observe(max(0, now_ms - to_ms(timer.fire_at)) / 1000)
            items = list(due.items())
            for n, (iid, timers) in enumerate(items):
                if n and txn.over_budget():
                    # out of time: the timers not fired go back into the index for the next transaction
                    for _, rest in items[n:]:
                        for k, v, _timer in rest:
                            txn.put(p, k, v)
                    return
                self._run_instance(txn, p, iid, now, timers=[t for _, _, t in timers])

    def on_assigned(self, partitions: list[int]) -> None:
        self._parked_scan.update(partitions)  # a whole scan of each, from its first parked key
        for p in partitions:
            self._scan_from.pop(p, None)
            store = self.proc.stores.get(p)  # restored by now
            if store is not None and store.first(WAITING_FAMILY) is None:
                self._no_waiting.add(p)
            else:
                self._no_waiting.discard(p)

    def on_aborted(self) -> None:
        super().on_aborted()
        self._parked_scan |= self._scanned  # the scan's steps never happened: do them again
        for p in self._scanned:
            self._scan_from.pop(p, None)
        self._scanned.clear()
        self._counts.clear()  # nothing of the aborted steps is counted or traced
        self._spans.clear()

    def on_committed(self) -> None:
        super().on_committed()
        self._scanned.clear()
        if self._counts:
            m = self.metrics
            if m is not None:
                for what, name, status in self._counts:
                    if what == "started":
                        m.orchestration_started(name)
                    else:
                        m.orchestration_ended(name, status)
            self._counts.clear()
        if self._spans:
            if self.tracing is not None:
                self.tracing.emit(self._spans)
            self._spans.clear()

    def _count_timers(self) -> None:
        """Every 15 s, the timers waiting in the owned partitions (a key scan, no decoding)."""
        now = time.monotonic()
        if now < self._next_timer_count or self.metrics is None:
            return
        self._next_timer_count = now + 15.0
        total = 0
        for p in list(self.proc.owned):
            store = self.proc.stores.get(p)
            if store is not None:
                total += sum(1 for _ in store.scan(keys.TIMER_PREFIX))
        self.metrics.timers_pending.set(total)

    def on_revoked(self, partitions: list[int]) -> None:
        gone = set(partitions)
        self._no_waiting -= gone
        for iid in [i for i, s in self.cache.items() if s.partition in gone]:
            del self.cache[iid]

    # ------------------------------------------------------------------ one instance
    def _run_instance(self, txn: Transaction, partition: int, iid: str, now: datetime, *,
                      msgs: Sequence[OrchestratorMessage] = (), raws: Sequence[Message] = (),
                      timers: Sequence[ev.TimerRecord] = ()) -> None:
        # large payloads of this instance are stored (and read) inside this transaction
        with bind(self.payloads, iid, txn):
            self._run_instance_bound(txn, partition, iid, now, msgs=msgs, raws=raws, timers=timers)

    def _run_instance_bound(self, txn: Transaction, partition: int, iid: str, now: datetime, *,
                            msgs: Sequence[OrchestratorMessage] = (), raws: Sequence[Message] = (),
                            timers: Sequence[ev.TimerRecord] = ()) -> None:
        self.touch(iid)
        before: tuple[str, str] | None = None
        try:
            loaded = self._load(txn, partition, iid)
            before, old = _status_of(loaded), loaded.header
            if self.tracing is not None and raws:
                adopt_caller(msgs, raws)
            step = self._step(loaded, iid, now)
            step.apply_messages(list(msgs))
            for t in timers:
                step.apply_timer(t)
            outcome = step.finish()
            if self.tracing is not None:
                self._trace_step(step, outcome, msgs, timers, now)
            writes = self.encode(outcome)
            if step.new_events or outcome.puts or outcome.produce:
                self.stats["episodes"] += 1
        except PayloadTooLargeError as exc:
            # the input was fine; what the instance produced cannot be carried: it ends FAILED
            self.cache.pop(iid, None)
            self.stats["too_large"] += 1
            log.warning("instance %s: %s; failing it", iid, exc)
            if not self._fail_new(txn, partition, iid, now, msgs, raws, exc):
                self._fail(txn, partition, iid, now, FailureDetails(str(exc), qualified_name(type(exc))))
            return
        except Exception as exc:  # noqa: BLE001 - poison input must not stop the partition
            self.cache.pop(iid, None)
            reason = f"{type(exc).__name__}: {exc}"
            log.error("instance %s: cannot apply input (%s); dead-lettering it", iid, reason)
            tb = traceback.format_exc()
            for raw in raws:
                self.dead_letter(txn, raw, f"cannot apply: {reason}", type(exc).__name__, iid)
            self._fail(txn, partition, iid, now, FailureDetails(f"cannot apply input: {reason}", qualified_name(type(exc)), tb))
            return
        if self.router is not None:  # outside the try: a broker error retries the batch, fails nothing
            self.router.prepare((p.topic, p.value) for p in outcome.produce)
        self._write(txn, partition, iid, step.s, outcome, writes, before, old)

    def _trace_step(self, step: InstanceStep, outcome: Outcome, msgs: Sequence[OrchestratorMessage],
                    timers: Sequence[ev.TimerRecord], now: datetime) -> None:
        """Trace context on what the step sends; spans of the timers and entity calls it completed."""
        h = step.s.header
        tag_outgoing(outcome.produce, step.iid, h)
        if h is not None and (timers or msgs):
            self._spans.extend(step_spans(
                step.iid, h, msgs, timers, lambda kind, ident: (kind, ident) in step._staged,
                lambda execution_id: self._history_cache[(step.iid, execution_id)], now))

    def _observe_end(self, loaded: Loaded, before: tuple[str, str] | None, old: InstanceHeader | None) -> None:
        """Stage the counts and the orchestration spans of executions this step started or ended."""
        h = loaded.header
        if h is None:
            return
        if (old is not None and old is not h and before is not None and before[0] in ACTIVE
                and old.runtime_status not in ACTIVE):  # ended and replaced in one step (continue-as-new)
            self._ended(old)
        if before is None or before[1] != h.execution_id:
            self._counts.append(("started", h.name, ""))
        if h.runtime_status in TERMINAL and not (before is not None and before[0] in TERMINAL
                                                 and before[1] == h.execution_id):
            self._ended(h)

    def _ended(self, h: InstanceHeader) -> None:
        self._counts.append(("ended", h.name, h.runtime_status.name.lower()))
        if self.tracing is not None:
            self._spans.append(orchestration_span(h, h.last_updated_at))

    def encode(self, outcome: Outcome) -> Writes:
        """Encode and size the outcome; a history batch too large for one record is split first.

        The split runs only after a size failure, so the common step encodes once.
        """
        try:
            return super().encode(outcome)
        except PayloadTooLargeError:
            if not split_oversized_batches(outcome, self.codec):
                raise
            return super().encode(outcome)

    def _step(self, loaded: Loaded, iid: str, now: datetime, executor: Any = None) -> InstanceStep:
        return InstanceStep(loaded=loaded, instance_id=iid, now=now, topics=self.topics,
                            executor=executor or self.executor,
                            load_history=lambda i, e: self._history_cache[(i, e)],
                            action_to_event=self.action_to_event, history_keys=self._history_cache.keys)

    def _fail_new(self, txn: Transaction, partition: int, iid: str, now: datetime,
                  msgs: Sequence[OrchestratorMessage], raws: Sequence[Message], exc: PayloadTooLargeError) -> bool:
        """Run a step that created an instance again, with code that fails at once with ``exc``.

        An instance that did not exist before this step has no state to fail; replaying the
        same messages with a failing orchestrator creates it (its start reply, its status)
        and ends it FAILED, so its caller learns why instead of waiting. False when the
        instance existed before the step (then :meth:`_fail` applies).
        """
        loaded = self._load(txn, partition, iid)
        if loaded.header is not None or not msgs:
            return False
        try:
            step = self._step(loaded, iid, now, executor=OrchestrationExecutor(_FailsWith(exc)))
            step.apply_messages(list(msgs))
            outcome = step.finish()
            writes = self.encode(outcome)
        except Exception as again:  # noqa: BLE001 - even the failure cannot be carried
            reason = f"{type(again).__name__}: {again}"
            log.error("instance %s: cannot record its failure (%s); dead-lettering its input", iid, reason)
            for raw in raws:
                self.dead_letter(txn, raw, f"cannot apply: {reason}", type(again).__name__, iid)
            return True
        self._write(txn, partition, iid, step.s, outcome, writes)
        return True

    def _load(self, txn: Transaction, partition: int, iid: str) -> Loaded:
        cached: Loaded | None = self.cache.get(iid)
        if cached is not None:
            self.cache.move_to_end(iid)
            self.stats["cache_hits"] += 1
            self._history_cache = _LazyHistory(self, txn, partition)
            return cached
        self.stats["cache_misses"] += 1
        raw = txn.get(partition, keys.instance_key(iid))
        header = self.codec.decode(raw, expected=ev.InstanceHeader) if raw is not None else None
        loaded = Loaded(instance_id=iid, partition=partition, header=header)
        self._history_cache = _LazyHistory(self, txn, partition)
        if header is None and partition not in self._no_waiting:  # early events wait in the store
            loaded.waiting = [self.codec.decode(v, expected=ev.HistoryRecord)
                              for _, v in txn.scan(partition, keys.waiting_prefix(iid))]
        if header is not None and header.runtime_status in ACTIVE:
            # the open work is not stored apart: fold it from history with the live step's appliers
            folded = recover_open_work(iid, self._history_cache[(iid, header.execution_id)])
            loaded.open_tasks, loaded.open_timers = folded.open_tasks, folded.open_timers
            loaded.open_requests, loaded.locks = folded.open_requests, folded.locks
            if header.runtime_status == PENDING and header.pending:
                first = header.pending[0].event
                if isinstance(first, ev.ExecutionStarted) and first.scheduled_start_at is not None:
                    loaded.open_timers[START_TIMER_ID] = to_ms(first.scheduled_start_at)
        return loaded

    def load_history(self, txn: Transaction, partition: int, iid: str, execution_id: str) -> list[HistoryEvent]:
        rows = txn.scan(partition, keys.history_prefix(iid, execution_id))
        # one HistoryBatch per step (D20); a HistoryRecord per event where an older release wrote it
        return [e for _, v in rows for e in ev.history_events(self.codec.decode(v))]

    def _write(self, txn: Transaction, partition: int, iid: str, loaded: Loaded, outcome: Outcome,
               writes: Writes, before: tuple[str, str] | None = None, old: InstanceHeader | None = None) -> None:
        ended = self._ended_records(loaded, before)
        if self.metrics is not None or self.tracing is not None:
            self._observe_end(loaded, before, old)
        if partition in self._no_waiting and any(
                v is not None and k.startswith(WAITING_FAMILY) for k, v in writes[0]):
            self._no_waiting.discard(partition)  # an event now waits here for its instance
        self.write(txn, partition, writes)
        for topic, key, value in ended:
            txn.produce(topic, key, value)
        if outcome.evict or loaded.header is None or loaded.header.runtime_status not in ACTIVE:
            self.cache.pop(iid, None)
        else:
            self.cache[iid] = loaded
            self.cache.move_to_end(iid)
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)

    def _ended_records(self, loaded: Loaded, before: tuple[str, str] | None) -> list[tuple[str, bytes, bytes]]:
        """Completion-route records if this step ended the instance's execution.

        It ended in this step if it is ended now and was not before, or was but as another
        execution (a restart or a start with ``replace`` that ran to its end in one step).
        """
        after = _status_of(loaded)
        if self.on_ended is None or loaded.header is None or after is None or after[0] not in TERMINAL:
            return []
        if before is not None and before[0] in TERMINAL and before == after:
            return []  # (a rewound instance that ends differently does publish its new end)
        records = self.on_ended(status_of(loaded.header))
        for topic, key, value in records:
            check_record_size(topic, key, value, f"the completion record of {loaded.header.instance_id!r}")
        return records

    def _fail(self, txn: Transaction, partition: int, iid: str, now: datetime, details: FailureDetails) -> None:
        """End the affected instance FAILED with the poison record's reason (best effort).

        If even the FAILED state cannot be carried (an input so large that its status snapshot
        plus the failure exceeds a record), the snapshot is written without the payloads: the
        history still holds them, and a stuck instance would be worse than a thinner status.
        """
        self.touch(iid)
        for strip in (False, True):
            try:
                self.cache.pop(iid, None)
                loaded = self._load(txn, partition, iid)
                if loaded.header is None or loaded.header.runtime_status not in ACTIVE:
                    return
                if strip:
                    loaded.header = replace(loaded.header, input=None, output=None, custom_status=None)
                before = _status_of(loaded)
                outcome = fail_instance(self._step(loaded, iid, now), details)
                self._write(txn, partition, iid, loaded, outcome, self.encode(outcome), before)
                return
            except PayloadTooLargeError:
                log.warning("instance %s: its failure does not fit with its payloads; writing it without them", iid)
                continue
            except Exception:  # noqa: BLE001 - the dead letter already holds the record; keep going
                log.exception("could not mark %s failed", iid)
                break
        self.cache.pop(iid, None)


def _status_of(loaded: Loaded) -> tuple[str, str] | None:
    """(runtime status, execution id) of the loaded instance, None if it does not exist."""
    h = loaded.header
    return (h.runtime_status, h.execution_id) if h is not None else None


class _FailsWith(OrchestratorRegistry):
    """A registry whose every orchestrator raises one error (see ``_fail_new``)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def get(self, name: str) -> Any:
        def fails(ctx: Any, _input: Any) -> Any:
            raise self.error

        return fails

    def __contains__(self, name: object) -> bool:
        return True


class _LazyHistory:
    """Loads an execution's history from the store only when a cache miss needs a replay."""

    def __init__(self, handler: OrchestrationHandler, txn: Transaction, partition: int) -> None:
        self.h, self.txn, self.p = handler, txn, partition
        self._memo: dict[tuple[str, str], list[HistoryEvent]] = {}

    def __getitem__(self, key: tuple[str, str]) -> list[HistoryEvent]:
        if key not in self._memo:
            self._memo[key] = self.h.load_history(self.txn, self.p, *key)
        return self._memo[key]

    def keys(self, instance_id: str, execution_id: str) -> list[bytes]:
        """The store keys of an execution's history records (one per batch), for tombstones."""
        return [k for k, _ in self.txn.scan(self.p, keys.history_prefix(instance_id, execution_id))]

