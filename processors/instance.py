"""One orchestration instance's state transitions for one batch: messages in, an Outcome out.

Nothing here touches Kafka or RocksDB. :class:`InstanceStep` receives the instance as loaded
(header, live executor, open task ids), applies the batch's messages in order (dispatch by
message type, one small handler each), runs one executor episode over the resulting new events,
and records everything it wants written in an :class:`Outcome`: store puts, records to produce,
replies. The shell commits the Outcome to the Kafka transaction only if the whole step
succeeded, so a failure in the middle leaves nothing half-applied.

Instance state changes by history events only, through the applier table of
:mod:`.instance_state`: :meth:`InstanceStep._append_history` records an event and applies it in
one go. The step itself keeps only what is not history (message dedup ids, events held before a
scheduled start, the start timer, the custom status an episode reports, purge).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, TypeVar

from durable_kafka._tracing import TRACE_TAG, RecordHeaders
from durable_kafka.errors import InstanceAlreadyExistsError
from durable_kafka.streams import events as ev
from durable_kafka.streams.failures import qualified_name
from durable_kafka.streams.events import (
    AnyHistoryEvent,
    FailureDetails,
    HistoryBatch,
    HistoryEvent,
    HistoryRecord,
    InstanceHeader,
    InstanceStatus,
    OrchestratorMessage,
)
from durable_kafka.streams.payloads import discard_owned
from durable_kafka.streams.status import ACTIVE_STATUSES, OrchestrationStatus
from durable_kafka.versioning import version_failure

from . import store as keys
from .instance_state import InstanceState, apply_event, to_ms
from .rewind import effective_history

log = logging.getLogger(__name__)

RUNNING, PENDING, SUSPENDED = OrchestrationStatus.RUNNING, OrchestrationStatus.PENDING, OrchestrationStatus.SUSPENDED
COMPLETED, FAILED = OrchestrationStatus.COMPLETED, OrchestrationStatus.FAILED
TERMINATED, CONTINUED_AS_NEW = OrchestrationStatus.TERMINATED, OrchestrationStatus.CONTINUED_AS_NEW
ACTIVE = ACTIVE_STATUSES
TERMINAL_ENDS = (COMPLETED, TERMINATED)  # ends a rewind leaves alone (it reports them to a parent)
RECENT_IDS = 256  # redeliveries arrive within a batch or two; completions dedupe by open ids
START_TIMER_ID = -1  # the timer that starts an instance scheduled with start_at
MAX_CONTINUATIONS = 1000
NAMESPACE = uuid.UUID("9e1f6f59-5a0c-4d0b-8f0e-3f2a3d6c1b7a")
#: Events raised to an id with no instance yet are kept (Durable Task semantics) for at most this
#: many per id and this long: an older one is dropped when the instance starts, and past the
#: count a new one is dropped (logged). The orchestrator-events topic keeps records 7 days too.
MAX_WAITING_EVENTS = 1000
WAITING_TTL_MS = 7 * 24 * 3600 * 1000
IF_EXISTS_POLICIES = ("skip", "fail", "replace")


@dataclass(kw_only=True)
class Loaded(InstanceState):
    """An instance as the processor holds it between batches (cached, or rebuilt from the store)."""

    partition: int
    live: Any = None  # executor LiveOrchestration for an active execution, else None


@dataclass
class Produce:
    topic: str
    key: str
    value: Any  # a record dataclass, or None for a tombstone
    headers: RecordHeaders | None = None  # Kafka record headers (trace context)


@dataclass
class Outcome:
    puts: dict[bytes, Any] = field(default_factory=dict)  # store key -> record | None (delete)
    produce: list[Produce] = field(default_factory=list)
    evict: bool = False


def history_record(instance_id: str, execution_id: str, index: int, event: AnyHistoryEvent) -> HistoryRecord:
    return HistoryRecord(
        id=f"{instance_id}/{execution_id}/{index}",
        instance_id=instance_id,
        execution_id=execution_id,
        index=index,
        event=event,
    )


def status_of(h: InstanceHeader) -> InstanceStatus:
    return InstanceStatus(
        instance_id=h.instance_id,
        name=h.name,
        execution_id=h.execution_id,
        runtime_status=h.runtime_status,
        created_at=h.created_at,
        last_updated_at=h.last_updated_at,
        input=h.input,
        output=h.output,
        custom_status=h.custom_status,
        failure_details=h.failure_details,
        parent_instance_id=h.parent_instance_id,
        # the trace context the engine keeps among the tags (durable_kafka._tracing) is not the user's
        tags=dict(h.tags) if TRACE_TAG not in h.tags else {k: v for k, v in h.tags.items() if k != TRACE_TAG},
        history_length=h.history_length,
        version=h.version,
    )


class Topics:
    """The topic names an instance step writes to (resolved once per worker)."""

    def __init__(self, orchestrator_events: str, activity_requests: str, entity_operations: str,
                 history: str, status: str, replies: str, deadletter: str | None = None,
                 activity_topic: Callable[[str], str] | None = None) -> None:
        self.deadletter = deadletter or orchestrator_events.rsplit(".", 1)[0] + ".deadletter"
        self.orchestrator_events = orchestrator_events
        self.activity_requests = activity_requests
        #: the request topic of an activity name (docs/ROUTING.md); default: the one shared topic
        self.activity_topic: Callable[[str], str] = activity_topic or (lambda _name: activity_requests)
        self.entity_operations = entity_operations
        self.history = history
        self.status = status
        self.replies = replies


class InstanceStep:
    """Applies one batch of messages (and due timers) to one instance."""

    #: write one ``HistoryRecord`` per event, the format before D20 (bench/restore.py's baseline
    #: and the mixed-format tests; every reader takes both)
    per_event_history = False

    def __init__(self, *, loaded: Loaded, instance_id: str, now: datetime, topics: Topics,
                 executor: Any, load_history: Callable[[str, str], list[HistoryEvent]],
                 action_to_event: Callable[[Any, datetime, str | None], AnyHistoryEvent],
                 history_keys: Callable[[str, str], list[bytes]] | None = None) -> None:
        self.s = loaded
        self.iid = instance_id
        self.now = now
        self.t = topics
        self.executor = executor
        self.load_history = load_history
        #: the store keys an execution's history occupies (one per batch), for its tombstones;
        #: None: tombstone every index (a superset, right for per-event and batched history alike)
        self.history_keys = history_keys
        self.action_to_event = action_to_event
        self.out = Outcome()
        self._batch: HistoryBatch | None = None  # this step's history record (D20: one per step)
        self.new_events: list[AnyHistoryEvent] = []
        # completions staged in this step (applied only when recorded): a redelivery of the
        # same result, timer or response later in the batch must not be staged twice
        self._staged: set[tuple[str, int | str]] = set()
        if loaded.header is not None and loaded.header.parked:  # parked completions count as staged
            self._staged.update(k for k in map(_completion_key, (r.event for r in loaded.header.parked)) if k)
        self.dirty = False  # header changed, status snapshot due
        self._rewound = False  # a rewind in this step: run an episode even with no new event

    # ------------------------------------------------------------------ entry points
    def apply_messages(self, msgs: list[OrchestratorMessage]) -> None:
        for m in msgs:
            h = self.s.header
            # completions (results, entity responses) dedupe by the open work they complete, not
            # by message id: a result that came before its task was open (a step re-run after an
            # abort, with the result of its first, early-dispatched request in the same batch) is
            # dropped, and the re-sent request's result carries the same id; it must still count
            completion = isinstance(m.body, _COMPLETIONS)
            if h is not None and not completion and m.id in h.recent_ids:
                log.debug("dropping duplicate message %s for %s", m.id, self.iid)
                continue
            handler = _HANDLERS.get(type(m.body))
            if handler is None:  # a decodable record of a type we do not route: a bug upstream
                raise TypeError(f"unexpected message body {type(m.body).__name__}")
            handler(self, m)
            h = self.s.header
            if h is not None and not completion:
                h.recent_ids.append(m.id)
                if len(h.recent_ids) > RECENT_IDS:
                    del h.recent_ids[: len(h.recent_ids) - RECENT_IDS]
                self.dirty = True

    def apply_timer(self, timer: ev.TimerRecord) -> None:
        h = self.s.header
        if h is None or h.execution_id != timer.execution_id or h.runtime_status not in ACTIVE:
            return
        if timer.timer_id == START_TIMER_ID:
            self.s.open_timers.pop(START_TIMER_ID, None)
            started = [r.event for r in h.pending]
            h.pending = []
            self.new_events.extend(started)
            self.dirty = True
            return
        if not self._stage_completion("timer", timer.timer_id, timer.timer_id in self.s.open_timers):
            return
        self.new_events.append(ev.TimerFired(event_id=-1, timestamp=self.now, timer_id=timer.timer_id, fire_at=timer.fire_at))

    def finish(self) -> Outcome:
        """Run the episode (if there is anything to run) and write header + status."""
        h = self.s.header
        mismatch = None
        if h is not None and h.runtime_status in ACTIVE:
            mismatch = self._version_rejected(h)
            if h.parked and mismatch is None:
                self._unpark(h)
        if h is not None and (self.new_events or self._rewound):
            if h.runtime_status == PENDING and h.pending:
                # not started yet (start_at in the future): keep events until the start timer
                h.pending.extend(history_record(self.iid, h.execution_id, -1, e) for e in self.new_events)
                self.new_events = []
                self.dirty = True
            elif mismatch is not None:
                if self.new_events:
                    self._park(h, mismatch)
            else:
                self._run_episodes()
        h = self.s.header
        if h is not None and self.dirty:
            h.last_updated_at = self.now
            self.out.puts[keys.instance_key(self.iid)] = h
            self.out.produce.append(Produce(self.t.status, self.iid, status_of(h)))
        return self.out

    # ------------------------------------------------------------------ message handlers
    def _on_start(self, m: OrchestratorMessage) -> None:
        body = _body(m, ev.StartOrchestration)
        h = self.s.header
        policy = body.if_exists
        if h is not None and policy == "skip":  # a trigger's start: the id exists, the record is handled
            log.debug("start of %s skipped: the instance exists (%s)", self.iid, h.runtime_status.name)
            return
        if h is not None and policy == "fail":
            self._dead_letter_start(m, f"instance {self.iid!r} already exists ({h.runtime_status.name.lower()})")
            return
        if h is not None and policy == "replace" and h.runtime_status in ACTIVE:
            self._end_for_replace(h)
            h = self.s.header
        if h is not None and h.runtime_status in ACTIVE:
            reason = f"an instance with id {self.iid!r} is already {h.runtime_status.name.lower()}"
            self._reply(m, False, "InstanceAlreadyExistsError", reason)
            if body.parent_instance_id is not None and body.parent_task_id is not None:
                self._send(body.parent_instance_id, ev.SubOrchestrationResult(
                    execution_id=body.parent_execution_id or "", task_id=body.parent_task_id,
                    failure_details=FailureDetails(reason, qualified_name(InstanceAlreadyExistsError))))
            return
        if h is not None:
            self._delete_execution(h)
        self._new_execution(body, created=True)
        self._reply(m, True)

    def _new_execution(self, body: ev.StartOrchestration, *, created: bool) -> None:
        old = self.s.header
        if old is not None and old.parked:  # a replaced execution's parked work goes with it
            self.out.puts[keys.parked_key(self.iid)] = None
        h = InstanceHeader(
            instance_id=self.iid,
            name=body.name,
            execution_id=body.execution_id,
            runtime_status=PENDING,
            created_at=self.now if created or old is None else old.created_at,
            last_updated_at=self.now,
            input=body.input,
            parent_instance_id=body.parent_instance_id,
            parent_execution_id=body.parent_execution_id,
            parent_task_id=body.parent_task_id,
            tags=dict(body.tags),
            recent_ids=list(old.recent_ids) if old is not None else [],
            version=body.version,
        )
        self.s.header = h
        self.s.live = None
        self.s.open_tasks, self.s.open_timers, self.s.open_requests = set(), {}, set()
        self.new_events = []
        started = ev.ExecutionStarted(
            event_id=-1, timestamp=self.now, name=body.name, execution_id=body.execution_id, input=body.input,
            parent_instance_id=body.parent_instance_id, parent_execution_id=body.parent_execution_id,
            parent_task_id=body.parent_task_id, scheduled_start_at=body.scheduled_start_at, tags=dict(body.tags),
            version=body.version)
        carried = [replace(e, timestamp=self.now) for e in body.carried_events] + self._take_waiting()
        # Compared as datetimes: to_ms rounds up, so comparing milliseconds started an instance
        # whose start came in up to 1 ms before its scheduled time at once, i.e. early.
        if body.scheduled_start_at is not None and body.scheduled_start_at > self.now:
            h.pending = [history_record(self.iid, h.execution_id, -1, e) for e in [started, *carried]]
            due = to_ms(body.scheduled_start_at)
            self.s.open_timers[START_TIMER_ID] = due
            self.out.puts[keys.timer_key(due, self.iid, START_TIMER_ID)] = ev.TimerRecord(
                instance_id=self.iid, execution_id=h.execution_id, timer_id=START_TIMER_ID, fire_at=body.scheduled_start_at)
        else:
            self.new_events = [started, *carried]
        self.dirty = True

    def _on_raise(self, m: OrchestratorMessage) -> None:
        body = _body(m, ev.RaiseEvent)
        if self.s.header is None:
            self._keep_waiting(m)
            return
        if not self._active(f"event {body.name!r}"):
            return
        self.new_events.append(ev.EventRaised(event_id=-1, timestamp=self.now, name=body.name, input=body.input))

    def _on_terminate(self, m: OrchestratorMessage) -> None:
        body = _body(m, ev.TerminateOrchestration)
        if not self._active("terminate"):
            return
        h = self._header()
        if h.runtime_status == PENDING and h.pending:  # never started: run start + terminate now
            self.new_events = [r.event for r in h.pending] + self.new_events
            h.pending = []
            self._drop_timer(START_TIMER_ID)
        self.new_events.append(ev.ExecutionTerminated(event_id=-1, timestamp=self.now, input=body.output,
                                                      recurse=body.recursive))
        if body.recursive:
            for child in h.children:
                self._send(child, ev.TerminateOrchestration(output=body.output, recursive=True))

    def _on_suspend(self, m: OrchestratorMessage) -> None:
        body = _body(m, ev.SuspendOrchestration)
        if self._active("suspend"):
            self.new_events.append(ev.ExecutionSuspended(event_id=-1, timestamp=self.now, input=body.reason))

    def _on_resume(self, m: OrchestratorMessage) -> None:
        body = _body(m, ev.ResumeOrchestration)
        if self._active("resume"):
            self.new_events.append(ev.ExecutionResumed(event_id=-1, timestamp=self.now, input=body.reason))

    def _on_purge(self, m: OrchestratorMessage) -> None:
        body = _body(m, ev.PurgeOrchestration)
        h = self.s.header
        if h is None:
            self._reply(m, True, message='{"deleted": 0}')
            return
        if h.runtime_status in ACTIVE:
            self._reply(m, False, "InstanceNotTerminalError",
                        f"instance {self.iid!r} is {h.runtime_status.name.lower()}; terminate it before purging")
            return
        if body.recursive:
            for child in h.children:
                self._send(child, ev.PurgeOrchestration(recursive=True))
        # the large payloads this instance owns go with it (tombstones in this transaction)
        discard_owned(self.iid, [h, *(self.load_history(self.iid, h.execution_id) if h.history_length else [])])
        self._delete_execution(h)
        self.out.puts[keys.instance_key(self.iid)] = None
        self.out.produce.append(Produce(self.t.status, self.iid, None))
        self.s.header = None
        self.out.evict = True
        self.dirty = False
        self._reply(m, True, message='{"deleted": 1}')

    def _on_rewind(self, m: OrchestratorMessage) -> None:
        from .rewind_step import rewind  # the rewind step lives apart (processors/rewind_step.py)

        rewind(self, m)

    def _on_activity_result(self, m: OrchestratorMessage) -> None:
        self._on_task_result(_body(m, ev.ActivityResult), ev.TaskCompleted, ev.TaskFailed)

    def _on_sub_result(self, m: OrchestratorMessage) -> None:
        self._on_task_result(_body(m, ev.SubOrchestrationResult), ev.SubOrchestrationInstanceCompleted,
                             ev.SubOrchestrationInstanceFailed)

    def _on_task_result(self, body: ev.ActivityResult | ev.SubOrchestrationResult, ok: type, failed: type) -> None:
        h = self.s.header
        if h is None or h.execution_id != body.execution_id or h.runtime_status not in ACTIVE:
            return  # late result of an old execution, or of a terminated one: ignored
        if not self._stage_completion("task", body.task_id, body.task_id in self.s.open_tasks):
            return  # a redelivered result: the task already completed
        if body.failure_details is not None:
            self.new_events.append(failed(event_id=-1, timestamp=self.now, task_scheduled_id=body.task_id,
                                          failure_details=body.failure_details))
        else:
            self.new_events.append(ok(event_id=-1, timestamp=self.now, task_scheduled_id=body.task_id, result=body.result))

    def _on_entity_response(self, m: OrchestratorMessage) -> None:
        body = _body(m, ev.EntityResponse)
        h = self.s.header
        if h is None or h.execution_id != body.execution_id or h.runtime_status not in ACTIVE:
            return
        if not self._stage_completion("request", body.request_id, body.request_id in self.s.open_requests):
            return
        if body.lock_granted:
            self.new_events.append(ev.EntityLockGranted(event_id=-1, timestamp=self.now, critical_section_id=body.request_id))
        elif body.failure_details is not None:
            self.new_events.append(ev.EntityOperationFailed(event_id=-1, timestamp=self.now, request_id=body.request_id,
                                                            failure_details=body.failure_details))
        else:
            self.new_events.append(ev.EntityOperationCompleted(event_id=-1, timestamp=self.now, request_id=body.request_id,
                                                               output=body.result))

    # ------------------------------------------------------------------ the episode
    def _run_episodes(self) -> None:
        for _ in range(MAX_CONTINUATIONS):
            h = self._header()
            if self.s.live is None:
                self.s.live = self._rebuild(h)
            episode = [ev.OrchestratorStarted(event_id=-1, timestamp=self.now), *self.new_events]
            self.new_events = []
            result = self.s.live.step(episode)
            done = next((a for a in result.actions if _is_complete(a)), None)
            recorded: list[AnyHistoryEvent] = list(episode)
            if done is None or done.status != TERMINATED:
                for action in result.actions:
                    if action is done:
                        continue
                    self._dispatch_action(action)
                    recorded.append(self.action_to_event(action, self.now, self.iid))
            recorded.append(ev.OrchestratorCompleted(event_id=-1, timestamp=self.now))
            h.custom_status = result.custom_status
            if done is None:
                self._append_history(h, recorded)
                self.dirty = True
                return
            if done.status != TERMINATED:  # ExecutionTerminated is already among the new events
                recorded.append(self.action_to_event(done, self.now, self.iid))
            self._append_history(h, recorded)
            if done.status != CONTINUED_AS_NEW:
                self._complete(h, done)
                return
            self._continue_as_new(h, done)
        self._fail(FailureDetails(f"continue_as_new ran {MAX_CONTINUATIONS} times in one step without awaiting anything",
                                  "ContinueAsNewLoopError"))

    # ------------------------------------------------------------------ versioning (REJECT)
    def _version_rejected(self, h: InstanceHeader) -> FailureDetails | None:
        """Why this worker's VersionFailureStrategy.REJECT keeps the instance from running here."""
        registry = getattr(self.executor, "registry", None)
        accepts = getattr(registry, "accepts", None)
        if accepts is not None and not accepts(h.name, h.version):  # durabletask: never dispatched, stays as it is
            return FailureDetails(f"orchestrator {h.name!r} (version {h.version!r}) is outside this worker's "
                                  "work-item filters (Worker.use_work_item_filters)", "WorkItemFilterMismatch")
        options = getattr(registry, "versioning", None)
        if options is None or not options.rejects:
            return None  # FAIL is the executor's job: it ends the instance at its ExecutionStarted
        return version_failure(options, h.version)

    def _park(self, h: InstanceHeader, why: FailureDetails) -> None:
        """Keep the new events in the instance's state (committed with the offsets, so nothing is
        skipped or lost) until a worker that accepts its version owns the partition."""
        if not h.parked:
            log.warning("instance %s (version %r) parked: %s", self.iid, h.version, why.message)
        h.parked.extend(history_record(self.iid, h.execution_id, -1, e) for e in self.new_events)
        self.new_events = []
        self.out.puts[keys.parked_key(self.iid)] = ev.TimerRecord(
            instance_id=self.iid, execution_id=h.execution_id, timer_id=START_TIMER_ID, fire_at=self.now)
        self.dirty = True

    def _unpark(self, h: InstanceHeader) -> None:
        """This worker accepts the version: the parked events run first, in their order."""
        log.info("instance %s (version %r): running %d parked events", self.iid, h.version, len(h.parked))
        self.new_events = [r.event for r in h.parked] + self.new_events
        h.parked = []
        self.out.puts[keys.parked_key(self.iid)] = None
        self.dirty = True

    def _rebuild(self, h: InstanceHeader) -> Any:
        live = self.executor.start(self.iid)
        history = self.load_history(self.iid, h.execution_id) if h.history_length else []
        if history:
            live.apply(effective_history(history), replaying=True)
        return live

    def _dispatch_action(self, action: Any) -> None:
        handler = _ACTIONS.get(type(action).__name__)
        if handler is not None:
            handler(self, action)

    def _append_history(self, h: InstanceHeader, events_: list[AnyHistoryEvent]) -> None:
        """Record ``events_`` and apply each to the instance state.

        Everything a step records for one execution goes into one :class:`HistoryBatch`: one
        record on the history topic and one in the changelog (under the key of its first index)
        per step, not one per event (docs/DECISIONS.md D20). The batch is a value of the outcome
        until the shell encodes it, so later appends in the same step extend it in place.
        """
        if not events_:
            return
        if self.per_event_history:
            for e in events_:
                rec = history_record(self.iid, h.execution_id, h.history_length, e)
                h.history_length += 1
                self.out.puts[keys.history_key(self.iid, h.execution_id, rec.index)] = rec
                self.out.produce.append(Produce(self.t.history, self.iid, rec))
                apply_event(self.s, e)
            return
        batch = self._batch
        if batch is None or batch.execution_id != h.execution_id or batch.index + len(batch.events) != h.history_length:
            batch = self._batch = HistoryBatch(id="", instance_id=self.iid, execution_id=h.execution_id,
                                               index=h.history_length, events=[])
            self.out.puts[keys.history_key(self.iid, h.execution_id, batch.index)] = batch
            self.out.produce.append(Produce(self.t.history, self.iid, batch))
        for e in events_:
            batch.events.append(e)
            h.history_length += 1
            apply_event(self.s, e)
        batch.id = ev.batch_id(self.iid, h.execution_id, batch.index, len(batch.events))

    def _fail(self, details: FailureDetails) -> None:
        """End the active execution FAILED with ``details`` (recorded, so history folds to it)."""
        h = self._header()
        self._append_history(h, [ev.ExecutionCompleted(event_id=-1, timestamp=self.now, runtime_status=FAILED,
                                                        failure_details=details)])
        self._complete(h, _failure_action(details))

    def _complete(self, h: InstanceHeader, done: Any) -> None:
        """The execution's end is recorded: cancel its open work, release locks, tell the parent."""
        h.pending = []
        self._drop_open_timers()
        for entity_id in self.s.locks:  # a lock holder that ends releases its locks
            self._send_entity(entity_id, ev.UnlockEntity(critical_section_id=f"{self.iid}/{h.execution_id}",
                                                        parent_instance_id=self.iid))
        self.s.live = None
        self.out.evict = True
        self.dirty = True
        if h.parent_instance_id is not None and h.parent_task_id is not None:
            failure = None
            if done.status == FAILED:
                failure = h.failure_details
            elif done.status == TERMINATED:
                failure = FailureDetails(f"sub-orchestration {self.iid!r} was terminated", "OrchestrationTerminatedError")
            self._send(h.parent_instance_id, ev.SubOrchestrationResult(
                execution_id=h.parent_execution_id or "", task_id=h.parent_task_id,
                result=h.output if failure is None else None, failure_details=failure))

    def _continue_as_new(self, h: InstanceHeader, done: Any) -> None:
        self._delete_execution(h)
        self._drop_open_timers()
        new_exec = uuid.uuid5(NAMESPACE, f"{self.iid}/{h.execution_id}/continue").hex
        carried = list(getattr(done, "carryover_events", None) or [])
        body = ev.StartOrchestration(
            name=h.name, execution_id=new_exec, input=done.new_input, tags=dict(h.tags),
            parent_instance_id=h.parent_instance_id, parent_execution_id=h.parent_execution_id,
            parent_task_id=h.parent_task_id, carried_events=carried, version=h.version)
        children = list(h.children)
        self._new_execution(body, created=False)
        self._header().children = children

    def _delete_execution(self, h: InstanceHeader) -> None:
        """Tombstone an execution's history keys: the stored batches' and this step's own."""
        prefix = keys.history_prefix(self.iid, h.execution_id)
        if self.history_keys is None:
            doomed = [keys.history_key(self.iid, h.execution_id, i) for i in range(h.history_length)]
        else:
            doomed = self.history_keys(self.iid, h.execution_id) if h.history_length else []
            doomed += [k for k, v in self.out.puts.items() if v is not None and k.startswith(prefix)]
        for k in doomed:
            self.out.puts[k] = None
        h.history_length = 0

    # ------------------------------------------------------------------ actions -> records
    # Each handler writes what the action sends or indexes; the state change comes from the
    # action's history event when it is recorded (see _append_history).
    def _act_schedule_task(self, a: Any) -> None:
        h = self._header()
        self.out.produce.append(Produce(self.t.activity_topic(a.name), self.iid, ev.ActivityRequest(
            id=f"{self.iid}/{h.execution_id}/{a.id}", instance_id=self.iid, execution_id=h.execution_id,
            task_id=a.id, name=a.name, input=a.input, tags=dict(getattr(a, "tags", None) or {}))))

    def _act_create_timer(self, a: Any) -> None:
        h = self._header()
        due = to_ms(a.fire_at)
        self.out.puts[keys.timer_key(due, self.iid, a.id)] = ev.TimerRecord(
            instance_id=self.iid, execution_id=h.execution_id, timer_id=a.id, fire_at=a.fire_at)

    def _act_sub_orchestration(self, a: Any) -> None:
        h = self._header()
        exec_id = uuid.uuid5(NAMESPACE, f"{self.iid}/{h.execution_id}/{a.id}").hex
        self._send(a.instance_id, ev.StartOrchestration(
            name=a.name, execution_id=exec_id, input=a.input, parent_instance_id=self.iid,
            parent_execution_id=h.execution_id, parent_task_id=a.id, version=getattr(a, "version", None)))

    def _act_send_event(self, a: Any) -> None:
        if a.instance_id == self.iid:
            log.info("send_event from %s to itself dropped", self.iid)
            return
        self._send(a.instance_id, ev.RaiseEvent(name=a.name, input=a.data))

    def _act_signal_entity(self, a: Any) -> None:
        self._send_entity(a.entity_id, ev.SignalEntity(operation=a.operation, input=a.input,
                                                       scheduled_time=a.scheduled_time,
                                                       parent_instance_id=self.iid), msg_id=a.request_id)

    def _act_call_entity(self, a: Any) -> None:
        h = self._header()
        self._send_entity(a.entity_id, ev.CallEntity(operation=a.operation, request_id=a.request_id, input=a.input,
                                                     parent_instance_id=self.iid, parent_execution_id=h.execution_id),
                          msg_id=a.request_id)

    def _act_lock_entities(self, a: Any) -> None:
        h = self._header()
        lock_set = list(a.lock_set)
        self._send_entity(lock_set[0], ev.LockEntities(critical_section_id=a.critical_section_id, lock_set=lock_set,
                                                       position=0, parent_instance_id=self.iid,
                                                       parent_execution_id=h.execution_id),
                          msg_id=f"{a.critical_section_id}/lock")

    def _act_unlock_entity(self, a: Any) -> None:
        self._send_entity(a.entity_id, ev.UnlockEntity(critical_section_id=a.critical_section_id,
                                                       parent_instance_id=self.iid),
                          msg_id=f"{a.critical_section_id}/unlock/{a.entity_id}")

    # ------------------------------------------------------------------ trigger starts, early events
    def _dead_letter_start(self, m: OrchestratorMessage, reason: str) -> None:
        """reuse="fail": the start goes to the dead-letter topic with its trigger's coordinates."""
        from durable_kafka.streams.deadletter import build_dead_letter

        route, topic, partition, offset = _parse_source(_body(m, ev.StartOrchestration).source)
        letter = build_dead_letter(topic=topic, partition=partition, offset=offset, key=self.iid.encode(),
                                   value=None, reason=f"route {route!r}: {reason} (reuse='fail')",
                                   error_type="InstanceExistsError", instance_id=self.iid,
                                   letter_id=f"{topic}/{partition}/{offset}/{route}")
        self.out.produce.append(Produce(self.t.deadletter, self.iid, letter))

    def _end_for_replace(self, h: InstanceHeader) -> None:
        """reuse="replace" met an active execution: terminate it now (recorded, locks released)."""
        if h.runtime_status == PENDING and h.pending:
            self.new_events = [r.event for r in h.pending] + self.new_events
            h.pending = []
            self._drop_timer(START_TIMER_ID)
        self.new_events.append(ev.ExecutionTerminated(event_id=-1, timestamp=self.now,
                                                      input='"replaced by a new start"', recurse=False))
        self._run_episodes()

    def _keep_waiting(self, m: OrchestratorMessage) -> None:
        """An event for an id with no instance yet: keep it (once per message id) until it starts."""
        body = _body(m, ev.RaiseEvent)
        waiting = self.s.waiting
        if any(w.id == m.id for w in waiting):
            return
        if len(waiting) >= MAX_WAITING_EVENTS:
            log.warning("event %r for %s dropped: %d events already wait for that instance to start",
                        body.name, self.iid, len(waiting))
            return
        rec = HistoryRecord(id=m.id, instance_id=self.iid, execution_id="", index=len(waiting),
                            event=ev.EventRaised(event_id=-1, timestamp=self.now, name=body.name, input=body.input))
        waiting.append(rec)
        self.out.puts[keys.waiting_key(self.iid, m.id)] = rec

    def _take_waiting(self) -> list[Any]:
        """The waiting events still young enough, in arrival order; their store entries go."""
        waiting, self.s.waiting = sorted(self.s.waiting, key=lambda w: w.index), []
        oldest = to_ms(self.now) - WAITING_TTL_MS
        for w in waiting:
            self.out.puts[keys.waiting_key(self.iid, w.id)] = None
        return [replace(w.event, timestamp=self.now) for w in waiting if to_ms(w.event.timestamp) >= oldest]

    # ------------------------------------------------------------------ helpers
    def _header(self) -> InstanceHeader:
        """The header of the instance's current execution, for code that runs only while one exists
        (an episode, its actions, an end being recorded)."""
        h = self.s.header
        assert h is not None, f"{self.iid}: no execution"
        return h

    def _active(self, what: str) -> bool:
        h = self.s.header
        if h is None or h.runtime_status not in ACTIVE:
            log.info("%s for %s dropped: instance is %s", what, self.iid, "missing" if h is None else h.runtime_status)
            return False
        return True

    def _send(self, instance_id: str, body: Any) -> None:
        self.out.produce.append(Produce(self.t.orchestrator_events, instance_id, OrchestratorMessage(
            id=str(uuid.uuid4()), instance_id=instance_id, sent_at=self.now, body=body)))

    def _send_entity(self, entity_id: str, body: Any, msg_id: str | None = None) -> None:
        self.out.produce.append(Produce(self.t.entity_operations, entity_id, ev.EntityMessage(
            id=msg_id or str(uuid.uuid4()), entity_id=entity_id, sent_at=self.now, body=body)))

    def _reply(self, m: OrchestratorMessage, accepted: bool, error_type: str | None = None,
               message: str | None = None) -> None:
        if m.reply_to:
            self.out.produce.append(Produce(self.t.replies, m.reply_to, ev.ClientReply(
                request_id=m.id, instance_id=self.iid, accepted=accepted, error_type=error_type, message=message)))

    def _stage_completion(self, kind: str, ident: int | str, is_open: bool) -> bool:
        """True (and remembered) for the first completion of open work in this step."""
        if not is_open or (kind, ident) in self._staged:
            return False
        self._staged.add((kind, ident))
        return True

    def _drop_timer(self, timer_id: int, due: int | None = None) -> None:
        due = self.s.open_timers.pop(timer_id, due)
        if due is not None:
            self.out.puts[keys.timer_key(due, self.iid, timer_id)] = None

    def _drop_open_timers(self) -> None:
        """Delete the index entries of every timer still open (the execution has ended)."""
        for timer_id, due in self.s.open_timers.items():
            self.out.puts[keys.timer_key(due, self.iid, timer_id)] = None


_B = TypeVar("_B")


def _body(m: OrchestratorMessage, kind: type[_B]) -> _B:
    """``m``'s body as the type its handler was chosen for (``_HANDLERS`` dispatches on it)."""
    body = m.body
    assert isinstance(body, kind), f"{type(body).__name__} is not {kind.__name__}"
    return body


def _completion_key(e: AnyHistoryEvent) -> tuple[str, int | str] | None:
    """The key ``_stage_completion`` dedupes a completion event by (None: not a completion)."""
    if isinstance(e, (ev.TaskCompleted, ev.TaskFailed, ev.SubOrchestrationInstanceCompleted,
                      ev.SubOrchestrationInstanceFailed)):
        return ("task", e.task_scheduled_id)
    if isinstance(e, ev.TimerFired):
        return ("timer", e.timer_id)
    if isinstance(e, (ev.EntityOperationCompleted, ev.EntityOperationFailed)):
        return ("request", e.request_id)
    if isinstance(e, ev.EntityLockGranted):
        return ("request", e.critical_section_id)
    return None


def _parse_source(source: str | None) -> tuple[str, str, int, int]:
    """``route|topic|partition|offset`` of a trigger start (unknown parts: '?' and -1)."""
    parts = (source or "").rsplit("|", 3)
    if len(parts) != 4:
        return "?", "?", -1, -1
    try:
        return parts[0], parts[1], int(parts[2]), int(parts[3])
    except ValueError:
        return parts[0], parts[1], -1, -1


@dataclass
class _Failure:
    status: OrchestrationStatus
    result: str | None
    failure_details: FailureDetails


def _failure_action(details: FailureDetails) -> _Failure:
    return _Failure(FAILED, None, details)


def _is_complete(action: Any) -> bool:
    return type(action).__name__ == "CompleteOrchestration"


def fail_instance(step: InstanceStep, details: FailureDetails) -> Outcome:
    """End an active instance FAILED with ``details`` (used for poison input)."""
    h = step.s.header
    if h is None or h.runtime_status not in ACTIVE:
        return step.out
    step._fail(details)
    return step.finish()


_HANDLERS: dict[type, Callable[[InstanceStep, OrchestratorMessage], None]] = {
    ev.StartOrchestration: InstanceStep._on_start,
    ev.RaiseEvent: InstanceStep._on_raise,
    ev.TerminateOrchestration: InstanceStep._on_terminate,
    ev.SuspendOrchestration: InstanceStep._on_suspend,
    ev.ResumeOrchestration: InstanceStep._on_resume,
    ev.PurgeOrchestration: InstanceStep._on_purge,
    ev.ActivityResult: InstanceStep._on_activity_result,
    ev.SubOrchestrationResult: InstanceStep._on_sub_result,
    ev.EntityResponse: InstanceStep._on_entity_response,
    ev.RewindOrchestration: InstanceStep._on_rewind,
}

#: message bodies that complete open work: deduplicated by that work's id, never by message id
_COMPLETIONS = (ev.ActivityResult, ev.SubOrchestrationResult, ev.EntityResponse)

_ACTIONS: dict[str, Callable[[InstanceStep, Any], None]] = {
    "ScheduleTask": InstanceStep._act_schedule_task,
    "CreateTimer": InstanceStep._act_create_timer,
    "CreateSubOrchestration": InstanceStep._act_sub_orchestration,
    "SendEvent": InstanceStep._act_send_event,
    "SignalEntityAction": InstanceStep._act_signal_entity,
    "CallEntityAction": InstanceStep._act_call_entity,
    "LockEntitiesAction": InstanceStep._act_lock_entities,
    "UnlockEntityAction": InstanceStep._act_unlock_entity,
}
