"""The client's entity methods (mixed into :class:`durable_kafka.Client`), as in durabletask.

* ``signal_entity`` writes an ``EntityMessage`` to ``<hub>.entity-operations`` keyed by the
  entity id (so it reaches the processor that owns the entity); with ``signal_time`` the
  processor keeps it in its due-time index and runs it at that time, never earlier.
* ``get_entity`` / ``get_all_entities`` answer from the client's cache of the compacted
  ``<hub>.status`` topic, where the entity processor publishes a snapshot of every entity it
  changed (``EntityState`` records, next to the orchestrations' ``InstanceStatus``). Reads sync
  the cache to the topic's end first, so whatever was committed before the call is seen.
* ``clean_entity_storage`` finds, in the same cache, entities without state (removable) and
  locks held by orchestrations that no longer run, and sends the owning processor a clean-up
  signal or an unlock on the dead owner's behalf; it then waits until the snapshots show it.

Uses the Client's internals: ``_topics``, ``_codec``, ``_get_producer``, ``_status``,
``_ensure_open`` and ``_sync_timeout``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar, overload

from confluent_kafka import KafkaException

from durable_kafka._tracing import client_headers
from durable_kafka.entities import CLEAN_OPERATION, EntityInstanceId, convert_state, entity_id_of
from durable_kafka.errors import BrokerError, InvalidArgumentError
from durable_kafka.streams.events import EntityMessage, EntityState, SignalEntity, UnlockEntity
from durable_kafka.streams.limits import check_payload_size, check_record_size
from durable_kafka.streams.payloads import PayloadCodec

if TYPE_CHECKING:
    from confluent_kafka import Producer

    from durable_kafka._client_status import StatusCache
    from durable_kafka.streams.codec import Codec
    from durable_kafka.streams.topics import HubTopics

log = logging.getLogger(__name__)

TState = TypeVar("TState")

_DELIVERY_TIMEOUT = 30.0


class EntityMetadata:
    """What a client sees of one entity: id, last modification, lock holder, backlog, state."""

    def __init__(self, id: EntityInstanceId, last_modified: datetime | None, backlog_queue_size: int,  # noqa: A002
                 locked_by: str | None, includes_state: bool, state: str | None) -> None:
        self.id = id
        self.last_modified = last_modified
        self.backlog_queue_size = backlog_queue_size
        self.locked_by = locked_by
        self.includes_state = includes_state
        self.serialized_state = state  # JSON text (None without include_state, or for a stateless entity)

    @overload
    def get_state(self, intended_type: type[TState]) -> TState | None: ...

    @overload
    def get_state(self, intended_type: None = None) -> Any: ...

    def get_state(self, intended_type: type | None = None) -> Any:
        """The state decoded from JSON (and shaped as ``intended_type`` when given)."""
        if self.serialized_state is None:
            return None
        return convert_state(json.loads(self.serialized_state), intended_type)

    def get_locked_by(self) -> str | None:
        """The orchestration instance id holding this entity's lock, None when unlocked."""
        return self.locked_by

    def __repr__(self) -> str:
        return (f"EntityMetadata(id={self.id!r}, last_modified={self.last_modified!r}, "
                f"locked_by={self.locked_by!r}, backlog_queue_size={self.backlog_queue_size}, "
                f"state={self.serialized_state!r})")


@dataclass
class EntityQuery:
    """Which entities ``get_all_entities`` returns (durabletask's fields).

    ``instance_id_starts_with``: a prefix of ``@name@key``; the leading '@' may be left out and
    the name part matches case-insensitively. ``include_transient``: also list entities that
    have no state (they exist only as a lock or a record awaiting clean-up).
    """

    instance_id_starts_with: str | None = None
    last_modified_from: datetime | None = None
    last_modified_to: datetime | None = None
    include_state: bool = True
    include_transient: bool = False
    page_size: int | None = None
    continuation_token: str | None = None


DEFAULT_PAGE_SIZE = 100


@dataclass
class CleanEntityStorageResult:
    empty_entities_removed: int
    orphaned_locks_released: int


def _normalized_prefix(prefix: str | None) -> str | None:
    if prefix is None:
        return None
    if not isinstance(prefix, str):
        raise InvalidArgumentError(f"instance_id_starts_with must be a str, got {prefix!r}")
    body = prefix[1:] if prefix.startswith("@") else prefix
    name, sep, key = body.partition("@")
    return "@" + name.lower() + sep + key


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _matches(s: EntityState, query: EntityQuery, prefix: str | None) -> bool:
    if prefix is not None and not s.entity_id.startswith(prefix):
        return False
    if s.state is None and not query.include_transient:
        return False
    frm, to = _utc(query.last_modified_from), _utc(query.last_modified_to)
    if frm is not None and (s.last_modified is None or s.last_modified < frm):
        return False
    if to is not None and (s.last_modified is None or s.last_modified >= to):
        return False
    return True


def metadata_of(s: EntityState, include_state: bool, payloads: PayloadCodec | None = None) -> EntityMetadata:
    state = s.state if include_state else None
    if state is not None and payloads is not None:  # a large state is stored apart (docs/PAYLOADS.md)
        state = payloads.resolve(state, s.entity_id)
    return EntityMetadata(id=EntityInstanceId.parse(s.entity_id), last_modified=s.last_modified,
                          backlog_queue_size=len(s.queued), locked_by=s.lock_owner,
                          includes_state=include_state, state=state)


def page_of_entities(snapshot: list[EntityState], query: EntityQuery,
                     payloads: PayloadCodec | None = None) -> tuple[list[EntityMetadata], str | None]:
    """One page in entity-id order and the token of the next (None on the last page)."""
    size = query.page_size or DEFAULT_PAGE_SIZE
    if not isinstance(size, int) or size <= 0:
        raise InvalidArgumentError(f"page_size must be a positive int, got {query.page_size!r}")
    prefix = _normalized_prefix(query.instance_id_starts_with)
    rows = sorted((s for s in snapshot if _matches(s, query, prefix)), key=lambda s: s.entity_id)
    if query.continuation_token is not None:
        rows = [s for s in rows if s.entity_id > query.continuation_token]
    page = rows[:size]
    token = page[-1].entity_id if len(rows) > size else None
    return [metadata_of(s, query.include_state, payloads) for s in page], token


class EntityClientMixin:
    """Entity methods of :class:`durable_kafka.Client` (see the module docstring)."""

    # what the client class this mixes into (durable_kafka.client.Client) provides
    _payloads: PayloadCodec  # the client's large-payload codec (docs/PAYLOADS.md)
    _topics: HubTopics
    _codec: Codec
    _status: StatusCache
    _sync_timeout: float

    if TYPE_CHECKING:  # declared for the type checker only: the client's own methods run
        def _ensure_open(self) -> None: ...

        def _get_producer(self) -> Producer: ...

    # ------------------------------------------------------------------ signals
    def signal_entity(self, entity_instance_id: EntityInstanceId | str | None = None, operation_name: str | None = None,
                      input: Any = None, signal_time: datetime | None = None, *,  # noqa: A002
                      wait_for_delivery: bool = True, entity_id: EntityInstanceId | str | None = None,
                      operation: str | None = None) -> None:
        """Send a one-way operation to an entity (at ``signal_time`` if given).

        ``wait_for_delivery`` (default) returns once the broker stored the signal;
        ``False`` only queues it in the producer (for sending many quickly; ``close()`` flushes).
        """
        target, body = signal_request(entity_instance_id, operation_name, input, signal_time,
                                      entity_id=entity_id, operation=operation, payloads=self._payloads)
        self._send_entity_message(target, body, wait_for_delivery)

    def _send_entity_message(self, entity_id: str, body: Any, wait: bool) -> None:
        self._ensure_open()
        message = EntityMessage(id=str(uuid.uuid4()), entity_id=entity_id, sent_at=datetime.now(timezone.utc),
                                body=body)
        producer = self._get_producer()
        topic = self._topics.entity_operations
        outcome: list[Any] = []
        value = self._codec.encode(message)
        key = entity_id.encode("utf-8")
        check_record_size(topic, key, value, f"the {type(body).__name__} message to entity {entity_id!r}")
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=client_headers(),
                                 on_delivery=(lambda error, _msg: outcome.append(error)) if wait else None)
                break
            except BufferError:  # the local queue is full: let deliveries drain, then retry
                producer.poll(0.05)
            except KafkaException as error:
                raise BrokerError(f"could not send to {topic}: {error}") from error
        if not wait:
            producer.poll(0)
            return
        producer.flush(_DELIVERY_TIMEOUT)
        if not outcome:
            raise BrokerError(f"no acknowledgement within {_DELIVERY_TIMEOUT}s for a signal to {entity_id!r}")
        if outcome[0] is not None:
            raise BrokerError(f"signal to entity {entity_id!r} was not delivered: {outcome[0]}")

    # ------------------------------------------------------------------ reads
    def get_entity(self, entity_instance_id: EntityInstanceId | str | None = None,
                   include_state: bool = True, *, entity_id: EntityInstanceId | str | None = None
                   ) -> EntityMetadata | None:
        """The entity as of now (including anything committed before the call); None if it has
        no state (it never existed, or its state was deleted)."""
        entity_instance_id = _one_of(entity_instance_id, entity_id, "entity_instance_id", "entity_id")
        eid = str(entity_id_of(entity_instance_id))
        self._ensure_open()
        self._status.sync([self._status.partition_of(eid)], self._sync_timeout)
        s = self._status.get_entity(eid)
        if s is None or s.state is None:
            return None
        return metadata_of(s, include_state, self._payloads)

    def query_entities(self, entity_query: EntityQuery | None = None) -> tuple[list[EntityMetadata], str | None]:
        """One page of matching entities (ordered by id) and the token of the next page."""
        query = entity_query or EntityQuery()
        self._ensure_open()
        self._status.sync(None, self._sync_timeout)
        return page_of_entities(self._status.entity_snapshot(), query, self._payloads)

    def get_all_entities(self, entity_query: EntityQuery | None = None) -> list[EntityMetadata]:
        """Every matching entity, following the pages of :meth:`query_entities`."""
        query = entity_query or EntityQuery()
        self._ensure_open()
        self._status.sync(None, self._sync_timeout)
        snapshot = self._status.entity_snapshot()  # one snapshot: pages never overlap or skip
        out: list[EntityMetadata] = []
        token = query.continuation_token
        while True:
            page, token = page_of_entities(snapshot, EntityQuery(**{**vars(query), "continuation_token": token}),
                                           self._payloads)
            out.extend(page)
            if token is None:
                return out

    # ------------------------------------------------------------------ maintenance
    def clean_entity_storage(self, remove_empty_entities: bool = True, release_orphaned_locks: bool = True,
                             *, timeout: float = 30.0) -> CleanEntityStorageResult:
        """Remove entities without state and release locks held by orchestrations that ended.

        Returns how many of each the processors confirmed within ``timeout``.
        """
        self._ensure_open()
        self._status.sync(None, self._sync_timeout)
        unlocked: dict[str, str] = {}  # entity id -> the dead owner
        removing: set[str] = set()
        for s in self._status.entity_snapshot():
            owner_gone = False
            if release_orphaned_locks and s.lock_owner is not None:
                owner = self._status.get(s.lock_owner)
                owner_gone = owner is None or owner.runtime_status.is_terminal
                if owner_gone:
                    self._send_entity_message(s.entity_id, UnlockEntity(
                        critical_section_id=s.critical_section_id or "", parent_instance_id=s.lock_owner), True)
                    unlocked[s.entity_id] = s.lock_owner
            if remove_empty_entities and s.state is None and not s.queued and (s.lock_owner is None or owner_gone):
                self._send_entity_message(s.entity_id, SignalEntity(operation=CLEAN_OPERATION), True)
                removing.add(s.entity_id)
        released, removed = self._await_clean(unlocked, removing, timeout)
        log.info("clean_entity_storage: %d empty entities removed, %d orphaned locks released", removed, released)
        return CleanEntityStorageResult(empty_entities_removed=removed, orphaned_locks_released=released)

    def _await_clean(self, unlocked: dict[str, str], removing: set[str], timeout: float) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        while True:
            self._status.sync(None, min(self._sync_timeout, max(0.0, deadline - time.monotonic())))
            released = sum(1 for eid, owner in unlocked.items()
                           if (s := self._status.get_entity(eid)) is None or s.lock_owner != owner)
            removed = sum(1 for eid in removing if self._status.get_entity(eid) is None)
            if (released == len(unlocked) and removed == len(removing)) or time.monotonic() >= deadline:
                return released, removed
            time.sleep(0.1)


def signal_request(entity_instance_id: EntityInstanceId | str | None, operation_name: str | None, input: Any,  # noqa: A002
                   signal_time: datetime | None, *, entity_id: EntityInstanceId | str | None = None,
                   operation: str | None = None, payloads: PayloadCodec | None = None) -> tuple[str, SignalEntity]:
    """The checked target entity id and SignalEntity of a ``signal_entity`` call (shared by
    the sync and async clients, so both validate alike)."""
    entity_instance_id = _one_of(entity_instance_id, entity_id, "entity_instance_id", "entity_id")
    operation_name = _one_of(operation_name, operation, "operation_name", "operation")
    target = entity_id_of(entity_instance_id)
    if not isinstance(operation_name, str) or not operation_name:
        raise InvalidArgumentError(f"operation_name must be a non-empty str, got {operation_name!r}")
    if signal_time is not None:
        if not isinstance(signal_time, datetime):
            raise InvalidArgumentError(f"signal_time must be a datetime, got {signal_time!r}")
        signal_time = _utc(signal_time)
    payload = None
    if input is not None:
        try:
            payload = json.dumps(input)
        except (TypeError, ValueError) as error:
            raise InvalidArgumentError(f"input is not JSON-serializable: {error}") from None
        if payloads is not None:  # large inputs are stored, owned by the entity
            payload = payloads.externalize(payload, str(target))
        check_payload_size(f"the input of operation {operation_name!r} (as JSON)", payload)
    return str(target), SignalEntity(operation=operation_name, input=payload, scheduled_time=signal_time)


def _one_of(value: Any, alias: Any, name: str, alias_name: str) -> Any:
    """durabletask spells it ``name``, the issue's API ``alias_name``: accept either, not both."""
    if value is not None and alias is not None:
        raise InvalidArgumentError(f"pass {name} or {alias_name}, not both")
    if value is None and alias is None:
        raise InvalidArgumentError(f"{name} is required")
    return value if value is not None else alias
