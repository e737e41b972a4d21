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
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from durable_kafka.streams.config import LIBRDKAFKA_LOGGER_NAME

from durable_kafka.errors import ProcessorStuckError

from .store import MAX_STATE_AGE_S, StoreSet

log = logging.getLogger(__name__)


def _base(bootstrap: str) -> dict:
    # librdkafka's lines go to Python logging (quiet by default), never straight to stderr
    return {"bootstrap.servers": bootstrap, "logger": logging.getLogger(LIBRDKAFKA_LOGGER_NAME),
            "log_level": 4, "socket.nagle.disable": True}


@dataclass
class ProcessorConfig:
    """Kafka wiring of one processor instance on one worker."""

    bootstrap: str
    group_id: str
    source_topic: str
    changelog_topic: str
    transactional_id: str
    max_batch: int = 500
    poll_timeout: float = 0.05
    transaction_timeout_ms: int = 10_000
    operation_timeout: float = 10.0  # a transactional call blocked longer than this ends in recovery
    stuck_after: float = 60.0  # a batch still in its transaction after this long is reported stuck
    producer_overrides: dict = field(default_factory=dict)
    consumer_overrides: dict = field(default_factory=dict)


class Transaction:
    """What one batch changes: store writes (coalesced per key) and produced records.

    Reads through :meth:`get` see this batch's own uncommitted writes, so several messages for
    one key inside a batch compose correctly.
    """

    def __init__(self, producer: Producer, stores: StoreSet) -> None:
        self._producer = producer
        self._stores = stores
        self.changes: dict[int, dict[bytes, bytes | None]] = {}
        self.produced = 0

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.changes.setdefault(partition, {})[key] = value

    def get(self, partition: int, key: bytes) -> bytes | None:
        pending = self.changes.get(partition)
        if pending is not None and key in pending:
            return pending[key]
        store = self._stores.get(partition)
        return store.get(key) if store is not None else None

    def scan(self, partition: int, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """Prefix scan of the store overlaid with this batch's writes, in key order."""
        store = self._stores.get(partition)
        merged: dict[bytes, bytes | None] = dict(store.scan(prefix)) if store is not None else {}
        for k, v in self.changes.get(partition, {}).items():
            if k.startswith(prefix):
                merged[k] = v
        return [(k, v) for k, v in sorted(merged.items()) if v is not None]

    def produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None) -> None:
        if partition is None:
            self._producer.produce(topic, value=value, key=key)
        else:
            self._producer.produce(topic, value=value, key=key, partition=partition)
        self.produced += 1


class Handler(Protocol):
    """The processor-specific part: turn source records (and due timers) into a transaction."""

    def process(self, txn: Transaction, records: list[Message]) -> None: ...

    def tick(self, txn: Transaction, now_ms: int) -> None: ...

    def has_due_work(self, now_ms: int) -> bool: ...

    def on_assigned(self, partitions: list[int]) -> None: ...

    def on_revoked(self, partitions: list[int]) -> None: ...

    def on_aborted(self) -> None: ...


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
        self._txn_began: float | None = None
        self.stats = {"batches": 0, "records": 0, "process_s": 0.0, "commit_s": 0.0}
        #: (process, send_offsets, commit) seconds of the latest batches, for latency diagnosis
        self.timings: deque[tuple[float, float, float]] = deque(maxlen=4096)
        self.producer = self._new_producer()
        self.consumer = Consumer(
            {
                **_base(config.bootstrap),
                "group.id": config.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 5,
                "session.timeout.ms": 6_000,  # a killed worker's partitions move on after 6 s
                "heartbeat.interval.ms": 1_000,
                **config.consumer_overrides,
            }
        )
        self.handler = handler_factory(self)

    def _new_producer(self) -> Producer:
        config = self.config
        return Producer(
            {
                **_base(config.bootstrap),
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
                **config.producer_overrides,
            }
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait_assigned: float = 30.0) -> None:
        self.producer.init_transactions(30)  # fences and aborts our previous incarnation
        self.consumer.subscribe(
            [self.config.source_topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
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
        self.stores.close_all()

    @property
    def error(self) -> BaseException | None:
        """Why the processor stopped, or why it cannot go on (stuck in a transactional call)."""
        if self._error is not None:
            return self._error
        began = self._txn_began
        if began is not None and time.monotonic() - began > self.config.stuck_after:
            return ProcessorStuckError(
                f"{self.name}: one transaction has been open for {time.monotonic() - began:.0f}s "
                "(a Kafka transactional call is blocked, see librdkafka #5456); restart the worker")
        return None

    # ------------------------------------------------------------------ rebalancing
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        ps = [tp.partition for tp in partitions]
        self.restore(ps)
        self.owned.update(ps)
        self.handler.on_assigned(ps)
        self._assigned.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        ps = [tp.partition for tp in partitions]
        self.handler.on_revoked(ps)
        for p in ps:
            self.owned.discard(p)
            self.stores.close(p)

    def restore(self, partitions: Iterable[int]) -> None:
        """Bring each partition's RocksDB up to the end of its changelog partition."""
        partitions = list(partitions)
        if not partitions:
            return
        reader = Consumer(
            {
                **_base(self.config.bootstrap),
                "group.id": f"{self.config.group_id}.restore",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",  # a start below the log start means: from the start
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 50,
            }
        )
        try:
            self._restore_all(reader, partitions)
        finally:
            reader.close()

    def _restore_all(self, reader: Consumer, partitions: list[int]) -> None:
        """Read every partition's changelog tail in one assignment (partitions restore in parallel)."""
        topic = self.config.changelog_topic
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for partition in partitions:
            store = self.stores.open(partition)
            _low, end = _watermarks(reader, TopicPartition(topic, partition))
            start = store.changelog_offset + 1
            age = store.age_seconds
            stale = age is not None and age > MAX_STATE_AGE_S and start < end
            if start > end or stale:  # not ours (changelog recreated), or too old to catch up safely
                log.warning("changelog %s[%d] ends at %d, local state is at %d (%s); rebuilding", topic,
                            partition, end, start, "stale" if stale else "ahead of the changelog")
                self.stores.wipe(partition)
                self.stores.open(partition)
                start = 0
            if start < end:
                ends[partition] = end
                starts.append(TopicPartition(topic, partition, start))
        if not starts:
            return
        reader.assign(starts)
        pending = dict(ends)
        applied, began, last_log = 0, time.monotonic(), time.monotonic()
        while pending:
            first = reader.poll(0.1)
            msgs = [first, *reader.consume(999, 0)] if first is not None else []
            changes: dict[int, dict[bytes, bytes | None]] = {}
            last: dict[int, int] = {}
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(err)
                changes.setdefault(m.partition(), {})[m.key()] = m.value()
                last[m.partition()] = m.offset()
            for partition, batch in changes.items():
                store = self.stores.get(partition)
                if store is not None:
                    store.write(batch, last[partition])
                    applied += len(batch)
            positions = reader.position([TopicPartition(topic, p) for p in pending])
            for tp in positions:
                if tp.offset >= pending[tp.partition]:
                    del pending[tp.partition]
            if time.monotonic() - last_log > 5:
                log.warning("restoring %s: %d records so far, %d partitions to go", topic, applied, len(pending))
                last_log = time.monotonic()
        log.info("restored %s %s: %d records in %.2fs", topic, sorted(ends), applied, time.monotonic() - began)

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._run_batch()
                except KafkaException as exc:
                    if self._stop.is_set():
                        break
                    self._recover(exc)
        except BaseException as exc:  # noqa: BLE001 - recorded and re-raised to the owner via .error
            self._error = exc
            log.exception("%s stopped by an error", self.name)

    def _recover(self, exc: KafkaException) -> None:
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
        self.handler.on_aborted()
        delay = 0.5
        while not self._stop.is_set():
            try:
                self.producer = self._new_producer()
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
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("%s consume error: %s", self.name, err)
        return out

    def _run_batch(self) -> None:
        msgs = self._poll()
        now_ms = int(time.time() * 1000)
        if not msgs and not self.handler.has_due_work(now_ms):
            return
        txn = Transaction(self.producer, self.stores)
        began = time.perf_counter()
        self._txn_began = time.monotonic()
        self.producer.begin_transaction()
        try:
            if msgs:
                self.handler.process(txn, msgs)
            self.handler.tick(txn, now_ms)
            delivered = self._produce_changelog(txn)
            processed = time.perf_counter()
            if msgs:
                offsets = _next_offsets(msgs)
                self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(),
                                                          self.config.operation_timeout)
            offsets_sent = time.perf_counter()
            self._commit()
            done = time.perf_counter()
            st = self.stats
            st["batches"] += 1
            st["records"] += len(msgs)
            st["process_s"] += processed - began
            st["commit_s"] += done - processed
            self.timings.append((processed - began, offsets_sent - processed, done - offsets_sent))
        except KafkaException as exc:
            self._abort(msgs, exc)
            self._txn_began = None
            return
        self._txn_began = None
        self.producer.poll(0)
        for p, changes in txn.changes.items():
            store = self.stores.get(p)
            if store is not None:
                store.write(changes, delivered.get(p))

    def _produce_changelog(self, txn: Transaction) -> dict[int, int]:
        delivered: dict[int, int] = {}

        def on_delivery(err, msg) -> None:  # noqa: ANN001 - librdkafka callback signature
            if err is None:
                p = msg.partition()
                if msg.offset() > delivered.get(p, -1):
                    delivered[p] = msg.offset()

        topic = self.config.changelog_topic
        for p, changes in txn.changes.items():
            for k, v in changes.items():
                self.producer.produce(topic, key=k, value=v, partition=p, on_delivery=on_delivery)
        # the commit below flushes; delivery reports fill ``delivered`` before we write RocksDB
        return delivered

    def _commit(self) -> None:
        deadline = time.monotonic() + self.config.operation_timeout
        while True:
            try:
                self.producer.commit_transaction(self.config.operation_timeout)
                self.producer.flush(0)
                return
            except KafkaException as exc:
                if exc.args[0].retriable() and time.monotonic() < deadline:
                    continue  # librdkafka allows retrying a commit that timed out
                raise

    def _abort(self, msgs: list[Message], exc: KafkaException) -> None:
        """Abort the batch's transaction and process the batch again (abortable errors only).

        Fatal errors, and an abort that fails, propagate to :meth:`_loop`, which recovers with a
        new producer.
        """
        err = exc.args[0]
        if err.fatal():
            raise exc
        log.warning("%s aborting transaction: %s", self.name, err)
        self.producer.abort_transaction(self.config.operation_timeout)
        self.handler.on_aborted()
        # rewind to the first record of the batch on every partition so it is processed again
        firsts: dict[tuple[str, int], int] = {}
        for m in msgs:
            key = (m.topic(), m.partition())
            firsts[key] = min(firsts.get(key, m.offset()), m.offset())
        for (t, p), off in firsts.items():
            if p in self.owned:
                self.consumer.seek(TopicPartition(t, p, off))


def _watermarks(consumer: Consumer, tp: TopicPartition, attempts: int = 60) -> tuple[int, int]:
    """Watermarks, retried while a freshly created partition has no leader yet."""
    for attempt in range(attempts):
        try:
            return consumer.get_watermark_offsets(tp, timeout=10, cached=False)
        except KafkaException as exc:
            if attempt == attempts - 1 or not (exc.args[0].retriable() or exc.args[0].code() in _TRANSIENT):
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")


_TRANSIENT = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
              KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT, KafkaError.OFFSET_NOT_AVAILABLE}


def _next_offsets(msgs: list[Message]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for m in msgs:
        key = (m.topic(), m.partition())
        if m.offset() >= last.get(key, -1):
            last[key] = m.offset()
    return [TopicPartition(t, p, off + 1) for (t, p), off in last.items()]
