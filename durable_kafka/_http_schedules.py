"""``GET /schedules`` of the HTTP API: the hub's recurring schedules (durable_kafka.scheduled), read-only.

Writes stay with the Python clients (``ScheduledTaskClient``), where the options are typed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from durable_kafka._client_async import AsyncClient
from durable_kafka.scheduled import AsyncScheduledTaskClient, ScheduleDescription, ScheduleQuery, ScheduleStatus


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def schedule_json(d: ScheduleDescription) -> dict[str, Any]:
    """One schedule as the API shows it (camelCase, times in ISO UTC, the interval in seconds)."""
    return {"scheduleId": d.schedule_id, "status": d.status.value, "orchestrationName": d.orchestration_name,
            "orchestrationInput": d.orchestration_input, "orchestrationInstanceId": d.orchestration_instance_id,
            "intervalSeconds": None if d.interval is None else d.interval.total_seconds(),
            "cronExpression": d.cron_expression, "timeZone": d.time_zone, "startAt": _iso(d.start_at),
            "endAt": _iso(d.end_at), "startImmediatelyIfLate": d.start_immediately_if_late,
            "overlapPolicy": d.overlap_policy.value, "maxCatchUpRuns": d.max_catch_up_runs,
            "createdTime": _iso(d.created_at), "lastModifiedTime": _iso(d.last_modified_at),
            "lastRunAt": _iso(d.last_run_at), "nextRunAt": _iso(d.next_run_at), "runCount": d.run_count,
            "missedRuns": d.missed_runs, "overlapSkipped": d.overlap_skipped,
            "runningInstanceIds": d.running_instance_ids, "bufferedInstanceId": d.buffered_instance_id}


def add_schedule_routes(app: FastAPI, client: AsyncClient, base_path: str) -> None:
    from durable_kafka.http import HttpError, _check_hub, _param

    schedules = AsyncScheduledTaskClient(client)

    @app.get(base_path + "/schedules", summary="List recurring schedules")
    async def list_schedules(request: Request) -> JSONResponse:
        """``schedulePrefix`` (a prefix of the schedule id) and ``status`` (Active, Paused) filter."""
        _check_hub(request, client)
        status = _param(request, "status")
        if status is not None and status not in {s.value for s in ScheduleStatus}:
            raise HttpError(400, f"status must be one of Active, Paused, got {status!r}")
        query = ScheduleQuery(schedule_id_prefix=_param(request, "schedulePrefix"),
                              status=ScheduleStatus(status) if status else None)
        return JSONResponse([schedule_json(d) for d in await schedules.list_schedules(query)])

    @app.get(base_path + "/schedules/{schedule_id}", summary="Get one recurring schedule")
    async def get_schedule(request: Request, schedule_id: str) -> JSONResponse:
        """200 with the schedule; 404 when there is none of that id."""
        _check_hub(request, client)
        d = await schedules.get_schedule(schedule_id)
        if d is None:
            raise HttpError(404, f"no schedule {schedule_id!r} in hub {client.hub!r}")
        return JSONResponse(schedule_json(d))
