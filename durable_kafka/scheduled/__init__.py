"""Recurring schedules (durabletask's ``durabletask.scheduled``, plus cron, zones, overlap, catch-up).

Enable them on a worker with ``worker.configure_scheduled_tasks()`` (or
``configure_scheduled_tasks(worker)``), then manage them from a client::

    schedules = ScheduledTaskClient(client)
    handle = schedules.create_schedule(ScheduleCreationOptions(
        "nightly-report", "make_report", cron_expression="0 2 * * *", time_zone="Europe/Paris"))
    handle.pause(); handle.resume(); handle.trigger_now(); handle.describe(); handle.delete()

A schedule is an entity (``@schedule@<id>``) re-arming itself with durable delayed signals;
docs/SCHEDULES.md explains the semantics and the guarantees.
"""

from ._client import AsyncScheduleClient, AsyncScheduledTaskClient, ScheduleClient, ScheduledTaskClient
from ._entity import ENTITY_NAME, Schedule, run_instance_id
from ._errors import (
    ScheduleClientValidationError,
    ScheduleError,
    ScheduleInvalidTransitionError,
    ScheduleNotFoundError,
)
from ._models import (
    OverlapPolicy,
    ScheduleCreationOptions,
    ScheduleDescription,
    ScheduleQuery,
    ScheduleStatus,
    ScheduleUpdateOptions,
)
from ._orchestrators import durable_kafka_schedule_run, execute_schedule_operation_orchestrator
from ._registration import configure_scheduled_tasks

__all__ = [
    "AsyncScheduleClient",
    "AsyncScheduledTaskClient",
    "ENTITY_NAME",
    "OverlapPolicy",
    "Schedule",
    "ScheduleClient",
    "ScheduleClientValidationError",
    "ScheduleCreationOptions",
    "ScheduleDescription",
    "ScheduleError",
    "ScheduleInvalidTransitionError",
    "ScheduleNotFoundError",
    "ScheduleQuery",
    "ScheduleStatus",
    "ScheduleUpdateOptions",
    "ScheduledTaskClient",
    "configure_scheduled_tasks",
    "durable_kafka_schedule_run",
    "execute_schedule_operation_orchestrator",
    "run_instance_id",
]
