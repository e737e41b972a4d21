"""One entity's state transitions for one batch: messages in, an Outcome out.

Nothing here touches Kafka or RocksDB (the shell in :mod:`.entities` does). An
:class:`EntityStep` holds the entity's :class:`~durable_kafka.streams.events.EntityState`,
applies the batch's messages in arrival order (one small handler per message type), runs each
operation through the user's entity code, and records in an
:class:`~.instance.Outcome` what must be written: the new state (once per batch, however many
operations ran), history records, responses, signals, orchestration starts, the client
snapshot and scheduled signals.

Rules this module owns:

* **One at a time, in order.** Messages are applied strictly in the order given.
* **Exactly-once effect.** A message id seen before (``EntityState.recent_ids``, bounded) is
  dropped; the processor's transactions make the consumed offset, the new state and every
  output one atomic unit, so a redelivered batch cannot apply twice either.
* **Failure rolls back one operation.** The operation runs against a context holding a copy of
  the state; its state change, signals and orchestration starts are applied only if it returns.
* **Locks.** While an orchestration holds the entity (critical section), every message that is
  not from the holder is queued in ``EntityState.queued``; after the holder unlocks, the queue
  runs in order (a queued lock request may take the lock again, and what follows waits again).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from typing import Any, Callable

from durable_kafka.entities import CLEAN_OPERATION, EntityContext, EntityInstanceId, run_operation
from durable_kafka.errors import EntityOperationNotFoundError
from durable_kafka.streams import events as ev
from durable_kafka.streams.events import AnyHistoryEvent, EntityMessage, EntityState, FailureDetails

from durable_kafka.streams.limits import check_payload_size
from durable_kafka.streams.payloads import discard_owned, externalize, resolve

from . import store as keys
from .context import failure_details_of
from .instance import Outcome, Produce, history_record
from .instance_state import to_ms

log = logging.getLogger(__name__)

RECENT_IDS = 256  # redeliveries come within a batch or two; the transaction covers the rest
NAMESPACE = uuid.UUID("5f0c1a8e-3b7d-4e51-9a8c-2d6e4b1f7a90")
SCHEDULED_PREFIX = b"s" + keys.SEP


def scheduled_key(due_ms: int, entity_id: str, message_id: str) -> bytes:
    """The due-time index of scheduled signals: sortable by due time, then entity, then id."""
    return SCHEDULED_PREFIX + b"%016x" % due_ms + keys.SEP + entity_id.encode() + keys.SEP + message_id.encode()


def scheduled_due_ms(key: bytes) -> int:
    return int(key[2:18], 16)


class EntityTopics:
    """The topic names an entity step writes to (resolved once per worker)."""

    def __init__(self, entity_operations: str, orchestrator_events: str, history: str, status: str) -> None:
        self.entity_operations = entity_operations
        self.orchestrator_events = orchestrator_events
        self.history = history
        self.status = status


def snapshot_of(s: EntityState) -> EntityState:
    """The client-facing copy of an entity's state (``<hub>.status``): without the dedupe ids."""
    return EntityState(entity_id=s.entity_id, state=s.state, last_modified=s.last_modified,
                       lock_owner=s.lock_owner, critical_section_id=s.critical_section_id,
                       queued=list(s.queued), recent_ids=[], execution_id=s.execution_id,
                       history_length=s.history_length)


def is_removable(s: EntityState) -> bool:
    """An entity record that holds nothing worth keeping: no state, no lock, nothing queued."""
    return s.state is None and s.lock_owner is None and not s.queued


class EntityStep:
    """Applies one batch of messages (and due scheduled signals) to one entity."""

    def __init__(self, *, state: EntityState | None, entity_id: str, now: datetime, topics: EntityTopics,
                 lookup: Callable[[str], Any]) -> None:
        self.eid = entity_id
        self.id = EntityInstanceId.parse(entity_id)
        self.s = state
        self.now = now
        self.now_ms = to_ms(now)
        self.t = topics
        self.lookup = lookup
        self.out = Outcome()
        self.changed = False  # the record must be written
        self.visible = False  # the client snapshot must be republished
        self.removed = False
        self.operations = 0
        self._recent = set(state.recent_ids) if state is not None else set()

    # ------------------------------------------------------------------ entry points
    def apply(self, msg: EntityMessage) -> None:
        """A message as it arrived on the entity's partition (dropped if seen before)."""
        if msg.id in self._recent:
            log.debug("dropping duplicate message %s for %s", msg.id, self.eid)
            return
        s = self._state()
        self._recent.add(msg.id)
        s.recent_ids.append(msg.id)
        if len(s.recent_ids) > RECENT_IDS:
            for old in s.recent_ids[: len(s.recent_ids) - RECENT_IDS]:
                self._recent.discard(old)
            del s.recent_ids[: len(s.recent_ids) - RECENT_IDS]
        self.changed = True
        self._dispatch(msg, fired=False)

    def fire(self, msg: EntityMessage) -> None:
        """A scheduled signal whose time has come (its id was recorded when it arrived)."""
        self._state()
        self.changed = True
        self._dispatch(msg, fired=True)

    def finish(self) -> Outcome:
        s = self.s
        if not self.changed:
            return self.out
        if s is None:  # removed by a clean-up and not recreated by a later message
            if self.removed:
                self.out.puts[keys.entity_key(self.eid)] = None
                self.out.produce.append(Produce(self.t.status, self.eid, None))
            return self.out
        self.out.puts[keys.entity_key(self.eid)] = s
        if self.visible:
            self.out.produce.append(Produce(self.t.status, self.eid, snapshot_of(s)))
        return self.out

    # ------------------------------------------------------------------ message handlers
    def _dispatch(self, msg: EntityMessage, *, fired: bool) -> None:
        body = msg.body
        if isinstance(body, ev.SignalEntity):
            self._on_signal(msg, body, fired)
        elif isinstance(body, ev.CallEntity):
            self._on_call(msg, body)
        elif isinstance(body, ev.LockEntities):
            self._on_lock(msg, body)
        elif isinstance(body, ev.UnlockEntity):
            self._on_unlock(body)
        else:  # a decodable record of a type we do not route: a bug upstream
            raise TypeError(f"unexpected entity message body {type(body).__name__}")

    def _on_signal(self, msg: EntityMessage, body: ev.SignalEntity, fired: bool) -> None:
        if not fired and body.scheduled_time is not None and to_ms(body.scheduled_time) > self.now_ms:
            self.out.puts[scheduled_key(to_ms(body.scheduled_time), self.eid, msg.id)] = msg
            return
        if self._must_wait(msg, body.parent_instance_id):
            return
        if body.operation == CLEAN_OPERATION and body.parent_instance_id is None:
            self._clean()
            return
        self._run(msg.id, body.operation, body.input, body.parent_instance_id, ev.EntityOperationSignaled(
            event_id=-1, timestamp=self.now, request_id=msg.id, operation=body.operation,
            target_instance_id=self.eid, input=body.input, scheduled_time=body.scheduled_time))

    def _on_call(self, msg: EntityMessage, body: ev.CallEntity) -> None:
        if self._must_wait(msg, body.parent_instance_id):
            return
        result, failure = self._run(body.request_id, body.operation, body.input, body.parent_instance_id,
                                    ev.EntityOperationCalled(
                                        event_id=-1, timestamp=self.now, request_id=body.request_id,
                                        operation=body.operation, target_instance_id=self.eid, input=body.input,
                                        parent_instance_id=body.parent_instance_id))
        self._respond(body.parent_instance_id, ev.EntityResponse(
            execution_id=body.parent_execution_id, request_id=body.request_id, result=result,
            failure_details=failure))

    def _on_lock(self, msg: EntityMessage, body: ev.LockEntities) -> None:
        s = self._state()  # a clean earlier in this batch may have removed the record
        if s.lock_owner is not None:
            if s.lock_owner == body.parent_instance_id and s.critical_section_id == body.critical_section_id:
                return  # this request already holds the lock
            self._enqueue(msg)
            return
        s.lock_owner = body.parent_instance_id
        s.critical_section_id = body.critical_section_id
        self.visible = True
        nxt = body.position + 1
        if nxt < len(body.lock_set):
            target = body.lock_set[nxt]
            self.out.produce.append(Produce(self.t.entity_operations, target, EntityMessage(
                id=f"{body.critical_section_id}/lock/{nxt}", entity_id=target, sent_at=self.now,
                body=ev.LockEntities(critical_section_id=body.critical_section_id, lock_set=list(body.lock_set),
                                     position=nxt, parent_instance_id=body.parent_instance_id,
                                     parent_execution_id=body.parent_execution_id))))
        else:
            self._respond(body.parent_instance_id, ev.EntityResponse(
                execution_id=body.parent_execution_id, request_id=body.critical_section_id, lock_granted=True))

    def _on_unlock(self, body: ev.UnlockEntity) -> None:
        s = self._state()
        if s.lock_owner != body.parent_instance_id:
            # The owner gave up (ended) while its lock request still waits here: drop the request,
            # or it would take the lock later and keep it forever.
            kept = [m for m in s.queued if not (isinstance(m.body, ev.LockEntities)
                                                and m.body.parent_instance_id == body.parent_instance_id)]
            if len(kept) != len(s.queued):
                s.queued = kept
                self.visible = True
            return
        s.lock_owner = None
        s.critical_section_id = None
        self.visible = True
        waiting, s.queued = s.queued, []
        for m in waiting:
            self._dispatch(m, fired=True)

    # ------------------------------------------------------------------ helpers
    def _state(self) -> EntityState:
        if self.s is None:
            self.s = EntityState(entity_id=self.eid,
                                 execution_id=uuid.uuid5(NAMESPACE, f"{self.eid}/{self.now_ms}").hex[:16])
            self._recent = set()
            self.visible = True
        return self.s

    def _must_wait(self, msg: EntityMessage, sender: str | None) -> bool:
        s = self._state()  # a clean earlier in this batch may have removed the record
        if s.lock_owner is not None and sender != s.lock_owner:
            self._enqueue(msg)
            return True
        return False

    def _enqueue(self, msg: EntityMessage) -> None:
        self._state().queued.append(msg)
        self.visible = True

    def _clean(self) -> None:
        """Remove the record if it holds nothing (clean_entity_storage); else nothing happens."""
        s = self._state()
        if is_removable(s):
            self.removed = True
            self.visible = False
            s.recent_ids = []
            self.s = None
            self._recent = set()
        # a later message in this batch starts a new incarnation through _state()

    def _run(self, request_id: str, operation: str, input_json: str | None, sender: str | None,
             called: AnyHistoryEvent) -> tuple[str | None, FailureDetails | None]:
        """Run one operation; apply its effects only if it returned. (result JSON, failure)."""
        s = self._state()
        self.operations += 1
        result: str | None = None
        failure: FailureDetails | None = None
        ctx = EntityContext(self.id, operation, s.state, orchestration_id=sender)
        try:
            fn = self.lookup(self.id.name)
            if fn is None:
                _warn_unhosted(self.id.name)
                raise EntityOperationNotFoundError(
                    f"no entity named {self.id.name!r} is registered on this worker (every worker that runs "
                    f"the entities of a hub must register the same entities: docs/ROUTING.md)")
            value = run_operation(fn, ctx, json.loads(resolve(input_json) or "") if input_json is not None else None)
            # a large result is stored for (and owned by) the caller; a large state, by the entity
            result = externalize(json.dumps(value), sender or self.eid) if value is not None else None
            new_state = externalize(ctx.state_json, self.eid) if ctx.state_changed else None
            # what cannot be written fails this operation (rolled back) rather than the partition
            check_payload_size(f"the result of operation {operation!r} on {self.eid}", result)
            if ctx.state_changed:
                check_payload_size(f"the state of {self.eid} after operation {operation!r}", new_state)
        except Exception as exc:  # noqa: BLE001 - user code: any error fails this operation only
            failure = failure_details_of(exc)
        if failure is None:
            if ctx.state_changed:
                if s.state is not None and s.state != new_state:
                    discard_owned(self.eid, [s.state])  # the replaced state's stored payload, if any
                s.state = new_state
                s.last_modified = self.now
                self.visible = True
            self._send_effects(ctx)
        self._history(called)
        if failure is None:
            self._history(ev.EntityOperationCompleted(event_id=-1, timestamp=self.now, request_id=request_id,
                                                      output=result))
        else:
            log.debug("entity %s operation %s failed: %s", self.eid, operation, failure.message)
            self._history(ev.EntityOperationFailed(event_id=-1, timestamp=self.now, request_id=request_id,
                                                   failure_details=failure))
        return result, failure

    def _send_effects(self, ctx: EntityContext) -> None:
        s = self._state()
        base = f"{self.eid}/{s.execution_id}/{s.history_length}"
        for n, sig in enumerate(ctx.outcome.signals):
            self.out.produce.append(Produce(self.t.entity_operations, sig.entity_id, EntityMessage(
                id=f"{base}/signal/{n}", entity_id=sig.entity_id, sent_at=self.now,
                body=ev.SignalEntity(operation=sig.operation, input=sig.input, scheduled_time=sig.scheduled_time,
                                     parent_instance_id=self.eid))))
        for n, orch in enumerate(ctx.outcome.orchestrations):
            self.out.produce.append(Produce(self.t.orchestrator_events, orch.instance_id, ev.OrchestratorMessage(
                id=str(uuid.uuid5(NAMESPACE, f"{base}/start/{n}")), instance_id=orch.instance_id, sent_at=self.now,
                body=ev.StartOrchestration(name=orch.name, execution_id=uuid.uuid5(NAMESPACE, f"{base}/exec/{n}").hex,
                                           input=orch.input))))

    def _history(self, event: AnyHistoryEvent) -> None:
        s = self._state()
        assert s.execution_id is not None, "_state() names every incarnation"  # nullable only in the schema
        rec = history_record(self.eid, s.execution_id, s.history_length, event)
        s.history_length += 1
        self.out.produce.append(Produce(self.t.history, self.eid, rec))

    def _respond(self, instance_id: str, body: ev.EntityResponse) -> None:
        self.out.produce.append(Produce(self.t.orchestrator_events, instance_id, ev.OrchestratorMessage(
            id=str(uuid.uuid5(NAMESPACE, f"{self.eid}/{body.request_id}/{body.lock_granted}")),
            instance_id=instance_id, sent_at=self.now, body=body)))


_UNHOSTED_WARNED: dict[str, float] = {}


def _warn_unhosted(name: str) -> None:
    """Say (once a minute per name) that operations of an entity nobody registered fail.

    A signal has no caller to tell; without this line its failure would only be in the
    entity's history.
    """
    import time

    now = time.monotonic()
    if now - _UNHOSTED_WARNED.get(name, -60.0) >= 60.0:
        _UNHOSTED_WARNED[name] = now
        log.warning("operations of entity %r fail: no entity of that name is registered on the workers that run "
                    "this hub's entities (they must all register the same entities: docs/ROUTING.md)", name)
