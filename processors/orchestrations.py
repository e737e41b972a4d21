"""The orchestration processor: `<hub>.orchestrator-events` in, everything an instance does out.

This is the shell around :mod:`.instance` (state transitions) and the pure executor: it decodes
records, groups a batch by instance (one executor episode per instance per batch, however many
messages it got), keeps live executors in a bounded LRU cache so that a steady-state step never
replays the whole history, fires due timers from the partition-local index, and dead-letters
poison input without stopping the partition.
"""

from __future__ import annotations

import logging
import traceback
from collections import OrderedDict
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from confluent_kafka import Message

from durable_kafka.errors import CodecError, PayloadTooLargeError
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import partition_for
from durable_kafka.streams.deadletter import dead_letter_for, misrouted_reason
from durable_kafka.streams.events import FailureDetails, HistoryEvent, OrchestratorMessage
from durable_kafka.streams.limits import check_record_size

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
    to_ms,
)
from .instance_state import recover_open_work
from .executor import OrchestrationExecutor, OrchestratorRegistry
from .runtime import Processor, Transaction

log = logging.getLogger(__name__)

MAX_TIMERS_PER_TICK = 2000


class OrchestrationHandler:
    """Implements :class:`~.runtime.Handler` for orchestration instances."""

    def __init__(self, processor: Processor, *, topics: Topics, deadletter_topic: str, executor: Any,
                 action_to_event: Any, cache_size: int = 2000, codec: Codec | None = None) -> None:
        self.proc = processor
        self.topics = topics
        self.deadletter_topic = deadletter_topic
        self.executor = executor
        self.action_to_event = action_to_event
        self.codec = codec or Codec.default()
        self.cache: OrderedDict[str, Loaded] = OrderedDict()
        self.cache_size = cache_size
        self.stats = {"episodes": 0, "cache_hits": 0, "cache_misses": 0, "deadletters": 0, "too_large": 0}
        self._dirty: set[str] = set()  # instances touched by the open transaction

    # ------------------------------------------------------------------ Handler protocol
    def process(self, txn: Transaction, records: list[Message]) -> None:
        now = datetime.now(timezone.utc)
        groups: OrderedDict[tuple[int, str], list[tuple[Message, OrderedDict | Any]]] = OrderedDict()
        for rec in records:
            key = rec.key().decode("utf-8", "replace") if rec.key() is not None else None
            try:
                msg = self.codec.decode(rec.value(), expected=OrchestratorMessage)
            except CodecError as exc:
                self.dead_letter(txn, rec, f"cannot decode: {exc}", type(exc).__name__, key)
                if key is not None and self._routed_here(rec, key):
                    self._fail(txn, rec.partition(), key, now, FailureDetails(
                        f"poison input at {rec.topic()}[{rec.partition()}]@{rec.offset()}: {exc}", type(exc).__name__))
                continue
            if not self._routed_here(rec, msg.instance_id):
                self.dead_letter(txn, rec, misrouted_reason(rec, msg.instance_id, self.proc.source_partition_count()),
                                 "MisroutedRecordError", msg.instance_id)
                continue
            groups.setdefault((rec.partition(), msg.instance_id), []).append((rec, msg))
        for (partition, iid), items in groups.items():
            self._run_instance(txn, partition, iid, now, msgs=[m for _, m in items], raws=[r for r, _ in items])

    def _routed_here(self, rec: Message, instance_id: str) -> bool:
        """Whether ``rec`` sits on the partition that owns ``instance_id``'s state.

        A record on another partition (a producer that keyed it by something else, or used
        another partitioner) would create a second, divergent copy of the instance there.
        """
        return partition_for(instance_id.encode("utf-8"), self.proc.source_partition_count()) == rec.partition()

    def has_due_work(self, now_ms: int) -> bool:
        return keys.any_due(self.proc.stores, list(self.proc.owned), keys.TIMER_PREFIX, now_ms)

    def tick(self, txn: Transaction, now_ms: int) -> None:
        now = datetime.now(timezone.utc)
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
        pass

    def on_revoked(self, partitions: list[int]) -> None:
        gone = set(partitions)
        for iid in [i for i, s in self.cache.items() if s.partition in gone]:
            del self.cache[iid]

    def on_aborted(self) -> None:
        # only instances this transaction touched can hold changes that never committed; the
        # rest of the cache equals the committed state and stays warm (a cold cache after a
        # fencing would make the retry replay every history, slower still)
        for iid in self._dirty:
            self.cache.pop(iid, None)
        self._dirty.clear()

    def on_committed(self) -> None:
        self._dirty.clear()

    # ------------------------------------------------------------------ one instance
    def _run_instance(self, txn: Transaction, partition: int, iid: str, now: datetime, *,
                      msgs: list[OrchestratorMessage] = (), raws: list[Message] = (),
                      timers: list[ev.TimerRecord] = ()) -> None:
        self._dirty.add(iid)
        try:
            loaded = self._load(txn, partition, iid)
            step = self._step(loaded, iid, now)
            step.apply_messages(list(msgs))
            for t in timers:
                step.apply_timer(t)
            outcome = step.finish()
            writes = self._encode(partition, outcome)
            if step.new_events or outcome.puts or outcome.produce:
                self.stats["episodes"] += 1
        except PayloadTooLargeError as exc:
            # the input was fine; what the instance produced cannot be carried: it ends FAILED
            self.cache.pop(iid, None)
            self.stats["too_large"] += 1
            log.warning("instance %s: %s; failing it", iid, exc)
            if not self._fail_new(txn, partition, iid, now, msgs, raws, exc):
                self._fail(txn, partition, iid, now, FailureDetails(str(exc), type(exc).__name__))
            return
        except Exception as exc:  # noqa: BLE001 - poison input must not stop the partition
            self.cache.pop(iid, None)
            reason = f"{type(exc).__name__}: {exc}"
            log.error("instance %s: cannot apply input (%s); dead-lettering it", iid, reason)
            tb = traceback.format_exc()
            for raw in raws:
                self.dead_letter(txn, raw, f"cannot apply: {reason}", type(exc).__name__, iid)
            self._fail(txn, partition, iid, now, FailureDetails(f"cannot apply input: {reason}", type(exc).__name__, tb))
            return
        self._write(txn, partition, iid, step.s, outcome, writes)

    def _step(self, loaded: Loaded, iid: str, now: datetime, executor: Any = None) -> InstanceStep:
        return InstanceStep(loaded=loaded, instance_id=iid, now=now, topics=self.topics,
                            executor=executor or self.executor,
                            load_history=lambda i, e: self._history_cache[(i, e)],
                            action_to_event=self.action_to_event)

    def _fail_new(self, txn: Transaction, partition: int, iid: str, now: datetime,
                  msgs: list[OrchestratorMessage], raws: list[Message], exc: PayloadTooLargeError) -> bool:
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
            writes = self._encode(partition, outcome)
        except Exception as again:  # noqa: BLE001 - even the failure cannot be carried
            reason = f"{type(again).__name__}: {again}"
            log.error("instance %s: cannot record its failure (%s); dead-lettering its input", iid, reason)
            for raw in raws:
                self.dead_letter(txn, raw, f"cannot apply: {reason}", type(again).__name__, iid)
            return True
        self._write(txn, partition, iid, step.s, outcome, writes)
        return True

    def _load(self, txn: Transaction, partition: int, iid: str) -> Loaded:
        cached = self.cache.get(iid)
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
        return [self.codec.decode(v, expected=ev.HistoryRecord).event for _, v in rows]

    def _encode(self, partition: int, outcome: Outcome) -> _Writes:
        """Encode every record of ``outcome`` and size it, before any of it is written.

        Sizing first matters: a Kafka transaction cannot take back a record, so an outcome with
        one record too large must be refused whole (PayloadTooLargeError) while nothing of it
        has reached the transaction yet.
        """
        encoded: dict[int, bytes] = {}  # a history record goes to the store and the topic: encode once
        changelog = self.proc.config.changelog_topic

        def enc(value: Any) -> bytes | None:
            if value is None:
                return None
            data = encoded.get(id(value))
            if data is None:
                data = encoded[id(value)] = self.codec.encode(value)
            return data

        puts = [(k, enc(v)) for k, v in outcome.puts.items()]
        produce = [(p.topic, p.key.encode(), enc(p.value)) for p in outcome.produce]
        for k, data in puts:
            check_record_size(changelog, k, data, f"the state record {k[:80]!r}")
        for (topic, key, data), p in zip(produce, outcome.produce):
            check_record_size(topic, key, data, f"the {type(p.value).__name__} record of {p.key!r}")
        return puts, produce

    def _write(self, txn: Transaction, partition: int, iid: str, loaded: Loaded, outcome: Outcome,
               writes: _Writes) -> None:
        puts, produce = writes
        for k, data in puts:
            txn.put(partition, k, data)
        for topic, key, data in produce:
            txn.produce(topic, key, data)
        if outcome.evict or loaded.header is None or loaded.header.runtime_status not in ACTIVE:
            self.cache.pop(iid, None)
        else:
            self.cache[iid] = loaded
            self.cache.move_to_end(iid)
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)

    def _fail(self, txn: Transaction, partition: int, iid: str, now: datetime, details: FailureDetails) -> None:
        """End the affected instance FAILED with the poison record's reason (best effort).

        If even the FAILED state cannot be carried (an input so large that its status snapshot
        plus the failure exceeds a record), the snapshot is written without the payloads: the
        history still holds them, and a stuck instance would be worse than a thinner status.
        """
        self._dirty.add(iid)
        for strip in (False, True):
            try:
                self.cache.pop(iid, None)
                loaded = self._load(txn, partition, iid)
                if loaded.header is None or loaded.header.runtime_status not in ACTIVE:
                    return
                if strip:
                    loaded.header = replace(loaded.header, input=None, output=None, custom_status=None)
                outcome = fail_instance(self._step(loaded, iid, now), details)
                self._write(txn, partition, iid, loaded, outcome, self._encode(partition, outcome))
                return
            except PayloadTooLargeError:
                log.warning("instance %s: its failure does not fit with its payloads; writing it without them", iid)
                continue
            except Exception:  # noqa: BLE001 - the dead letter already holds the record; keep going
                log.exception("could not mark %s failed", iid)
                break
        self.cache.pop(iid, None)

    def dead_letter(self, txn: Transaction, rec: Message, reason: str, error_type: str,
                    iid: str | None = None) -> None:
        """Put ``rec`` on the dead-letter topic with ``reason`` (a truncated copy that always fits)."""
        self.stats["deadletters"] += 1
        letter = dead_letter_for(rec, reason, error_type, iid)
        txn.produce(self.deadletter_topic, letter.key, self.codec.encode(letter))


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


_Writes = tuple[list[tuple[bytes, bytes | None]], list[tuple[str, bytes, bytes | None]]]


class _LazyHistory:
    """Loads an execution's history from the store only when a cache miss needs a replay."""

    def __init__(self, handler: OrchestrationHandler, txn: Transaction, partition: int) -> None:
        self.h, self.txn, self.p = handler, txn, partition
        self._memo: dict[tuple[str, str], list[HistoryEvent]] = {}

    def __getitem__(self, key: tuple[str, str]) -> list[HistoryEvent]:
        if key not in self._memo:
            self._memo[key] = self.h.load_history(self.txn, self.p, *key)
        return self._memo[key]

