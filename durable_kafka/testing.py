"""Test orchestrations, activities and entities without Kafka; check new code against old histories.

``InMemoryBackend`` runs the engine's own code (the orchestration and entity handlers, the
replay executor, the appliers, the entity step, the Avro codec, the Worker's registration and
the Client's methods) on in-memory topics and stores, with a virtual clock::

    from datetime import timedelta
    from durable_kafka.testing import InMemoryBackend

    def test_reminder():
        with InMemoryBackend() as backend:
            worker, client = backend.worker(), backend.client()
            worker.add_orchestrator(reminder)
            with worker:
                iid = client.schedule_new_orchestration(reminder)
                state = client.wait_for_orchestration_completion(iid)   # a 7-day timer: milliseconds
            assert state.serialized_output == '"sent"'

Time skipping: ``backend.skip_time(timedelta(days=7))`` fires everything due in that span;
``client.wait_for_orchestration_completion`` (and ``..._start``) jump the clock to the next due
timer whenever the instance is not there yet and nothing but timers is pending (as Temporal's
time-skipping test environment does). ``ctx.current_utc_datetime`` follows the virtual clock.

``Replayer(orchestrators=[...]).replay(history)`` replays a recorded history against today's
code and raises :class:`~durable_kafka.errors.NonDeterminismError` naming the first divergent
step (see :mod:`durable_kafka._testing_replayer`).

What differs from Kafka (docs/TESTING.md): work runs in the calling thread whenever a client
sends or reads (no background threads, no sleeps; an activity runs in-process, at once); one
partition; no trigger or output routes; nothing survives the backend.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from durable_kafka._testing_backend import Backend
from durable_kafka._testing_client import InMemoryClient, InMemoryWorker
from durable_kafka._testing_replayer import RecordedHistory, Replayer, ReplayResult
from durable_kafka.streams.events import DeadLetter, HistoryRecord

__all__ = ["InMemoryBackend", "InMemoryClient", "InMemoryWorker", "RecordedHistory", "ReplayResult", "Replayer"]


class InMemoryBackend:
    """A task hub in memory, with a virtual clock; use as a context manager (or call ``close()``).

    ``start_time``: the virtual clock's start (default: the real time now, UTC).
    ``auto_skip_time``: whether client waits jump the clock to the next timer (default True).
    """

    def __init__(self, hub: str = "default", *, start_time: datetime | None = None,
                 auto_skip_time: bool = True) -> None:
        self._backend = Backend(hub=hub, start_time=start_time, auto_skip_time=auto_skip_time)
        self._workers: list[InMemoryWorker] = []
        self._clients: list[InMemoryClient] = []

    @property
    def hub(self) -> str:
        return self._backend.hub

    def worker(self, **options: Any) -> InMemoryWorker:
        """A Worker of this backend (the Worker's keyword options are accepted; Kafka ones unused)."""
        worker = InMemoryWorker(self._backend, **options)
        self._workers.append(worker)
        return worker

    def client(self, **options: Any) -> InMemoryClient:
        """A Client of this backend, with every method of the Kafka client."""
        client = InMemoryClient(self._backend, **options)
        self._clients.append(client)
        return client

    # ------------------------------------------------------------------ time
    @property
    def current_time(self) -> datetime:
        """The virtual clock (UTC): what ``ctx.current_utc_datetime`` of a step run now reads."""
        return self._backend.now()

    def skip_time(self, delta: timedelta) -> None:
        """Advance the virtual clock by ``delta``, firing every timer and scheduled entity signal due
        in that span (in due order, each at its due time) and running what they cause."""
        self._backend.skip_time(delta)

    @property
    def auto_skip_time(self) -> bool:
        return self._backend.auto_skip_time

    @auto_skip_time.setter
    def auto_skip_time(self, value: bool) -> None:
        self._backend.auto_skip_time = bool(value)

    # ------------------------------------------------------------------ inspection
    @property
    def dead_letters(self) -> list[DeadLetter]:
        """Records the handlers refused (the hub's dead-letter topic), oldest first."""
        with self._backend.lock:
            return list(self._backend.dead_letters)

    def history_records(self) -> list[HistoryRecord]:
        """Every record written to the history topic, in order (what an audit export reads)."""
        with self._backend.lock:
            return list(self._backend.history)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Stop the workers and close the clients made by this backend."""
        for worker in self._workers:
            worker.stop()
        for client in self._clients:
            client.close()

    def __enter__(self) -> InMemoryBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
