"""What the dashboard shows, computed from plain data: instance lists with counts, and timelines.

Kept apart from the routes (``_dashboard.py``) and from Kafka (``_dashboard_hub.py``) so the
parts that decide what an operator sees are pure functions of status snapshots and history
events, unit-tested without a broker or a browser.

The timeline turns a history into bars on a time axis. History records when work was
scheduled and when its result arrived, so activities, sub-orchestrations, timers and entity
calls are exact. An *event wait* is not a history event in the Durable Task model (only the
event's arrival is), so its bar is inferred: it starts at the episode in which the orchestrator
last ran before the event arrived and ends at the arrival. A running instance with nothing
outstanding is shown waiting from its last episode until now.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from datetime import datetime, timezone
from typing import Any

from durable_kafka._client_models import OrchestrationStatus
from durable_kafka._http_models import DF_STATUS, iso
from durable_kafka.streams import events as ev

__all__ = ["InstanceFilter", "filter_instances", "instance_row", "status_counts", "timeline"]

#: Largest page the dashboard's list asks for (the API's ``top`` allows more, a table should not).
MAX_PAGE = 500


@dataclass(frozen=True)
class InstanceFilter:
    """The instance table's filters; all optional, all combined with AND.

    ``name`` matches orchestrator names case-insensitively by substring (operators type part of
    a name); ``id_prefix`` is a plain prefix, as the API's ``instanceIdPrefix``.
    """

    statuses: frozenset[OrchestrationStatus] | None = None
    name: str | None = None
    id_prefix: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None

    def matches(self, status: ev.InstanceStatus) -> bool:
        if self.statuses is not None and status.runtime_status not in self.statuses:
            return False
        if self.name and self.name.lower() not in status.name.lower():
            return False
        if self.id_prefix and not status.instance_id.startswith(self.id_prefix):
            return False
        if self.created_from is None and self.created_to is None:
            return True
        created = _utc(status.created_at)
        if self.created_from is not None and created < _utc(self.created_from):
            return False
        return self.created_to is None or created <= _utc(self.created_to)


def _utc(value: datetime) -> datetime:
    """Aware as stored (the codec gives UTC); a naive time is taken as UTC, as everywhere in the engine."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def status_counts(statuses: Iterable[ev.InstanceStatus]) -> dict[str, int]:
    """Instances per DF status name, every status present (zero included) so the header is stable."""
    counts = {name: 0 for name in DF_STATUS.values()}
    for status in statuses:
        counts[DF_STATUS[status.runtime_status]] += 1
    return counts


def instance_row(status: ev.InstanceStatus) -> dict[str, Any]:
    """One table row: no payloads (a page of thousands must stay small)."""
    return {
        "instanceId": status.instance_id,
        "name": status.name,
        "runtimeStatus": DF_STATUS[status.runtime_status],
        "createdTime": iso(status.created_at),
        "lastUpdatedTime": iso(status.last_updated_at),
        "parentInstanceId": status.parent_instance_id,
    }


def filter_instances(statuses: Sequence[ev.InstanceStatus], where: InstanceFilter, *, offset: int,
                     limit: int) -> dict[str, Any]:
    """A page of the table, newest first, with the total that matched and the counts per status.

    The counts are over the other filters (not the status filter), so the header still says how
    many instances of each status the operator would see by clicking that status.
    """
    if offset < 0 or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"offset must be >= 0 and limit 1..{MAX_PAGE}, got {offset}, {limit}")
    unfiltered_status = InstanceFilter(None, where.name, where.id_prefix, where.created_from, where.created_to)
    candidates = [s for s in statuses if unfiltered_status.matches(s)]
    matching = [s for s in candidates if where.statuses is None or s.runtime_status in where.statuses]
    try:  # newest first; attrgetter keeps a sort of 100k statuses in C
        matching.sort(key=attrgetter("created_at", "instance_id"), reverse=True)
    except TypeError:  # naive and aware times mixed (statuses built by hand): compare as UTC
        matching.sort(key=lambda s: (_utc(s.created_at), s.instance_id), reverse=True)
    return {
        "total": len(matching),
        "offset": offset,
        "limit": limit,
        "counts": status_counts(candidates),
        "items": [instance_row(s) for s in matching[offset:offset + limit]],
    }


# ---------------------------------------------------------------------------- timeline


def _payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _failure(details: ev.FailureDetails | None) -> dict[str, Any] | None:
    if details is None:
        return None
    return {"errorType": details.error_type, "errorMessage": details.message, "stackTrace": details.stack_trace}


def _bar(kind: str, label: str, start: datetime, event_id: int, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "label": label, "start": iso(start), "end": None, "status": "pending",
            "eventId": event_id, **extra}


def _close(bar: dict[str, Any] | None, end: datetime, status: str, **extra: Any) -> None:
    if bar is not None:
        bar.update(end=iso(end), status=status, **extra)


def timeline(history: Sequence[ev.HistoryEvent], *, now: datetime, running: bool) -> dict[str, Any]:
    """Bars for the history of one execution: ``{"start", "end", "bars": [...]}``.

    A bar has ``kind`` (activity, suborchestration, timer, entity, event, suspended, waiting,
    orchestration), ``label``, ``start``, ``end`` (None while outstanding), ``status``
    (completed, failed, pending) and, for a sub-orchestration, the child's ``instanceId``.
    """
    if not history:
        return {"start": None, "end": None, "bars": []}
    bars: list[dict[str, Any]] = []
    by_task: dict[int, dict[str, Any]] = {}
    by_request: dict[str, dict[str, Any]] = {}
    episodes: list[datetime] = []
    suspended: dict[str, Any] | None = None
    finished: datetime | None = None
    outcome = "completed"
    for event in history:
        ts = event.timestamp
        if isinstance(event, ev.OrchestratorStarted):
            episodes.append(ts)
        elif isinstance(event, ev.TaskScheduled):
            by_task[event.event_id] = _bar("activity", event.name, ts, event.event_id)
            bars.append(by_task[event.event_id])
        elif isinstance(event, ev.SubOrchestrationInstanceCreated):
            by_task[event.event_id] = _bar("suborchestration", event.name, ts, event.event_id,
                                           instanceId=event.instance_id)
            bars.append(by_task[event.event_id])
        elif isinstance(event, ev.TimerCreated):
            by_task[event.event_id] = _bar("timer", f"timer until {(iso(event.fire_at) or '')[11:23]}", ts, event.event_id,
                                           plannedEnd=iso(event.fire_at))
            bars.append(by_task[event.event_id])
        elif isinstance(event, (ev.TaskCompleted, ev.SubOrchestrationInstanceCompleted)):
            _close(by_task.get(event.task_scheduled_id), ts, "completed")
        elif isinstance(event, (ev.TaskFailed, ev.SubOrchestrationInstanceFailed)):
            _close(by_task.get(event.task_scheduled_id), ts, "failed", failure=_failure(event.failure_details))
        elif isinstance(event, ev.TimerFired):
            _close(by_task.get(event.timer_id), ts, "completed")
        elif isinstance(event, ev.EntityOperationCalled):
            by_request[event.request_id] = _bar("entity", f"{event.operation} {event.target_instance_id}", ts,
                                                event.event_id)
            bars.append(by_request[event.request_id])
        elif isinstance(event, ev.EntityOperationSignaled):
            bar = _bar("entity", f"signal {event.operation} {event.target_instance_id}", ts, event.event_id)
            _close(bar, ts, "completed")
            bars.append(bar)
        elif isinstance(event, ev.EntityOperationCompleted):
            _close(by_request.get(event.request_id), ts, "completed")
        elif isinstance(event, ev.EntityOperationFailed):
            _close(by_request.get(event.request_id), ts, "failed", failure=_failure(event.failure_details))
        elif isinstance(event, ev.EventRaised):
            waited_from = episodes[-2] if len(episodes) >= 2 else history[0].timestamp
            bar = _bar("event", f"event {event.name}", min(waited_from, ts), event.event_id)
            _close(bar, ts, "completed")
            bars.append(bar)
        elif isinstance(event, ev.ExecutionSuspended):
            suspended = _bar("suspended", "suspended", ts, event.event_id)
            bars.append(suspended)
        elif isinstance(event, ev.ExecutionResumed):
            _close(suspended, ts, "completed")
            suspended = None
        elif isinstance(event, ev.ExecutionCompleted):
            finished = ts
            outcome = "failed" if event.runtime_status == OrchestrationStatus.FAILED else "completed"
        elif isinstance(event, ev.ExecutionTerminated):
            finished, outcome = ts, "terminated"
    start = history[0].timestamp
    end = finished or (now if running else history[-1].timestamp)
    if running and finished is None and not any(b["end"] is None for b in bars):
        last = episodes[-1] if episodes else history[-1].timestamp
        bars.append({"kind": "waiting", "label": "waiting (event or external)", "start": iso(last),
                     "end": None, "status": "pending", "eventId": None})
    bars.insert(0, {"kind": "orchestration", "label": "orchestration", "start": iso(start),
                    "end": iso(finished) if finished else None,
                    "status": outcome if finished else "pending", "eventId": history[0].event_id})
    return {"start": iso(start), "end": iso(max(end, start)), "bars": bars}
