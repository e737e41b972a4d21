"""The client's status cache: every instance's latest snapshot, read from ``<hub>.status``.

Why a cache instead of asking a processor: the status topic is compacted and keyed by instance
id, so reading all its partitions from the beginning *is* the table of instance states, with no
RPC to whichever worker owns an instance. A background thread tails the topic; callers wait on
a condition variable the thread signals after every batch, so waits wake as soon as a snapshot
lands instead of sleep-polling.

Read-your-writes: ``sync()`` takes the end offset of the relevant partitions at call time and
waits until the thread has consumed that far, so a status committed before the call is seen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from durable_kafka._client_kafka import Metadata, is_partition_eof
from durable_kafka.errors import BrokerError, ClientError, CodecError, TimeoutError
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import partition_for
from durable_kafka.streams.events import EntityState, InstanceStatus

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.1
_BATCH = 500


class StatusCache:
    """A live ``instance id -> InstanceStatus`` map of one hub, filled by a background thread."""

    def __init__(self, bootstrap: str, topic: str, codec: Codec, metadata: Metadata) -> None:
        self._bootstrap = bootstrap
        self._metadata = metadata
        self._topic = topic
        self._codec = codec
        self._condition = threading.Condition()
        self._statuses: dict[str, InstanceStatus] = {}
        # entity snapshots share the topic (keys '@name@key'; instance ids never start with '@')
        self._entities: dict[str, EntityState] = {}
        self._consumed: dict[int, int] = {}  # partition -> next offset known to be consumed
        self._partitions = 0
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._failure: BaseException | None = None
        self._listeners: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ listeners (AsyncClient)

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` from the reader thread after every batch, failure and close.

        Why: an event loop cannot wait on the condition variable; the AsyncClient registers a
        listener that hands control to its loop (``call_soon_threadsafe``), which re-checks its
        waiters there. The listener must be quick and must not raise.
        """
        with self._condition:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        with self._condition:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _notify_listeners(self) -> None:
        with self._condition:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def caught_up(self, targets: Mapping[int, int]) -> bool:
        """True once every partition in ``targets`` is consumed up to its offset (no waiting);
        raises the reader's failure, ClientError once closed."""
        with self._condition:
            self._raise_if_failed()
            if self._stopping.is_set():
                raise ClientError("the client is closed")
            return all(self._consumed.get(p, 0) >= end for p, end in targets.items())

    @property
    def partitions(self) -> int:
        """The status topic's partition count (starts the reader if needed)."""
        self.start()
        return self._partitions

    @property
    def closed(self) -> bool:
        return self._stopping.is_set()

    def raise_if_failed(self) -> None:
        """Raise BrokerError if the reader thread died (waiters outside this module use it)."""
        with self._condition:
            self._raise_if_failed()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the reader thread once (later calls return at once)."""
        with self._start_lock:
            if self._thread is not None:
                return
            if self._stopping.is_set():
                raise ClientError("the client is closed")
            partitions = self._metadata.partition_count(self._topic)
            consumer = self._metadata.consumer("status")
            # explicit start offsets: librdkafka resolves the logical OFFSET_BEGINNING with an
            # offset query that costs ~0.5 s before the first fetch; the low watermark is the same
            # place, known at once
            consumer.assign(
                [TopicPartition(self._topic, p, self._metadata.watermarks(self._topic, p)[0])
                 for p in range(partitions)]
            )
            self._partitions = partitions
            self._thread = threading.Thread(
                target=self._run, args=(consumer,), name=f"status-cache:{self._topic}", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop the reader thread, wake every waiter, close the consumers."""
        self._stopping.set()
        with self._condition:
            self._condition.notify_all()
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self._notify_listeners()

    # ------------------------------------------------------------------ reader thread

    def _run(self, consumer: Consumer) -> None:
        try:
            while not self._stopping.is_set():
                # consume(n, timeout) waits the whole timeout unless n records arrive: poll for the
                # first record, then take whatever else is already fetched, without waiting
                first = consumer.poll(_POLL_SECONDS)
                if first is None:
                    continue
                messages = [first, *consumer.consume(_BATCH - 1, 0)]
                if messages:
                    self._apply(messages)
        except BaseException as error:  # the thread must not die silently: waiters re-raise it
            log.exception("status cache reader for %s stopped", self._topic)
            with self._condition:
                self._failure = error
                self._condition.notify_all()
            self._notify_listeners()
        finally:
            consumer.close()

    def _apply(self, messages: list[Any]) -> None:  # confluent-kafka Messages (accessors typed Optional)
        updates: list[tuple[str, InstanceStatus | EntityState | None]] = []
        consumed: dict[int, int] = {}
        for message in messages:
            partition, error = message.partition(), message.error()
            if is_partition_eof(error):
                consumed[partition] = max(consumed.get(partition, 0), message.offset())
                continue
            if error is not None:
                log.warning("status topic %s: %s", self._topic, error)
                continue
            consumed[partition] = max(consumed.get(partition, 0), message.offset() + 1)
            key = message.key()
            if key is None:
                continue
            value = message.value()
            if value is None:
                updates.append((key.decode("utf-8", "replace"), None))
                continue
            try:
                status = self._codec.decode(value, expected=(InstanceStatus, EntityState))
            except CodecError as error:
                log.warning(
                    "skipping undecodable status at %s[%d]@%d: %s",
                    self._topic, partition, message.offset(), error,
                )
                continue
            updates.append((key.decode("utf-8", "replace"), status))
        with self._condition:
            for instance_id, status in updates:
                if instance_id.startswith("@"):
                    if status is None:
                        self._entities.pop(instance_id, None)
                    elif isinstance(status, EntityState):
                        self._entities[instance_id] = status
                elif status is None:
                    self._statuses.pop(instance_id, None)
                elif isinstance(status, InstanceStatus):
                    self._statuses[instance_id] = status
            for partition, offset in consumed.items():
                if offset > self._consumed.get(partition, 0):
                    self._consumed[partition] = offset
            self._condition.notify_all()
        self._notify_listeners()

    # ------------------------------------------------------------------ reads

    def partition_of(self, instance_id: str) -> int:
        self.start()
        return partition_for(instance_id.encode("utf-8"), self._partitions)

    def sync(self, partitions: Iterable[int] | None, timeout: float) -> bool:
        """Wait until the cache has read each partition up to its end offset as of now.

        Returns False if ``timeout`` passed first (the caller then answers from what it has).
        """
        self.start()
        wanted = list(range(self._partitions)) if partitions is None else list(partitions)
        targets = {p: self._metadata.high_watermark(self._topic, p) for p in wanted}
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                self._raise_if_failed()
                if all(self._consumed.get(p, 0) >= end for p, end in targets.items()):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    log.debug("status cache sync of %s timed out: %s", self._topic, targets)
                    return False
                self._condition.wait(remaining)

    def get(self, instance_id: str) -> InstanceStatus | None:
        with self._condition:
            self._raise_if_failed()
            return self._statuses.get(instance_id)

    def snapshot(self) -> list[InstanceStatus]:
        with self._condition:
            self._raise_if_failed()
            return list(self._statuses.values())

    def get_entity(self, entity_id: str) -> EntityState | None:
        with self._condition:
            self._raise_if_failed()
            return self._entities.get(entity_id)

    def entity_snapshot(self) -> list[EntityState]:
        with self._condition:
            self._raise_if_failed()
            return list(self._entities.values())

    def wait_for(
        self,
        instance_id: str,
        predicate: Callable[[InstanceStatus], bool],
        timeout: float,
        what: str,
    ) -> InstanceStatus:
        """Block until the instance's status satisfies ``predicate``; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                self._raise_if_failed()
                status = self._statuses.get(instance_id)
                if status is not None and predicate(status):
                    return status
                if self._stopping.is_set():
                    raise ClientError(
                        f"the client was closed while waiting for instance {instance_id!r}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = status.runtime_status if status is not None else "no status yet"
                    raise TimeoutError(
                        f"timed out after {timeout}s waiting for instance {instance_id!r} "
                        f"to {what} (last seen: {seen})"
                    )
                self._condition.wait(remaining)

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise BrokerError(
                f"the status cache reader of {self._topic!r} failed: {self._failure!r}"
            ) from self._failure
