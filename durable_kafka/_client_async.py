"""The asyncio client: :class:`Client`'s methods as coroutines (durabletask's ``AsyncTaskHubGrpcClient``).

Why not ``asyncio.to_thread(client.method)``: a long poll per HTTP request would then hold a
thread each, and a server with a thousand waiting callers would need a thousand threads. Here
nothing blocks per call:

* the AsyncClient wraps a sync :class:`Client` and shares its readers (the status cache and
  the reply listener threads). Those threads call back into the event loop
  (``loop.call_soon_threadsafe``) after every batch or reply; waiters are futures the loop
  re-checks then;
* end offsets (read-your-writes) come from an ``AdminClient.list_offsets`` whose results are
  concurrent futures librdkafka completes from its own thread, awaited with ``wrap_future``;
* commands go through one producer whose delivery callbacks complete futures; one poller
  thread serves those callbacks for every call;
* history reads (a consumer that reads a partition up to its end) run on one dedicated thread,
  one at a time: they are rare, and a fresh consumer per read is what the sync client does too.

Validation, message shapes and errors are the sync client's, so both behave alike.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar

from confluent_kafka import IsolationLevel, KafkaError, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient
# confluent_kafka.admin imports OffsetSpec without re-exporting it for a type checker (no __all__, no `as`)
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from durable_kafka._tracing import client_headers
from durable_kafka._client_entities import (
    CleanEntityStorageResult,
    EntityMetadata,
    EntityQuery,
    _one_of,
    metadata_of,
    page_of_entities,
    signal_request,
)
from durable_kafka._client_history import read_history
from durable_kafka._client_models import (
    TERMINAL_STATUSES,
    OrchestrationQuery,
    OrchestrationState,
    OrchestrationStatus,
    PurgeInstancesResult,
    page_of,
    state_from_status,
    validate_query,
)
from durable_kafka.client import (
    DEFAULT_SYNC_TIMEOUT,
    DELIVERY_TIMEOUT,
    Client,
    _check_start_at,
    _check_str,
    _check_tags,
    _check_timeout,
    _deleted_count,
    _orchestrator_name,
    _reply_error,
    _version,
    _to_json,
)
from durable_kafka.entities import CLEAN_OPERATION, EntityInstanceId, entity_id_of
from durable_kafka.errors import (
    BrokerError,
    ClientError,
    InstanceNotFoundError,
    InvalidArgumentError,
    TimeoutError,
)
from durable_kafka.streams.config import admin_config, command_producer_config
from durable_kafka.streams.connection import raise_if_unauthorized
from durable_kafka.streams.events import (
    ClientReply,
    EntityMessage,
    HistoryEvent,
    OrchestratorCommand,
    PurgeOrchestration,
    RaiseEvent,
    ResumeOrchestration,
    RewindOrchestration,
    SignalEntity,
    StartOrchestration,
    SuspendOrchestration,
    TerminateOrchestration,
    UnlockEntity,
)
from durable_kafka.streams.ids import validate_instance_id
from durable_kafka.streams.limits import check_record_size
from durable_kafka.streams.payloads import PayloadCodec, PayloadStore, looks_like_reference, resolve_fields

__all__ = ["AsyncClient"]

log = logging.getLogger(__name__)

_TERMINAL_NAMES = frozenset(status.name for status in TERMINAL_STATUSES)
_METADATA_TIMEOUT = 10.0


class _Waiter:
    """A condition the loop re-checks whenever a reader thread reports progress."""

    __slots__ = ("check", "future")

    def __init__(self, check: Callable[[], bool], future: asyncio.Future[None]) -> None:
        self.check = check
        self.future = future


class AsyncClient:
    """An asyncio client of one task hub; ``async with AsyncClient(...) as c:`` or ``await c.close()``.

    Same arguments, methods and errors as :class:`durable_kafka.Client`; every method that
    talks to Kafka is a coroutine. Use it from one event loop (the one that first awaits it).
    """

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        hub: str = "default",
        *,
        sync_timeout: float = DEFAULT_SYNC_TIMEOUT,
        kafka_config: Mapping[str, Any] | None = None,
        default_version: str | None = None,
        payload_store: PayloadStore | Literal[False] | None = None,
    ) -> None:
        self._client = Client(bootstrap_servers, hub, sync_timeout=sync_timeout, kafka_config=kafka_config,
                              default_version=default_version, payload_store=payload_store)
        self.default_version = default_version
        self._payloads = self._client._payloads
        self.hub = hub
        self.client_id = self._client.client_id
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start_lock: asyncio.Lock | None = None
        self._started = False
        self._closed = False
        self._waiters: list[_Waiter] = []
        self._producer: Producer | None = None
        self._admin: AdminClient | None = None
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()
        self._history = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"history:{hub}")

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def sync_client(self) -> Client:
        """The sync :class:`Client` whose readers this one shares (for code that is not async)."""
        return self._client

    async def close(self) -> None:
        """Stop the readers and flush queued commands; the client cannot be used after."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        # joining threads and flushing block: done once, off the loop
        await asyncio.get_running_loop().run_in_executor(self._history, self._close_blocking)
        self._history.shutdown(wait=True)
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(ClientError("the client was closed"))
        self._waiters.clear()

    def _close_blocking(self) -> None:
        if self._poller is not None:
            self._poller.join()
        if self._producer is not None:
            self._producer.flush(DELIVERY_TIMEOUT)
        self._client._status.remove_listener(self._on_progress)
        self._client.close()

    async def flush(self, timeout: float = DELIVERY_TIMEOUT) -> None:
        """Wait until commands queued with ``wait_for_acceptance=False`` are on the broker."""
        timeout = _check_timeout(timeout)
        await self._ensure_started()
        deadline = time.monotonic() + timeout
        while len(self._command_producer()) > 0:  # the poller thread serves the deliveries
            if time.monotonic() >= deadline:
                raise TimeoutError(f"requests still undelivered after {timeout}s")
            await asyncio.sleep(0.01)

    async def _ensure_started(self) -> None:
        """First use: connect, start the shared readers, the producer and its poller (once)."""
        if self._closed:
            raise ClientError("the client is closed")
        if self._started:
            return
        loop = asyncio.get_running_loop()
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            self._loop = loop
            # the connection check and first metadata reads block for a round trip or two:
            # done once per client, on the history thread, never per call
            await loop.run_in_executor(self._history, self._start_blocking)
            self._started = True

    def _start_blocking(self) -> None:
        client = self._client
        client._ensure_connected()
        client._status.start()
        client._replies.start()
        self._producer = Producer(command_producer_config(client._bootstrap, kafka_config=client._kafka_config))
        self._admin = AdminClient(admin_config(client._bootstrap, kafka_config=client._kafka_config))
        client._status.add_listener(self._on_progress)
        self._poller = threading.Thread(target=self._poll_deliveries, name=f"async-producer:{self.hub}",
                                        daemon=True)
        self._poller.start()

    def _command_producer(self) -> Producer:
        """The producer of commands (made by the first use: callers awaited _ensure_started)."""
        assert self._producer is not None, "the client is not started"
        return self._producer

    def _admin_client(self) -> AdminClient:
        """The admin client (made by the first use: callers awaited _ensure_started)."""
        assert self._admin is not None, "the client is not started"
        return self._admin

    def _poll_deliveries(self) -> None:
        producer = self._command_producer()
        while not self._stopping.is_set():
            producer.poll(0.1)

    # ------------------------------------------------------------------ loop-side waiting

    def _call_in_loop(self, callback: Callable[..., None], *args: Any) -> None:
        """From a reader thread: run ``callback`` on the client's loop (dropped once it closed)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed between the check and the call: nobody waits
            log.debug("event loop closed; progress notification dropped")

    def _on_progress(self) -> None:
        self._call_in_loop(self._recheck)

    def _recheck(self) -> None:
        for waiter in list(self._waiters):
            if waiter.future.done():
                continue
            try:
                if waiter.check():
                    waiter.future.set_result(None)
            except BaseException as error:  # the reader failed or closed: the waiter learns why
                waiter.future.set_exception(error)

    async def _until(self, check: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``check()`` is true (re-checked after each status batch); False on timeout."""
        if check():
            return True
        waiter = _Waiter(check, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            self._recheck_one(waiter)  # a batch may have landed between check() and append
            async with asyncio.timeout(timeout):
                await waiter.future
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._waiters.remove(waiter)

    @staticmethod
    def _recheck_one(waiter: _Waiter) -> None:
        if waiter.check():
            waiter.future.set_result(None)

    async def _end_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """High watermarks asked of the broker now (read_uncommitted, as ``Metadata`` does)."""
        latest: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # unannotated in confluent-kafka
        request = {TopicPartition(topic, p): latest for p in partitions}
        if not request:
            return {}
        try:
            futures = self._admin_client().list_offsets(request, isolation_level=IsolationLevel.READ_UNCOMMITTED,
                                               request_timeout=_METADATA_TIMEOUT)
            results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures.values()))
        except KafkaException as error:
            raise_if_unauthorized(error, {"topic": topic}, "read offsets of")
            raise BrokerError(f"reading the end offsets of {topic!r} failed: {error}") from error
        return {tp.partition: info.offset for tp, info in zip(futures, results)}

    async def _sync(self, keys: Iterable[str] | None, timeout: float) -> bool:
        """Read-your-writes: wait until the status cache has read what was committed before now."""
        await self._ensure_started()
        status = self._client._status
        partitions = range(status.partitions) if keys is None else {status.partition_of(k) for k in keys}
        targets = await self._end_offsets(self._client._topics.status, partitions)
        return await self._until(lambda: status.caught_up(targets), timeout)

    async def _current_status(self, instance_id: str) -> Any:
        await self._sync([instance_id], self._client._sync_timeout)
        return self._client._status.get(instance_id)

    # ------------------------------------------------------------------ producing

    async def _produce(self, topic: str, key: str, record: Any, what: str, *, wait: bool = True) -> None:
        await self._ensure_started()
        loop = asyncio.get_running_loop()
        value = self._client._codec.encode(record)
        key_bytes = key.encode("utf-8")
        check_record_size(topic, key_bytes, value, what)
        delivered: asyncio.Future[Any] | None = loop.create_future() if wait else None

        def on_delivery(error: Any, _record: Any) -> None:
            if delivered is not None:
                self._call_in_loop(_settle, delivered, error)
            elif error is not None:
                log.error("%s was not delivered: %s", what, error)

        while True:
            try:
                self._command_producer().produce(topic, key=key_bytes, value=value, on_delivery=on_delivery,
                                       headers=client_headers())  # the caller's trace context
                break
            except BufferError:  # the local queue is full (bulk starts): let the poller drain it
                await asyncio.sleep(0.05)
            except KafkaException as error:
                raise_if_unauthorized(error, {"topic": topic}, "write")
                raise BrokerError(f"could not send to {topic}: {error}") from error
        if delivered is None:
            return
        try:
            async with asyncio.timeout(DELIVERY_TIMEOUT):
                delivery_error = await delivered
        except asyncio.TimeoutError:
            raise BrokerError(f"no acknowledgement within {DELIVERY_TIMEOUT}s for {what}") from None
        if delivery_error is not None:
            raise_if_unauthorized(delivery_error, {"topic": topic}, "write")
            raise BrokerError(f"{what} was not delivered: {delivery_error}")

    async def _send(self, instance_id: str, body: OrchestratorCommand, *, wait: bool = True) -> None:
        message = self._client._message(instance_id, body, None)
        await self._produce(self._client._topics.orchestrator_events, instance_id, message,
                            f"the {type(body).__name__} command to instance {instance_id!r}", wait=wait)

    async def _request(self, instance_id: str, body: OrchestratorCommand, timeout: float) -> ClientReply:
        """Send a command carrying reply_to; await the processor's answer (no thread waits)."""
        await self._ensure_started()
        client = self._client
        message = client._message(instance_id, body, client.client_id)
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        client._replies.expect(message.id, lambda: self._call_in_loop(_settle, answered, None))
        try:
            await self._produce(client._topics.orchestrator_events, instance_id, message,
                                f"the {type(body).__name__} command to instance {instance_id!r}")
            async with asyncio.timeout(timeout):
                await answered
        except asyncio.TimeoutError:
            client._replies.forget(message.id)
            raise TimeoutError(
                f"no answer to {type(body).__name__} for instance {instance_id!r} within {timeout}s; "
                f"is a worker running for hub {self.hub!r}?"
            ) from None
        except BaseException:
            client._replies.forget(message.id)
            raise
        reply = client._replies.wait(message.id, 0)  # set by now: returns, or raises why not
        if reply is None:
            raise ClientError(f"the reply to request {message.id!r} was lost")
        if not reply.accepted:
            raise _reply_error(reply)
        return reply

    # ------------------------------------------------------------------ starting

    async def schedule_new_orchestration(
        self,
        orchestrator: Callable[..., Any] | str,
        *,
        input: Any = None,  # noqa: A002 - durabletask's name
        instance_id: str | None = None,
        start_at: datetime | None = None,
        tags: dict[str, str] | None = None,
        wait_for_acceptance: bool = True,
        timeout: float = 30,
        version: str | None = None,
    ) -> str:
        """Start a new instance and return its id (see :meth:`Client.schedule_new_orchestration`)."""
        name = _orchestrator_name(orchestrator)
        if input is not None and instance_id is None:  # a stored input is owned by its instance
            instance_id = uuid.uuid4().hex
        return await self._start(name, await self._json(input, "input", instance_id), instance_id,
                                 _check_start_at(start_at), _check_tags(tags), wait_for_acceptance,
                                 _check_timeout(timeout), _version(version, self.default_version))

    async def _start(self, name: str, serialized_input: str | None, instance_id: str | None,
                     start_at: datetime | None, tags: dict[str, str], wait: bool, timeout: float,
                     version: str | None = None) -> str:
        instance_id = uuid.uuid4().hex if instance_id is None else validate_instance_id(instance_id)
        body = StartOrchestration(name=name, execution_id=uuid.uuid4().hex, input=serialized_input,
                                  scheduled_start_at=start_at, tags=tags, version=version)
        if wait:
            await self._request(instance_id, body, timeout)
        else:
            await self._send(instance_id, body, wait=False)
        return instance_id

    async def _json(self, value: Any, what: str, owner: str | None) -> str | None:
        """``_to_json`` with large payloads stored off the event loop (an upload blocks)."""
        if value is None:
            return None
        try:  # small (nearly always): on the loop, no thread
            return _to_json(value, what, _SMALL_ONLY, owner)
        except _NeedsStore:
            return await asyncio.to_thread(_to_json, value, what, self._payloads, owner)

    async def _state(self, status: Any, fetch_payloads: bool) -> OrchestrationState:
        """The public state; references to large payloads are resolved off the event loop."""
        if fetch_payloads and any(t is not None and looks_like_reference(t)
                                  for t in (status.input, status.output, status.custom_status)):
            return await asyncio.to_thread(state_from_status, status, fetch_payloads=True, payloads=self._payloads)
        return state_from_status(status, fetch_payloads=fetch_payloads)

    async def restart_orchestration(self, instance_id: str, *, restart_with_new_instance_id: bool = False) -> str:
        """Run an ended instance's orchestrator again with its original input; returns the id."""
        validate_instance_id(instance_id)
        status = await self._current_status(instance_id)
        if status is None:
            raise InstanceNotFoundError(f"instance {instance_id!r} does not exist")
        new_id = uuid.uuid4().hex if restart_with_new_instance_id else instance_id
        return await self._start(status.name, status.input, new_id, None, dict(status.tags), True, 30.0,
                                 status.version)

    # ------------------------------------------------------------------ reading

    async def get_orchestration_state(self, instance_id: str, *, fetch_payloads: bool = True
                                      ) -> OrchestrationState | None:
        """The instance's state as of now (including anything committed before the call)."""
        validate_instance_id(instance_id)
        status = await self._current_status(instance_id)
        return None if status is None else await self._state(status, fetch_payloads)

    async def wait_for_orchestration_start(self, instance_id: str, *, fetch_payloads: bool = False,
                                           timeout: float = 60) -> OrchestrationState:
        """Wait until the instance exists and is no longer PENDING; TimeoutError otherwise."""
        return await self._wait(instance_id, lambda s: s.runtime_status != OrchestrationStatus.PENDING.name,
                                "start", fetch_payloads, timeout)

    async def wait_for_orchestration_completion(self, instance_id: str, *, fetch_payloads: bool = True,
                                                timeout: float = 60) -> OrchestrationState:
        """Wait until the instance is COMPLETED, FAILED or TERMINATED; TimeoutError otherwise."""
        return await self._wait(instance_id, lambda s: s.runtime_status in _TERMINAL_NAMES, "complete",
                                fetch_payloads, timeout)

    async def _wait(self, instance_id: str, predicate: Callable[[Any], bool], what: str,
                    fetch_payloads: bool, timeout: float) -> OrchestrationState:
        validate_instance_id(instance_id)
        timeout = _check_timeout(timeout)
        deadline = time.monotonic() + timeout
        # catch up first, so an old snapshot (a previous run's COMPLETED) is not taken for the answer
        await self._sync([instance_id], min(timeout, self._client._sync_timeout))
        cache = self._client._status

        def satisfied() -> bool:
            cache.raise_if_failed()
            if cache.closed:
                raise ClientError(f"the client was closed while waiting for instance {instance_id!r}")
            status = cache.get(instance_id)
            return status is not None and predicate(status)

        if not await self._until(satisfied, max(0.0, deadline - time.monotonic())):
            status = cache.get(instance_id)
            seen = status.runtime_status if status is not None else "no status yet"
            raise TimeoutError(f"timed out after {timeout}s waiting for instance {instance_id!r} to {what} "
                               f"(last seen: {seen})")
        return await self._state(cache.get(instance_id), fetch_payloads)

    async def get_state_or_wait(self, instance_id: str, timeout: float) -> OrchestrationState | None:
        """The state now, or once the instance ends if it has not within ``timeout`` (None if unknown).

        For the HTTP long poll: one catch-up with the broker instead of the two that
        ``get_orchestration_state`` followed by ``wait_for_orchestration_completion`` cost, and
        an unknown id answers at once instead of after the whole wait.
        """
        validate_instance_id(instance_id)
        timeout = _check_timeout(timeout)
        cache = self._client._status
        await self._sync([instance_id], self._client._sync_timeout)
        if cache.get(instance_id) is None:
            return None

        def ended() -> bool:  # a purge while waiting also ends the wait (the answer is then None)
            status = cache.get(instance_id)
            return status is None or status.runtime_status in _TERMINAL_NAMES

        if timeout > 0:
            await self._until(ended, timeout)
        status = cache.get(instance_id)
        return None if status is None else await self._state(status, True)

    async def query_orchestration_states(self, query: OrchestrationQuery | None = None
                                         ) -> tuple[list[OrchestrationState], str | None]:
        """One page of matching states (created_at, instance id order) and the next page's token."""
        query = OrchestrationQuery() if query is None else query
        validate_query(query)
        await self._sync(None, self._client._sync_timeout)
        return await _off_loop_if_referenced(page_of, self._client._status.snapshot(), query, self._payloads)

    async def get_all_orchestration_states(self, query: OrchestrationQuery | None = None
                                           ) -> list[OrchestrationState]:
        """Every matching state, from one snapshot (pages never overlap or skip)."""
        query = OrchestrationQuery() if query is None else query
        validate_query(query)
        await self._sync(None, self._client._sync_timeout)
        snapshot = self._client._status.snapshot()
        states: list[OrchestrationState] = []
        token = query.continuation_token
        while True:
            page, token = await _off_loop_if_referenced(
                page_of, snapshot, OrchestrationQuery(**{**vars(query), "continuation_token": token}), self._payloads)
            states.extend(page)
            if token is None:
                return states

    async def get_orchestration_history(self, instance_id: str) -> list[HistoryEvent]:
        """The current execution's history events, in order."""
        validate_instance_id(instance_id)
        status = await self._current_status(instance_id)
        if status is None:
            raise InstanceNotFoundError(f"instance {instance_id!r} does not exist")
        client = self._client
        return await asyncio.get_running_loop().run_in_executor(
            self._history,
            lambda: resolve_fields(read_history(client._bootstrap, client._metadata, client._topics.history,
                                                client._status.partition_of(instance_id), instance_id,
                                                status.execution_id, client._codec, timeout=60.0,
                                                settle=client._sync_timeout), self._payloads, instance_id),
        )

    # ------------------------------------------------------------------ commands

    async def raise_orchestration_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        """Send an external event to the instance (buffered until it waits for that name)."""
        validate_instance_id(instance_id)
        _check_str(event_name, "event_name")
        if not event_name:
            raise InvalidArgumentError("event_name must not be empty")
        await self._send(instance_id, RaiseEvent(name=event_name, input=await self._json(data, "data", instance_id)))

    async def terminate_orchestration(self, instance_id: str, *, output: Any = None, recursive: bool = True) -> None:
        """Terminate the instance (and, if ``recursive``, its sub-orchestrations)."""
        validate_instance_id(instance_id)
        if not isinstance(recursive, bool):
            raise InvalidArgumentError(f"recursive must be a bool, got {recursive!r}")
        await self._send(instance_id, TerminateOrchestration(output=await self._json(output, "output", instance_id),
                                                                 recursive=recursive))

    async def suspend_orchestration(self, instance_id: str, *, reason: str | None = None) -> None:
        """Suspend the instance: new events are kept but not processed until resumed."""
        validate_instance_id(instance_id)
        _check_str(reason, "reason", optional=True)
        await self._send(instance_id, SuspendOrchestration(reason=reason))

    async def resume_orchestration(self, instance_id: str, *, reason: str | None = None) -> None:
        """Resume a suspended instance."""
        validate_instance_id(instance_id)
        _check_str(reason, "reason", optional=True)
        await self._send(instance_id, ResumeOrchestration(reason=reason))

    async def rewind_orchestration(self, instance_id: str, *, reason: str | None = None,
                                   timeout: float = 30) -> None:
        """Resume a FAILED instance as if its failed tasks had not failed yet (see
        :meth:`Client.rewind_orchestration`); InstanceNotFailedError if it is not FAILED."""
        validate_instance_id(instance_id)
        _check_str(reason, "reason", optional=True)
        await self._request(instance_id, RewindOrchestration(reason=reason), _check_timeout(timeout))

    async def purge_orchestration(self, instance_id: str, recursive: bool = True, *,
                                  timeout: float = 30) -> PurgeInstancesResult:
        """Delete the instance's state (and its children's, if ``recursive``); only ended ones."""
        validate_instance_id(instance_id)
        if not isinstance(recursive, bool):
            raise InvalidArgumentError(f"recursive must be a bool, got {recursive!r}")
        try:
            reply = await self._request(instance_id, PurgeOrchestration(recursive=recursive), _check_timeout(timeout))
        except InstanceNotFoundError:
            return PurgeInstancesResult(deleted_instance_count=0)
        return PurgeInstancesResult(deleted_instance_count=_deleted_count(reply))

    async def purge_orchestrations_by(self, created_time_from: datetime | None = None,
                                      created_time_to: datetime | None = None,
                                      runtime_status: list[OrchestrationStatus] | None = None,
                                      *, timeout: float = 30) -> PurgeInstancesResult:
        """Purge every ended instance matching the filter (the HTTP API's purge by filter).

        Statuses that have not ended are never purged, whatever ``runtime_status`` asks.
        """
        wanted = [s for s in (runtime_status or TERMINAL_STATUSES) if s in TERMINAL_STATUSES]
        states = await self.get_all_orchestration_states(OrchestrationQuery(
            created_time_from=created_time_from, created_time_to=created_time_to, runtime_status=wanted,
            max_instance_count=1000))
        results = await asyncio.gather(*(self.purge_orchestration(s.instance_id, timeout=timeout) for s in states))
        return PurgeInstancesResult(deleted_instance_count=sum(r.deleted_instance_count for r in results))

    async def missing_topics(self, timeout: float = 5.0) -> list[str]:
        """The hub's topics the broker does not have (empty when the hub is ready), for health
        probes; BrokerError when the broker does not answer within ``timeout``."""
        await self._ensure_started()
        names = self._client._topics.all()
        futures = self._admin_client().describe_topics(TopicCollection(names), request_timeout=timeout)
        missing: list[str] = []
        for name, future in futures.items():
            try:
                await asyncio.wrap_future(future)
            except KafkaException as error:
                code = error.args[0].code() if error.args else None
                if code != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise BrokerError(f"describing topic {name!r} failed: {error}") from error
                missing.append(name)
        return missing

    # ------------------------------------------------------------------ entities

    async def signal_entity(self, entity_instance_id: EntityInstanceId | str | None = None,
                            operation_name: str | None = None, input: Any = None,  # noqa: A002
                            signal_time: datetime | None = None, *, wait_for_delivery: bool = True,
                            entity_id: EntityInstanceId | str | None = None, operation: str | None = None) -> None:
        """Send a one-way operation to an entity (at ``signal_time`` if given)."""
        try:  # small (nearly always): on the loop, no thread
            target, body = signal_request(entity_instance_id, operation_name, input, signal_time,
                                          entity_id=entity_id, operation=operation, payloads=_SMALL_ONLY)
        except _NeedsStore:
            target, body = await asyncio.to_thread(
                signal_request, entity_instance_id, operation_name, input, signal_time,
                entity_id=entity_id, operation=operation, payloads=self._payloads)
        await self._send_entity_message(target, body, wait_for_delivery)

    async def _send_entity_message(self, entity_id: str, body: SignalEntity | UnlockEntity, wait: bool) -> None:
        message = EntityMessage(id=str(uuid.uuid4()), entity_id=entity_id, sent_at=_utcnow(), body=body)
        await self._produce(self._client._topics.entity_operations, entity_id, message,
                            f"the {type(body).__name__} message to entity {entity_id!r}", wait=wait)

    async def get_entity(self, entity_instance_id: EntityInstanceId | str | None = None,
                         include_state: bool = True, *, entity_id: EntityInstanceId | str | None = None
                         ) -> EntityMetadata | None:
        """The entity as of now; None if it has no state."""
        entity_instance_id = _one_of(entity_instance_id, entity_id, "entity_instance_id", "entity_id")
        eid = str(entity_id_of(entity_instance_id))
        await self._sync([eid], self._client._sync_timeout)
        state = self._client._status.get_entity(eid)
        if state is None or state.state is None:
            return None
        if state.state is not None and include_state and looks_like_reference(state.state):
            return await asyncio.to_thread(metadata_of, state, include_state, self._payloads)
        return metadata_of(state, include_state)

    async def query_entities(self, entity_query: EntityQuery | None = None
                             ) -> tuple[list[EntityMetadata], str | None]:
        """One page of matching entities (ordered by id) and the token of the next page."""
        await self._sync(None, self._client._sync_timeout)
        return await _off_loop_if_referenced(page_of_entities, self._client._status.entity_snapshot(),
                                             entity_query or EntityQuery(), self._payloads)

    async def get_all_entities(self, entity_query: EntityQuery | None = None) -> list[EntityMetadata]:
        """Every matching entity, following the pages of :meth:`query_entities` over one snapshot."""
        query = entity_query or EntityQuery()
        await self._sync(None, self._client._sync_timeout)
        snapshot = self._client._status.entity_snapshot()
        out: list[EntityMetadata] = []
        token = query.continuation_token
        while True:
            page, token = await _off_loop_if_referenced(
                page_of_entities, snapshot, EntityQuery(**{**vars(query), "continuation_token": token}), self._payloads)
            out.extend(page)
            if token is None:
                return out

    async def clean_entity_storage(self, remove_empty_entities: bool = True, release_orphaned_locks: bool = True,
                                   *, timeout: float = 30.0) -> CleanEntityStorageResult:
        """Remove entities without state and release locks held by orchestrations that ended."""
        await self._sync(None, self._client._sync_timeout)
        cache = self._client._status
        unlocked: dict[str, str] = {}
        removing: set[str] = set()
        for s in cache.entity_snapshot():
            owner_gone = False
            if release_orphaned_locks and s.lock_owner is not None:
                owner = cache.get(s.lock_owner)
                owner_gone = owner is None or owner.runtime_status in _TERMINAL_NAMES
                if owner_gone:
                    await self._send_entity_message(s.entity_id, UnlockEntity(
                        critical_section_id=s.critical_section_id or "", parent_instance_id=s.lock_owner), True)
                    unlocked[s.entity_id] = s.lock_owner
            if remove_empty_entities and s.state is None and not s.queued and (s.lock_owner is None or owner_gone):
                await self._send_entity_message(s.entity_id, SignalEntity(operation=CLEAN_OPERATION), True)
                removing.add(s.entity_id)

        def counts() -> tuple[int, int]:
            released = sum(1 for eid, owner in unlocked.items()
                           if (e := cache.get_entity(eid)) is None or e.lock_owner != owner)
            return released, sum(1 for eid in removing if cache.get_entity(eid) is None)

        await self._until(lambda: counts() == (len(unlocked), len(removing)), timeout)
        released, removed = counts()
        return CleanEntityStorageResult(empty_entities_removed=removed, orphaned_locks_released=released)


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _NeedsStore(Exception):
    """A payload above the threshold: store it off the event loop (an upload blocks)."""


class _SmallOnly(PayloadCodec):
    """Leaves small text as it is; raises :class:`_NeedsStore` where a store would be needed."""

    def __init__(self) -> None:
        super().__init__(None)

    def externalize(self, text: str, owner: str | None) -> str:
        if len(text) > 16 * 1024:
            raise _NeedsStore()
        return text


_SMALL_ONLY = _SmallOnly()


_Row = TypeVar("_Row")
_Snapshot = TypeVar("_Snapshot")
_Query = TypeVar("_Query")


async def _off_loop_if_referenced(page: Callable[[_Snapshot, _Query, PayloadCodec | None], tuple[list[_Row], str | None]],
                                  snapshot: _Snapshot, query: _Query, payloads: PayloadCodec
                                  ) -> tuple[list[_Row], str | None]:
    """A page computed on the loop; again in a thread with references resolved, if it holds any."""
    rows, token = page(snapshot, query, None)
    for row in rows:
        texts = (getattr(row, "serialized_input", None), getattr(row, "serialized_output", None),
                 getattr(row, "serialized_custom_status", None), getattr(row, "serialized_state", None))
        if any(isinstance(t, str) and looks_like_reference(t) for t in texts):
            return await asyncio.to_thread(page, snapshot, query, payloads)
    return rows, token
