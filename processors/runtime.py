"""A transactional consume-process-produce loop with changelog-backed RocksDB state.

Why not faust: see docs/DECISIONS.md. In short, faust commits table state and source offsets
separately and acks messages whose handler raised; this loop puts the outputs, the changelog
records and the consumed offsets into one Kafka transaction, then writes RocksDB.

kill -9 anywhere in :meth:`Processor._run_batch`:
  * before ``commit_transaction`` returns: the transaction is aborted (by our restart, which
    reuses the ``transactional.id`` and fences it, or by the transaction timeout); nothing of the
    batch is visible to read_committed readers; the source records are consumed again;
  * after commit, before the RocksDB write: local state lags the changelog; restore on the next
    assignment replays the changelog from the stored offset, so nothing is lost or doubled.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from durable_kafka.streams.config import consumer_config, producer_config
from durable_kafka.streams.reading import read_to_end, watermarks

from durable_kafka.errors import ChangelogStalledError, ConsumerFatalError, ProcessorStuckError
from durable_kafka.streams.limits import MAX_RECORD_BYTES, PRODUCER_MESSAGE_MAX_BYTES, check_record_size
from durable_kafka.streams.payload_topic import produce_and_wait
from durable_kafka.streams.connection import authorization_error, raise_if_unauthorized

from .store import MAX_STATE_AGE_S, StoreSet

if TYPE_CHECKING:
    from durable_kafka._metrics import ProcessorMetrics
    from durable_kafka._tracing import RecordHeaders

log = logging.getLogger(__name__)


@dataclass
class ProcessorConfig:
    """Kafka wiring of one processor instance on one worker."""

    bootstrap: str
    group_id: str
    source_topic: str
    #: None: a stateless processor (no store, nothing to restore): its whole effect is the
    #: records it produces and the offsets it commits with them (the trigger processor)
    changelog_topic: str | None
    transactional_id: str
    max_batch: int = 500
    poll_timeout: float = 0.05
    transaction_timeout_ms: int = 10_000
    operation_timeout: float = 10.0  # a transactional call blocked longer than this ends in recovery
    stuck_after: float = 60.0  # no committed progress for this long, with work waiting: reported stuck
    #: seconds of processing one transaction may hold (default: a quarter of the transaction
    #: timeout); the rest of a batch goes to the next transaction, so a slow batch never
    #: outlives the timeout (which would abort it, fence the producer and start the loop again)
    batch_time_budget: float | None = None
    #: static group membership (``group.instance.id``): a restarted worker takes its partitions
    #: back at once instead of after a rebalance; None derives it from the transactional id
    group_instance_id: str | None = None
    static_membership: bool = True
    producer_overrides: dict[str, Any] = field(default_factory=dict)
    consumer_overrides: dict[str, Any] = field(default_factory=dict)
    kafka_config: dict[str, Any] = field(default_factory=dict)  # security.protocol, sasl.*, ssl.*: every client here
    #: more than one source topic (any partition counts); empty: just ``source_topic``
    source_topics: tuple[str, ...] = ()
    #: records for topics starting with one of these are dispatched at once by a plain
    #: idempotent producer instead of waiting for the transaction's commit (activity requests:
    #: docs/DECISIONS.md "Activity requests leave before the step commits"); the transaction
    #: does not commit until every one of them is acknowledged
    dispatch_topics: tuple[str, ...] = ()

    def subscription(self) -> list[str]:
        """The topics the processor consumes."""
        return list(self.source_topics) or [self.source_topic]


class Transaction:
    """What one batch changes: store writes (coalesced per key) and produced records.

    Reads through :meth:`get` see this batch's own uncommitted writes, so several messages for
    one key inside a batch compose correctly.
    """

    def __init__(self, producer: Producer, stores: StoreSet, *, changelog_topic: str = "changelog",
                 deadline: float | None = None, dispatcher: Producer | None = None,
                 dispatch_topics: tuple[str, ...] = ()) -> None:
        self._producer = producer
        self._stores = stores
        self._changelog = changelog_topic
        self._dispatcher = dispatcher if dispatch_topics else None
        self._dispatch_topics = dispatch_topics
        self.changes: dict[int, dict[bytes, bytes | None]] = {}
        #: the keys of ``changes`` per partition, kept sorted, so that a prefix scan finds this
        #: batch's writes by bisection instead of walking every one of them (a batch of 500
        #: starts scans once per new instance: that walk was quadratic in the batch)
        self._sorted_keys: dict[int, list[bytes]] = {}
        self.produced = 0
        #: records handed to the dispatcher, and the first delivery error among them
        self.dispatched = 0
        self.dispatch_error: KafkaError | None = None
        #: time.monotonic() after which a handler should stop taking on more work
        self.deadline = deadline

    def over_budget(self) -> bool:
        """True once this transaction has used its processing time (handlers stop early)."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        # handlers size their records first; this is the backstop that keeps a record Kafka
        # would refuse out of the transaction (an abort would come back on every retry)
        if len(key) + (len(value) if value is not None else 0) > MAX_RECORD_BYTES:  # the message only then
            check_record_size(self._changelog, key, value, f"state record {key[:80]!r}")
        pending = self.changes.get(partition)
        if pending is None:
            pending = self.changes[partition] = {}
            self._sorted_keys[partition] = []
        if key not in pending:
            insort(self._sorted_keys[partition], key)
        pending[key] = value

    def get(self, partition: int, key: bytes) -> bytes | None:
        pending = self.changes.get(partition)
        if pending is not None and key in pending:
            return pending[key]
        store = self._stores.get(partition)
        return store.get(key) if store is not None else None

    def scan(self, partition: int, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """Prefix scan of the store overlaid with this batch's writes, in key order."""
        store = self._stores.get(partition)
        stored = list(store.scan(prefix)) if store is not None else []
        pending = self.changes.get(partition)
        if not pending:
            return stored
        ordered = self._sorted_keys[partition]
        mine = []
        for i in range(bisect_left(ordered, prefix), len(ordered)):
            k = ordered[i]
            if not k.startswith(prefix):
                break
            mine.append(k)
        if not mine:
            return stored
        merged: dict[bytes, bytes | None] = dict(stored)
        for k in mine:
            merged[k] = pending[k]
        return [(k, v) for k, v in sorted(merged.items()) if v is not None]

    def produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
                headers: RecordHeaders | None = None) -> None:
        check_record_size(topic, key, value)
        if self._dispatcher is not None and partition is None and topic.startswith(self._dispatch_topics):
            if headers:  # trace context (durable_kafka._tracing)
                self._dispatcher.produce(topic, value=value, key=key, on_delivery=self._on_dispatched,
                                         headers=headers)
            else:
                self._dispatcher.produce(topic, value=value, key=key, on_delivery=self._on_dispatched)
            self._dispatcher.poll(0)
            self.dispatched += 1
            return
        if headers:  # trace context (durable_kafka._tracing); most records carry none
            if partition is None:
                self._producer.produce(topic, value=value, key=key, headers=headers)
            else:
                self._producer.produce(topic, value=value, key=key, partition=partition, headers=headers)
        elif partition is None:
            self._producer.produce(topic, value=value, key=key)
        else:
            self._producer.produce(topic, value=value, key=key, partition=partition)
        self.produced += 1

    def _on_dispatched(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None and self.dispatch_error is None:
            self.dispatch_error = err

    def confirm_dispatched(self, timeout: float) -> None:
        """Wait until every dispatched record is acknowledged; raise if one is not.

        Called before the commit: a committed step whose request never reached Kafka would
        leave its instance waiting forever, so a failed or unconfirmed dispatch aborts the
        transaction instead (the step runs again and dispatches again; activities are at least
        once and results are matched to the committed history by task id).
        """
        if not self.dispatched or self._dispatcher is None:
            return
        left = self._dispatcher.flush(timeout)
        if self.dispatch_error is not None:
            raise KafkaException(self.dispatch_error)
        if left:
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT,
                                            f"{left} dispatched records not acknowledged in {timeout}s"))


    def produce_flushed(self, topic: str, partition: int, records: list[tuple[bytes, bytes | None]]) -> list[int]:
        """Produce ``records`` into this transaction and return their offsets (large-payload chunks).

        The chunks of a large payload must be in the transaction before the event that refers
        to them, and the reference names their offsets, so this waits for the broker's
        acknowledgement (they stay invisible to read_committed readers until the commit).
        """
        for key, value in records:
            check_record_size(topic, key, value, "a large-payload chunk")
        self.produced += len(records)
        return produce_and_wait(self._producer, topic, partition, records)


class Handler(Protocol):
    """The processor-specific part: turn source records (and due timers) into a transaction."""

    #: the handler's own counters (deadletters, episodes...), reported with the processor's
    stats: dict[str, int]

    def process(self, txn: Transaction, records: list[Message]) -> None: ...

    def tick(self, txn: Transaction, now_ms: int) -> None: ...

    def has_due_work(self, now_ms: int) -> bool: ...

    def on_assigned(self, partitions: list[int]) -> None: ...

    def on_revoked(self, partitions: list[int]) -> None: ...

    def on_aborted(self) -> None: ...

    def on_committed(self) -> None: ...

    def dead_letter(self, txn: Transaction, rec: Message, reason: str, error_type: str) -> None: ...


class _ReplaceProducer(Exception):
    """The producer must be replaced, not retried (librdkafka's advice for a timed-out EndTxn)."""


#: Produce errors that the same records will meet again however often they are retried.
_INCURABLE_CODES = frozenset(
    code for code in (getattr(KafkaError, name, None) for name in (
        "MSG_SIZE_TOO_LARGE", "INVALID_MSG_SIZE", "INVALID_MSG", "RECORD_LIST_TOO_LARGE", "INVALID_RECORD",
        "CORRUPT_MESSAGE", "INVALID_REQUIRED_ACKS", "POLICY_VIOLATION")) if code is not None)


def is_incurable(exc: BaseException) -> bool:
    """Whether retrying the same batch unchanged would fail the same way.

    Anything that is not a Kafka error (a bug met by one record, a record the handler could not
    size) is incurable; among Kafka errors, those about the records themselves are. Broker,
    network and coordinator errors are not: they pass, and the batch is retried.
    """
    if isinstance(exc, _ReplaceProducer):
        return False
    if not isinstance(exc, KafkaException):
        return True
    err = exc.args[0] if exc.args else None
    if not isinstance(err, KafkaError) or err.fatal():
        return False
    return err.code() in _INCURABLE_CODES or "too large" in (err.str() or "").lower()


class Processor:
    """Runs one handler over one source topic on its own thread."""

    def __init__(
        self,
        config: ProcessorConfig,
        stores: StoreSet,
        handler_factory: Callable[["Processor"], Handler],
        *,
        name: str = "processor",
    ) -> None:
        self.config = config
        self.stores = stores
        self.name = name
        self._stop = threading.Event()
        self._assigned = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.owned: set[int] = set()
        self._assigned_tps: set[tuple[str, int]] = set()  # (topic, partition): owned across several topics
        self._txn_began: float | None = None
        self._last_progress = time.monotonic()  # last commit, or last time there was nothing to do
        self._failures_since_progress = 0  # aborted or recovered transactions since then
        self._per_record_s = 0.1  # processing cost estimate; starts cautious, learns from each slice
        self._suspects: dict[tuple[str, int], int] = {}  # records to retry one per transaction
        self._isolated_failure: BaseException | None = None
        self._idle_polls = 0
        self._source_partitions: int | None = None
        self.stats = {"batches": 0, "records": 0, "process_s": 0.0, "commit_s": 0.0}
        #: (process, send_offsets, commit) seconds of the latest batches, for latency diagnosis
        self.timings: deque[tuple[float, float, float]] = deque(maxlen=4096)
        #: Prometheus children of this processor (durable_kafka._metrics), None when metrics are off
        self.metrics: ProcessorMetrics | None = None
        self.producer = self._new_producer()
        self.dispatcher = self._new_dispatcher() if config.dispatch_topics else None
        # settings from streams.config (quiet librdkafka logging, read_committed, the worker's
        # security settings in kafka_config), with this loop's own timing on top
        self.consumer = Consumer(consumer_config(
            config.bootstrap, config.group_id, kafka_config=config.kafka_config,
            **{
                "fetch.wait.max.ms": 5,
                "session.timeout.ms": 6_000,  # a killed worker's partitions move on after 6 s
                "heartbeat.interval.ms": 1_000,
                **self._static_membership(),
                **config.consumer_overrides,
            }))
        self.handler = handler_factory(self)

    def _new_producer(self) -> Producer:
        config = self.config
        return Producer(producer_config(
            config.bootstrap, kafka_config=config.kafka_config,
            **{
                "transactional.id": config.transactional_id,
                "transaction.timeout.ms": config.transaction_timeout_ms,
                "enable.idempotence": True,
                "linger.ms": 1,
                # a transaction begun right after the previous commit can meet
                # CONCURRENT_TRANSACTIONS while the markers are written; the default 100 ms
                # backoff would then stall the partition for 100 ms
                "retry.backoff.ms": 2,
                "retry.backoff.max.ms": 50,
                "partitioner": "murmur2_random",
                "compression.type": "lz4",
                "message.max.bytes": PRODUCER_MESSAGE_MAX_BYTES,
                **config.producer_overrides,
            }))

    def _new_dispatcher(self) -> Producer:
        """The plain (not transactional) producer of early-dispatched records.

        Idempotent with acks=all, so a retry inside librdkafka cannot duplicate or reorder what
        it sends; the same partitioner as the transactional producer, so a key lands where it
        always did.
        """
        config = self.config
        return Producer(producer_config(
            config.bootstrap, kafka_config=config.kafka_config,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 0,
                "partitioner": "murmur2_random",
                "compression.type": "lz4",
                "message.max.bytes": PRODUCER_MESSAGE_MAX_BYTES,
                **config.producer_overrides,
            }))

    def _static_membership(self) -> dict[str, str]:
        if not self.config.static_membership:
            return {}
        return {"group.instance.id": self.config.group_instance_id or self.config.transactional_id}

    def source_partition_count(self) -> int:
        """Partitions of the source topic (fixed for a hub): handlers check record routing with it."""
        if self._source_partitions is None:
            topic = self.config.source_topic
            metadata = self.consumer.list_topics(topic, timeout=10)
            info = metadata.topics.get(topic)
            if info is None or info.error is not None or not info.partitions:
                raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, f"no metadata for {topic}"))
            self._source_partitions = len(info.partitions)
        return self._source_partitions

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait_assigned: float = 30.0) -> None:
        self.producer.init_transactions(30)  # fences and aborts our previous incarnation
        self.consumer.subscribe(
            self.config.subscription(), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        self._thread = threading.Thread(target=self._loop, name=f"dk-{self.name}", daemon=True)
        self._thread.start()
        self._assigned.wait(wait_assigned)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError):
            log.debug("consumer close failed", exc_info=True)
        if self.dispatcher is not None:
            self.dispatcher.flush(5)  # a stop between dispatch and commit: the next owner dispatches again
        self.stores.close_all()

    @property
    def error(self) -> BaseException | None:
        """Why the processor stopped, or why it cannot go on (no progress for ``stuck_after``).

        Progress, not one transaction, is what is watched: a transaction blocked in a Kafka call
        (librdkafka #5456), and a loop of transactions that all abort or get fenced, look the
        same to the hub (nothing commits), and both are reported.
        """
        if self._error is not None:
            return self._error
        now = time.monotonic()
        began = self._txn_began
        if began is not None and now - began > self.config.stuck_after:
            return ProcessorStuckError(
                f"{self.name}: one transaction has been open for {now - began:.0f}s "
                "(a Kafka transactional call is blocked, see librdkafka #5456); restart the worker")
        stalled = now - self._last_progress
        if self._failures_since_progress and stalled > self.config.stuck_after:
            return ProcessorStuckError(
                f"{self.name}: nothing committed for {stalled:.0f}s while "
                f"{self._failures_since_progress} transactions aborted or were fenced; restart the worker")
        return None

    # ------------------------------------------------------------------ rebalancing
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        ps = [tp.partition for tp in partitions]
        self.restore(ps)
        self.owned.update(ps)
        self._assigned_tps.update((tp.topic, tp.partition) for tp in partitions)
        self.handler.on_assigned(ps)
        self._assigned.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        ps = [tp.partition for tp in partitions]
        self.handler.on_revoked(ps)
        for key in [k for k in self._suspects if k[1] in ps]:
            del self._suspects[key]
        self._assigned_tps.difference_update((tp.topic, tp.partition) for tp in partitions)
        for p in ps:
            if not any(ap == p for _, ap in self._assigned_tps):  # another topic's partition p stays
                self.owned.discard(p)
                self.stores.close(p)

    def restore(self, partitions: Iterable[int]) -> None:
        """Bring each partition's RocksDB up to the end of its changelog partition."""
        partitions = list(partitions)
        if not partitions or self.config.changelog_topic is None:
            return
        # auto.offset.reset earliest: a start below the log start means from the start
        reader = Consumer(consumer_config(self.config.bootstrap, f"{self.config.group_id}.restore",
                                          kafka_config=self.config.kafka_config, **{"fetch.wait.max.ms": 50}))
        # the end offsets come from a read_uncommitted handle: the log end, not the last stable offset
        ender = Consumer(consumer_config(self.config.bootstrap, f"{self.config.group_id}.restore",
                                         kafka_config=self.config.kafka_config, isolation_level="read_uncommitted"))
        began = time.monotonic()
        try:
            applied = self._restore_all(reader, ender, partitions)
        finally:
            reader.close()
            ender.close()
        if self.metrics is not None:
            self.metrics.restored(time.monotonic() - began, applied)

    def _restore_all(self, reader: Consumer, ender: Consumer, partitions: list[int]) -> int:
        """Read every partition's changelog tail in one assignment (partitions restore in parallel).

        The end of each partition is its log end (``ender`` reads uncommitted), not its last
        stable offset, and ``reader`` (read_committed) reads until its position passes it, so
        every transaction written there before the restore began is applied or skipped once it
        is resolved. Ending at the last stable offset lost state (docs/DECISIONS.md, D21): the
        previous owner's last transaction, committed just before the hand-over, may not have its
        commit marker on the changelog yet while its consumed offsets already read as committed,
        so the new owner restored without that transaction's state and went on after its input.
        Waiting ends when the broker resolves each transaction: at the latest after the
        transaction timeout (a crashed or frozen owner's transaction is aborted then).

        Returns how many changelog records it applied.
        """
        topic = self.config.changelog_topic
        assert topic is not None  # restore() returns early for a stateless processor
        ranges: dict[int, tuple[int, int]] = {}
        for partition in partitions:
            store = self.stores.open(partition)
            _low, end = watermarks(ender, TopicPartition(topic, partition))
            start = store.changelog_offset + 1
            age = store.age_seconds
            stale = age is not None and age > MAX_STATE_AGE_S and start < end
            if start > end or stale:  # not ours (changelog recreated), or too old to catch up safely
                log.warning("changelog %s[%d] ends at %d, local state is at %d (%s); rebuilding", topic,
                            partition, end, start, "stale" if stale else "ahead of the changelog")
                self.stores.wipe(partition)
                self.stores.open(partition)
                start = 0
            ranges[partition] = (start, end)
        if all(start >= end for start, end in ranges.values()):
            return 0
        applied, began, last_log = 0, time.monotonic(), time.monotonic()
        # every open transaction is aborted by the broker after its timeout: wait twice that
        deadline = time.monotonic() + 2 * self.config.transaction_timeout_ms / 1000 + 30

        def stalled(positions: dict[int, int]) -> None:  # a restore that waits says why
            log.warning("%s: restoring %s: partitions %s wait at offsets %s for a transaction to be committed or "
                        "aborted (a worker that stopped mid-transaction; the broker aborts it after its timeout)",
                        self.name, topic, sorted(positions), positions)

        batches = read_to_end(reader, topic, ranges, deadline=deadline, on_stall=stalled)
        while True:
            try:
                msgs = next(batches)
            except StopIteration:
                break
            except TimeoutError as exc:
                raise ChangelogStalledError(
                    f"{self.name}: restoring {exc}: a transaction there stayed open past every timeout; "
                    "restart the worker") from exc
            changes: dict[int, dict[bytes, bytes | None]] = {}
            last: dict[int, int] = {}
            for m in msgs:
                _topic, p, offset = record_position(m)
                changes.setdefault(p, {})[m.key()] = m.value()
                last[p] = offset
            for partition, batch in changes.items():
                target = self.stores.get(partition)
                if target is not None:
                    target.write(batch, last[partition])
                    applied += len(batch)
            if time.monotonic() - last_log > 5:
                log.warning("restoring %s: %d records so far", topic, applied)
                last_log = time.monotonic()
        log.info("restored %s %s: %d records in %.2fs", topic, sorted(p for p, (start, end) in ranges.items() if start < end),
                 applied, time.monotonic() - began)
        return applied

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._run_batch()
                except (KafkaException, _ReplaceProducer) as exc:
                    if self._stop.is_set():
                        break
                    # an ACL denial does not heal by retrying: stop with a typed error naming it
                    raise_if_unauthorized(exc, {"group": self.config.group_id, "topic": self.config.source_topic,
                                                "transactional_id": self.config.transactional_id}, f"run the {self.name} processor")
                    self._recover(exc)
        except BaseException as exc:  # noqa: BLE001 - recorded and re-raised to the owner via .error
            self._error = exc
            log.exception("%s stopped by an error", self.name)

    def _recover(self, exc: Exception) -> None:
        """Start over from the last committed transaction after the producer became unusable.

        A broker restart can time out an open transaction; the coordinator then aborts it and
        bumps the producer epoch, which fences this producer (a fatal error in librdkafka). The
        cure is what a restart would do, without the restart: drop the cached executors, make a
        new producer with the same transactional id (init_transactions settles anything left
        open), catch the stores up from the changelog (the failed commit may have gone through),
        and rewind every assigned partition to its committed offset.
        """
        log.warning("%s: recovering from %s: new producer, rewinding to committed offsets", self.name, exc)
        self.stats["recoveries"] = self.stats.get("recoveries", 0) + 1
        if self.metrics is not None:
            self.metrics.aborted.inc()
        self._failures_since_progress += 1
        self.handler.on_aborted()
        delay = 0.5
        while not self._stop.is_set():
            try:
                self.producer = self._new_producer()
                if self.dispatcher is not None:  # it may be the one that failed (a fatal idempotence error)
                    self.dispatcher.flush(0)
                    self.dispatcher = self._new_dispatcher()
                self.producer.init_transactions(30)  # settles the last transaction: committed or aborted
                # a commit that failed ambiguously may in fact have committed: the changelog then
                # holds records RocksDB never got. Catch the stores up before going on.
                self.restore(sorted(self.owned))
                self._rewind_to_committed()
                self._txn_began = None
                return
            except KafkaException as again:
                log.warning("%s: recovery attempt failed (%s); retrying in %.1fs", self.name, again, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _rewind_to_committed(self) -> None:
        assignment = self.consumer.assignment()
        if not assignment:
            return
        for tp in self.consumer.committed(assignment, timeout=30):
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))

    def _poll(self) -> list[Message]:
        first = self.consumer.poll(self.config.poll_timeout)
        if first is None:
            return []
        msgs = [first]
        if self.config.max_batch > 1:
            msgs.extend(self.consumer.consume(self.config.max_batch - 1, 0))
        out = []
        for m in msgs:
            err = m.error()
            if err is None:
                out.append(m)
            elif authorization_error(err) is not None:
                raise KafkaException(err)  # an ACL denial: _loop stops with a typed error naming it
            elif err.fatal() or err.code() == KafkaError._FATAL:  # the consumer is dead: stop and say so
                raise ConsumerFatalError(f"{self.name}: its Kafka consumer failed for good ({err.str()}); "
                                         "restart the worker")
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("%s consume error: %s", self.name, err)
        return out

    def _run_batch(self) -> None:
        if self.metrics is not None:
            self.metrics.maybe_update_lag(self.consumer)
        msgs = self._poll()
        now_ms = int(time.time() * 1000)
        if not msgs and not self.handler.has_due_work(now_ms):
            # idle is healthy; after failures, only a second of nothing to do clears them (a
            # record sought back after an abort can take a poll or two to come again)
            self._idle_polls += 1
            if not self._failures_since_progress or self._idle_polls * self.config.poll_timeout > 1.0:
                self._last_progress = time.monotonic()
                self._failures_since_progress = 0
            return
        self._idle_polls = 0
        if self._suspects:
            self._run_isolated(msgs, now_ms)
            return
        self._run_transaction(msgs, now_ms)

    def _run_transaction(self, msgs: list[Message], now_ms: int | None, *, budgeted: bool = True) -> bool:
        """One transaction over ``msgs`` (as many as the time budget allows) and due work.

        Returns whether it committed. Records not reached within the budget are sought back
        and come again in the next transaction. ``now_ms`` None skips due timers.
        """
        budget = self._budget() if budgeted else None
        txn = Transaction(self.producer, self.stores, changelog_topic=self.config.changelog_topic or "-",
                          deadline=time.monotonic() + budget if budget is not None else None,
                          dispatcher=self.dispatcher, dispatch_topics=self.config.dispatch_topics)
        began = time.perf_counter()
        self._txn_began = time.monotonic()
        self.producer.begin_transaction()
        done = 0
        try:
            done = self._process(txn, msgs, budgeted)
            if now_ms is not None:
                self.handler.tick(txn, now_ms)
            delivered = self._produce_changelog(txn)
            processed = time.perf_counter()
            offsets = _next_offsets(msgs[:done]) if done else self._fencing_offsets(txn)
            if offsets:
                self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(),
                                                          self.config.operation_timeout)
            offsets_sent = time.perf_counter()
            txn.confirm_dispatched(self.config.operation_timeout)
            self._commit()
            finished = time.perf_counter()
        except _ReplaceProducer:
            self._txn_began = None
            raise
        except Exception as exc:  # noqa: BLE001 - classified: retried, isolated, or recovered
            self._txn_began = None
            self._failed(msgs, exc)
            return False
        self._txn_began = None
        st = self.stats
        st["batches"] += 1
        st["records"] += done
        st["process_s"] += processed - began
        st["commit_s"] += finished - processed
        self.timings.append((processed - began, offsets_sent - processed, finished - offsets_sent))
        if self.metrics is not None:
            self.metrics.transaction(finished - began, done)
        if done < len(msgs):
            st["split_batches"] = st.get("split_batches", 0) + 1
            self._seek_to_first(msgs[done:])
        self._last_progress = time.monotonic()
        self._failures_since_progress = 0
        self.handler.on_committed()
        self.producer.poll(0)
        for p, changes in txn.changes.items():
            store = self.stores.get(p)
            if store is not None:
                store.write(changes, delivered.get(p))
        return True

    def _fencing_offsets(self, txn: Transaction) -> list[TopicPartition]:
        """Offsets to commit with a transaction that consumed nothing but wrote (due timers).

        The offset commit is what fences a worker that lost its partitions: the broker checks
        its group generation. Workers have different transactional ids, so without an offset
        commit nothing stops a worker that was paused past its session timeout (GC, SIGSTOP, a
        frozen VM) from committing timers it no longer owns over the new owner's state (found
        by the chaos suite's zombie scenario). So the current positions, which the committed
        transactions already reached, are committed again: no offset moves.
        """
        if not (txn.changes or txn.produced):
            return []
        assignment = self.consumer.assignment()
        if not assignment:
            return []
        known = [tp for tp in self.consumer.position(assignment) if tp.offset >= 0]
        if not known:  # nothing fetched since the assignment: the committed offsets, as they are
            known = [tp for tp in self.consumer.committed(assignment, timeout=self.config.operation_timeout)
                     if tp.offset >= 0]
        return known

    def _budget(self) -> float:
        if self.config.batch_time_budget is not None:
            return self.config.batch_time_budget
        return self.config.transaction_timeout_ms / 4000

    def _process(self, txn: Transaction, msgs: list[Message], budgeted: bool) -> int:
        """Hand ``msgs`` to the handler in slices until they are done or the budget is spent.

        The slice size comes from the measured cost per record, so a fast steady state hands
        over whole batches (one executor episode per instance per batch) while a slow one (user
        code that sleeps, a restart replaying many histories) stops in time to commit.
        """
        if not msgs:
            return 0
        if not budgeted or txn.deadline is None:
            self.handler.process(txn, msgs)
            return len(msgs)
        done = 0
        while done < len(msgs):
            left = txn.deadline - time.monotonic()
            size = max(1, min(len(msgs) - done, int(left / (2 * self._per_record_s))))
            began = time.perf_counter()
            self.handler.process(txn, msgs[done:done + size])
            took = (time.perf_counter() - began) / size
            # learn quickly that records got slower, slowly that they got faster
            self._per_record_s = took if took > self._per_record_s else 0.5 * (self._per_record_s + took)
            self._per_record_s = max(self._per_record_s, 1e-6)
            done += size
            if txn.over_budget():
                break
        return done

    def _run_isolated(self, msgs: list[Message], now_ms: int) -> None:
        """After a batch failed for a reason retries cannot cure: one record per transaction.

        The record that fails alone is the culprit: it goes to the dead-letter topic with the
        reason, in a transaction that also moves the offset past it, and the partition goes on.
        """
        if not msgs:
            self._suspects.clear()
            return
        first, rest = msgs[0], msgs[1:]
        if rest:
            self._seek_to_first(rest)
        topic, partition, offset = record_position(first)
        key = (topic, partition)
        last = self._suspects.get(key)
        if last is None or offset > last:  # past the records that failed together
            self._suspects.pop(key, None)
            if not self._suspects:
                self._seek_to_first([first])
                return
            self._run_transaction([first], None, budgeted=False)
            return
        if self._run_transaction([first], None, budgeted=False):
            return
        failure = self._isolated_failure
        if failure is None:  # a curable failure (already aborted and sought back): retry it later
            return
        self._dead_letter_alone(first, failure)

    def _dead_letter_alone(self, rec: Message, failure: BaseException) -> None:
        reason = f"cannot process: {type(failure).__name__}: {failure}"
        log.error("%s: %s[%d]@%d fails on its own (%s); dead-lettering it", self.name, rec.topic(),
                  rec.partition(), rec.offset(), reason)
        txn = Transaction(self.producer, self.stores, changelog_topic=self.config.changelog_topic or "-")
        self._txn_began = time.monotonic()
        self.producer.begin_transaction()
        try:
            self.handler.dead_letter(txn, rec, reason, type(failure).__name__)
            self.producer.send_offsets_to_transaction(_next_offsets([rec]), self.consumer.consumer_group_metadata(),
                                                      self.config.operation_timeout)
            self._commit()
        except KafkaException as exc:
            self._txn_began = None
            self._abort([rec], exc)
            return
        self._txn_began = None
        self.stats["isolated_deadletters"] = self.stats.get("isolated_deadletters", 0) + 1
        self._last_progress = time.monotonic()
        self._failures_since_progress = 0
        self.handler.on_committed()

    def _failed(self, msgs: list[Message], exc: BaseException) -> None:
        """Abort the failed transaction and decide how the records come again."""
        self._isolated_failure = None
        if authorization_error(exc) is not None:
            raise exc  # an ACL denial: neither a retry nor a dead letter helps; _loop stops with it
        if not is_incurable(exc):
            if isinstance(exc, KafkaException):
                self._abort(msgs, exc)
                return
            raise exc
        self.stats["incurable"] = self.stats.get("incurable", 0) + 1
        if self.metrics is not None:
            self.metrics.aborted.inc()
        self._isolated_failure = exc
        log.warning("%s: a transaction of %d records failed in a way a retry cannot cure (%s: %s); "
                    "retrying its records one at a time", self.name, len(msgs), type(exc).__name__, exc)
        try:
            self.producer.abort_transaction(self.config.operation_timeout)
        except KafkaException as abort_error:
            self.handler.on_aborted()
            raise abort_error
        self.handler.on_aborted()
        self._failures_since_progress += 1
        for m in msgs:
            topic, partition, offset = record_position(m)
            key = (topic, partition)
            self._suspects[key] = max(self._suspects.get(key, -1), offset)
        self._seek_to_first(msgs)

    def _seek_to_first(self, msgs: list[Message]) -> None:
        """Seek each partition of ``msgs`` back to its first record there (still owned only)."""
        firsts: dict[tuple[str, int], int] = {}
        for m in msgs:
            topic, partition, offset = record_position(m)
            key = (topic, partition)
            firsts[key] = min(firsts.get(key, offset), offset)
        for (t, p), off in firsts.items():
            if (t, p) in self._assigned_tps:
                self.consumer.seek(TopicPartition(t, p, off))

    def _produce_changelog(self, txn: Transaction) -> dict[int, int]:
        delivered: dict[int, int] = {}

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                _topic, p, offset = record_position(msg)
                if offset > delivered.get(p, -1):
                    delivered[p] = offset

        topic = self.config.changelog_topic
        if topic is None:  # stateless: a handler of such a processor never puts
            assert not txn.changes, "a stateless processor's handler wrote to a store"
            return delivered
        produce = self.producer.produce
        for p, changes in txn.changes.items():
            # the idempotent producer keeps a partition's records in order, so the last one's
            # offset is the partition's highest: only it reports back (one callback per partition)
            last = len(changes) - 1
            for i, (k, v) in enumerate(changes.items()):
                if i == last:
                    produce(topic, key=k, value=v, partition=p, on_delivery=on_delivery)
                else:
                    produce(topic, key=k, value=v, partition=p)
        # the commit below flushes; delivery reports fill ``delivered`` before we write RocksDB
        return delivered

    def _commit(self) -> None:
        """Commit the transaction; a commit that timed out replaces the producer.

        librdkafka's advice while it lacks transactions v2 (librdkafka #5423): a retried EndTxn
        that timed out can hang or be applied late, so the producer is dropped and a new one
        with the same transactional id fences whatever the old one left (see :meth:`_recover`,
        which also catches the stores up in case the commit did go through).
        """
        try:
            self.producer.commit_transaction(self.config.operation_timeout)
            self.producer.flush(0)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() in (KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT) or (
                    err.retriable() and not err.txn_requires_abort()):
                raise _ReplaceProducer(f"commit did not complete: {err}") from exc
            raise

    def _abort(self, msgs: list[Message], exc: KafkaException) -> None:
        """Abort the batch's transaction and process the batch again (abortable errors only).

        Fatal errors, and an abort that fails, propagate to :meth:`_loop`, which recovers with a
        new producer. Repeated aborts back off (up to a second), so a broker that keeps refusing
        does not meet thousands of attempts a minute.
        """
        err = exc.args[0]
        if err.fatal():
            raise exc
        self._failures_since_progress += 1
        self.stats["aborts"] = self.stats.get("aborts", 0) + 1
        if self.metrics is not None:
            self.metrics.aborted.inc()
        log.warning("%s aborting transaction: %s", self.name, err)
        self.producer.abort_transaction(self.config.operation_timeout)
        self.handler.on_aborted()
        self._seek_to_first(msgs)
        if self._failures_since_progress > 1:
            self._stop.wait(min(1.0, 0.01 * 2 ** min(self._failures_since_progress, 7)))


def _next_offsets(msgs: list[Message]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for m in msgs:
        topic, partition, offset = record_position(m)
        key = (topic, partition)
        if offset >= last.get(key, -1):
            last[key] = offset
    return [TopicPartition(t, p, off + 1) for (t, p), off in last.items()]


def record_position(rec: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed or delivered record.

    librdkafka always sets the three on such a record; confluent-kafka types them Optional
    (they are None only on error events, which never get here).
    """
    topic, partition, offset = rec.topic(), rec.partition(), rec.offset()
    assert topic is not None and partition is not None and offset is not None, "record without a position"
    return topic, partition, offset
