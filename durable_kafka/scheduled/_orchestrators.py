"""The two orchestrators schedules need on a worker (registered by ``configure_scheduled_tasks``).

``execute_schedule_operation_orchestrator`` (durabletask's name) runs one client operation as a
call to the schedule entity, so that the client learns when it was applied and what it
answered. ``durable_kafka_schedule_run`` wraps a run under the SKIP and BUFFER_ONE overlap
policies: it runs the target as a sub-orchestration (the run keeps its due-time instance id)
and then tells the schedule that the run ended, whatever the outcome.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from durable_kafka.entities import EntityInstanceId
from durable_kafka.errors import TaskFailedError

from ._entity import ENTITY_NAME, RUN_COMPLETED_OPERATION


def execute_schedule_operation_orchestrator(ctx: Any, request: dict[str, Any]) -> Generator[Any, Any, Any]:
    """Call ``request["operation_name"]`` on the schedule entity; return its answer, or the error."""
    entity_id = EntityInstanceId.parse(request["entity_id"])
    try:
        result = yield ctx.call_entity(entity_id, request["operation_name"], request.get("input"))
    except TaskFailedError as error:
        details = error.details
        return {"error": "failed", "error_type": getattr(details, "error_type", type(error).__name__),
                "message": getattr(details, "message", str(error))}
    return result


def durable_kafka_schedule_run(ctx: Any, run: dict[str, Any]) -> Generator[Any, Any, Any]:
    """Run one watched run of a schedule, then signal ``run_completed`` to the schedule."""
    outcome = "completed"
    try:
        yield ctx.call_sub_orchestrator(run["orchestration_name"], input=run.get("input"),
                                        instance_id=run["instance_id"])
    except TaskFailedError:
        outcome = "failed"
    ctx.signal_entity(EntityInstanceId(ENTITY_NAME, run["schedule_id"]), RUN_COMPLETED_OPERATION, run["instance_id"])
    return outcome
