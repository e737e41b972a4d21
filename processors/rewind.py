"""Rewind of a FAILED instance (``Client.rewind_orchestration``): the pure parts.

Durable Task's semantics: the instance resumes as if its failed activities and
sub-orchestrations had not failed yet. Their failure results leave the *effective* history, the
tasks are scheduled again, the instance is RUNNING again, and the rewind is recorded as an
``ExecutionRewound`` history event.

History stays append-only (it is a Kafka log and the audit folds it): nothing is deleted.
``ExecutionRewound`` names the task ids it reopened, and :func:`effective_history` is the one
rule that turns the recorded history into what the executor replays: before each
``ExecutionRewound``, the failures of its reopened tasks and the ``ExecutionCompleted`` are left
out. Everything else (the tasks' scheduling events, retries already made, timers, events) stays,
so replay makes the same calls at the same sequence numbers and the reopened tasks are simply
still pending. State follows the applier table (:mod:`.instance_state`): ``ExecutionRewound``
sets RUNNING, clears the failure and re-opens the tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from durable_kafka.streams import events as ev
from durable_kafka.streams.events import HistoryEvent

__all__ = ["FAILURE_EVENTS", "effective_history", "failed_task_ids"]

#: the completion events a rewind takes back
FAILURE_EVENTS = (ev.TaskFailed, ev.SubOrchestrationInstanceFailed)


def effective_history(events: Sequence[HistoryEvent]) -> list[HistoryEvent]:
    """``events`` as the executor replays them: every rewind applied, its marker left out."""
    if not any(isinstance(e, ev.ExecutionRewound) for e in events):
        return list(events)
    out: list[HistoryEvent] = []
    for e in events:
        if isinstance(e, ev.ExecutionRewound):
            reopened = set(e.reopened_task_ids)
            out = [x for x in out if not isinstance(x, ev.ExecutionCompleted)
                   and not (isinstance(x, FAILURE_EVENTS) and x.task_scheduled_id in reopened)]
        else:
            out.append(e)
    return out


def failed_task_ids(executor: Any, instance_id: str, effective: Sequence[HistoryEvent]) -> list[int]:
    """The tasks whose failure the orchestration saw (not the attempts a RetryPolicy retried).

    Replays ``effective`` and watches each failure event: the task it names is failed afterwards
    only if no retry followed (a retried attempt leaves its task pending behind a retry timer,
    and only the last attempt is taken back, so the retry count goes on where it stood).
    """
    live = executor.start(instance_id)
    failed: list[int] = []
    for e in effective:
        if live.is_finished:
            break
        task_id = e.task_scheduled_id if isinstance(e, FAILURE_EVENTS) else None
        task = live.execution.pending_tasks.get(task_id) if task_id is not None else None
        live.apply([e], replaying=True)
        if task_id is not None and task is not None and task.is_failed:
            failed.append(task_id)
    return failed
