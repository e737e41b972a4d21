"""The rewind step: how an :class:`~.instance.InstanceStep` rewinds a FAILED instance.

The rules (which failures a rewind takes back, what the executor replays) are the pure
functions of :mod:`.rewind`; this module applies them to one instance in one step: it records
the ``ExecutionRewound`` event (its applier changes the state), rebuilds the live orchestration
from the effective history, and schedules the reopened work again. docs/REWIND.md.
"""

from __future__ import annotations

import logging

from durable_kafka.streams import events as ev
from durable_kafka.streams.events import FailureDetails, HistoryEvent, InstanceHeader, OrchestratorMessage

from . import store as keys
from .instance import FAILED, TERMINAL_ENDS, TERMINATED, InstanceStep, Produce
from .instance_state import recover_open_work, to_ms
from .rewind import effective_history, failed_task_ids

log = logging.getLogger(__name__)

__all__ = ["report_end_to_parent", "rewind"]


def rewind(step: InstanceStep, m: OrchestratorMessage) -> None:
    """Rewind a FAILED instance (processors/rewind.py says what that means for history)."""
    body = m.body
    assert isinstance(body, ev.RewindOrchestration)
    h = step.s.header
    if h is None:
        step._reply(m, False, "InstanceNotFoundError", f"instance {step.iid!r} does not exist")
        return
    if h.runtime_status != FAILED:
        if m.reply_to:
            step._reply(m, False, "InstanceNotFailedError",
                        f"instance {step.iid!r} is {h.runtime_status.name.lower()}; only a failed instance "
                        f"can be rewound")
        elif h.runtime_status in TERMINAL_ENDS:  # a parent rewinding: tell it again how this one ended
            report_end_to_parent(step, h)
        return
    mismatch = step._version_rejected(h)
    if mismatch is not None:  # rewinding replays the code: not with code of another version
        log.warning("rewind of %s refused here: %s", step.iid, mismatch.message)
        step._reply(m, False, mismatch.error_type, f"instance {step.iid!r} cannot be rewound by the worker that owns "
                    f"its partition now: {mismatch.message} Rewind it once a worker that runs its version does.")
        return
    history = step.load_history(step.iid, h.execution_id)
    effective = effective_history(history)
    rewound = ev.ExecutionRewound(event_id=-1, timestamp=step.now, reason=body.reason,
                                  reopened_task_ids=failed_task_ids(step.executor, step.iid, effective))
    folded = recover_open_work(step.iid, history)  # the failed execution's open work
    step.s.open_tasks, step.s.open_timers = folded.open_tasks, folded.open_timers
    step.s.open_requests, step.s.locks = folded.open_requests, folded.locks
    step._append_history(h, [rewound])  # applier: RUNNING, no failure, failed tasks open again
    step.s.live = step.executor.start(step.iid)
    step.s.live.apply(effective_history([*history, rewound]), replaying=True)
    _schedule_again(step, h, history, body.reason, sum(isinstance(e, ev.ExecutionRewound) for e in history) + 1)
    step._rewound = step.dirty = True
    log.info("instance %s rewound (%s): tasks %s scheduled again", step.iid, body.reason,
             sorted(rewound.reopened_task_ids))
    step._reply(m, True)

def _schedule_again(step: InstanceStep, h: InstanceHeader, history: list[HistoryEvent], reason: str | None, n: int) -> None:
    """After a rewind: every open task runs again, open timers are indexed again (the failure
    dropped them), and each open sub-orchestration is asked to rewind too (recursively)."""
    for e in history:
        if isinstance(e, ev.TaskScheduled) and e.event_id in step.s.open_tasks:
            # a new request id: the first run's result id would be dropped as a duplicate
            step.out.produce.append(Produce(step.t.activity_requests, step.iid, ev.ActivityRequest(
                id=f"{step.iid}/{h.execution_id}/{e.event_id}/rewind{n}", instance_id=step.iid,
                execution_id=h.execution_id, task_id=e.event_id, name=e.name, input=e.input, tags=dict(e.tags))))
        elif isinstance(e, ev.SubOrchestrationInstanceCreated) and e.event_id in step.s.open_tasks:
            step._send(e.instance_id, ev.RewindOrchestration(reason=reason))
        elif isinstance(e, ev.TimerCreated) and e.event_id in step.s.open_timers:
            step.out.puts[keys.timer_key(to_ms(e.fire_at), step.iid, e.event_id)] = ev.TimerRecord(
                instance_id=step.iid, execution_id=h.execution_id, timer_id=e.event_id, fire_at=e.fire_at)

def report_end_to_parent(step: InstanceStep, h: InstanceHeader) -> None:
    """Send the parent this ended child's result again (a rewound parent waits for it)."""
    if h.parent_instance_id is None or h.parent_task_id is None:
        return
    failure = h.failure_details if h.runtime_status == FAILED else None
    if h.runtime_status == TERMINATED:
        failure = FailureDetails(f"sub-orchestration {step.iid!r} was terminated", "OrchestrationTerminatedError")
    step._send(h.parent_instance_id, ev.SubOrchestrationResult(
        execution_id=h.parent_execution_id or "", task_id=h.parent_task_id,
        result=h.output if failure is None else None, failure_details=failure))
