"""The real :class:`~durable_kafka.Client` and :class:`~durable_kafka.Worker` on an in-memory backend.

Both are subclasses that keep every public method of their parent and replace only the Kafka
plumbing underneath: the client's producer, status cache, reply listener and history reader;
the worker's processors. So a test calls exactly the code a user's program calls (argument
checks, typed errors, JSON and Avro encoding, record sizing, state conversion), and the
commands reach the real handlers through :class:`~durable_kafka._testing_backend.Backend`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from durable_kafka.client import Client
from durable_kafka.errors import ClientError, InstanceNotFoundError, TimeoutError
from durable_kafka.streams.events import ClientReply, EntityState, HistoryEvent, InstanceStatus
from durable_kafka.streams.ids import validate_instance_id
from durable_kafka.worker import Worker

if TYPE_CHECKING:
    from durable_kafka._testing_backend import Backend

_NOT_RUNNING = "no worker is running on this in-memory backend: start one (worker.start() or `with worker:`)"


class InMemoryWorker(Worker):
    """A :class:`~durable_kafka.Worker` whose orchestrations, activities and entities run on an
    in-memory backend; registration (``add_orchestrator``, ``add_activity``, ``add_entity``) is
    the Worker's own. ``start()`` / ``stop()`` / ``with worker:`` as on Kafka."""

    def __init__(self, backend: Backend, **options: Any) -> None:
        # no Kafka here, so no Kafka-native payload store: large payloads are off unless a store
        # is given (docs/PAYLOADS.md); the in-memory handlers do not store payloads yet
        options.setdefault("payload_store", False)
        super().__init__("in-memory", backend.hub, **options)
        self._backend = backend

    def start(self) -> InMemoryWorker:
        with self._lock:
            if self._started:
                return self
            self._started = True
        try:
            self._backend.attach(self)
        except BaseException:
            self._backend.detach(self)
            self._started = False
            raise
        return self

    def stop(self) -> None:
        with self._lock:
            if not self._started:
                return
            self._started = False
        self._backend.detach(self)

    def stats(self) -> dict[str, float]:
        return dict(self._backend.orchestrations.stats)

    def errors(self) -> list[BaseException]:
        return []

    def __enter__(self) -> InMemoryWorker:
        return self.start()


class _Producer:
    """The client's producer: a record is delivered (and run) when the client flushes."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._callbacks: list[Callable[[Any, Any], None]] = []

    def produce(self, topic: str, key: bytes | None = None, value: bytes | None = None,
                on_delivery: Callable[[Any, Any], None] | None = None, **_: Any) -> None:
        self._backend.send(topic, key, value)
        if on_delivery is not None:
            self._callbacks.append(on_delivery)

    def poll(self, timeout: float = 0) -> int:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(None, None)
        return len(callbacks)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        self._backend.run()
        return 0


class _Status:
    """The client's status cache, read straight from the backend (always in sync)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._closed = False

    def partition_of(self, instance_id: str) -> int:
        return 0

    def sync(self, partitions: Any, timeout: float) -> bool:
        self._backend.run()
        return True

    def get(self, instance_id: str) -> InstanceStatus | None:
        with self._backend.lock:
            return self._backend.statuses.get(instance_id)

    def snapshot(self) -> list[InstanceStatus]:
        with self._backend.lock:
            return list(self._backend.statuses.values())

    def get_entity(self, entity_id: str) -> EntityState | None:
        with self._backend.lock:
            return self._backend.entities.get(entity_id)

    def entity_snapshot(self) -> list[EntityState]:
        with self._backend.lock:
            return list(self._backend.entities.values())

    def wait_for(self, instance_id: str, predicate: Callable[[InstanceStatus], bool], timeout: float,
                 what: str) -> InstanceStatus:
        """As the Kafka client's wait, with time skipping: while the instance does not satisfy
        ``predicate`` and nothing but timers is pending, the clock jumps to the next due time."""
        backend = self._backend
        deadline = time.monotonic() + timeout
        with backend.changed:
            while True:
                backend.run()
                status = backend.statuses.get(instance_id)
                if status is not None and predicate(status):
                    return status
                if self._closed:
                    raise ClientError(f"the client was closed while waiting for instance {instance_id!r}")
                seen = status.runtime_status if status is not None else "no status yet"
                remaining = deadline - time.monotonic()
                # the deadline bounds skipping too: other instances' timers (an eternal
                # orchestration) would otherwise move the clock on forever
                if remaining > 0 and backend.auto_skip_time and backend.is_idle() and backend.skip_to_next_timer():
                    continue
                if not backend.running_workers():
                    raise TimeoutError(f"instance {instance_id!r} cannot {what} (last seen: {seen}): {_NOT_RUNNING}")
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout}s waiting for instance {instance_id!r} to "
                                       f"{what} (last seen: {seen}; nothing else is pending on the in-memory "
                                       "backend: does it wait for an event?)")
                backend.changed.wait(remaining)  # another thread may send what it waits for

    def close(self) -> None:
        self._closed = True


class _Replies:
    """The client's reply listener: requests are answered while the backend runs."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def expect(self, request_id: str, on_done: Callable[[], None] | None = None) -> None:
        pass

    def forget(self, request_id: str) -> None:
        with self._backend.lock:
            self._backend.replies.pop(request_id, None)

    def wait(self, request_id: str, timeout: float) -> ClientReply | None:
        backend = self._backend
        deadline = time.monotonic() + timeout
        with backend.changed:
            while True:
                backend.run()
                reply = backend.replies.pop(request_id, None)
                if reply is not None:
                    return reply
                remaining = deadline - time.monotonic()
                if not backend.running_workers() or remaining <= 0:
                    return None
                backend.changed.wait(remaining)

    def close(self) -> None:
        pass


class _Metadata:
    def close(self) -> None:
        pass


class InMemoryClient(Client):
    """A :class:`~durable_kafka.Client` of an in-memory backend: every method of the Kafka client,
    with ``wait_for_orchestration_start``/``_completion`` skipping virtual time ahead when nothing
    but timers is pending (see :class:`durable_kafka.testing.InMemoryBackend`)."""

    def __init__(self, backend: Backend, **options: Any) -> None:
        # no Kafka here, so no Kafka-native payload store: large payloads are off unless a store
        # is given (docs/PAYLOADS.md); the in-memory handlers do not store payloads yet
        options.setdefault("payload_store", False)
        super().__init__("in-memory", backend.hub, **options)
        self._backend = backend
        self._connected = True
        self._fake_producer = _Producer(backend)
        self._metadata = _Metadata()  # type: ignore[assignment]
        self._status = _Status(backend)  # type: ignore[assignment]
        self._replies = _Replies(backend)  # type: ignore[assignment]

    def _ensure_connected(self) -> None:
        pass

    def _get_producer(self) -> Any:
        self._ensure_open()
        return self._fake_producer

    def get_orchestration_history(self, instance_id: str) -> list[HistoryEvent]:
        """The current execution's history events, in order (from the backend's history topic)."""
        validate_instance_id(instance_id)
        status = self._current_status(instance_id)
        if status is None:
            raise InstanceNotFoundError(f"instance {instance_id!r} does not exist")
        with self._backend.lock:
            return self._backend.history_of(instance_id, status.execution_id)
