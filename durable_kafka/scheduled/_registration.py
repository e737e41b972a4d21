"""Enabling schedules on a worker: one call registers what they run on (durabletask's name)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._entity import ENTITY_NAME, RUN_ORCHESTRATOR, Schedule
from ._orchestrators import durable_kafka_schedule_run, execute_schedule_operation_orchestrator

if TYPE_CHECKING:
    from durable_kafka.worker import Worker


def configure_scheduled_tasks(worker: Worker) -> None:
    """Register the schedule entity and its two orchestrators on ``worker`` (before ``start``).

    Schedules run wherever they are registered: any worker of the hub that called this hosts
    the schedule entities of its partitions. Calling it twice does nothing more.
    """
    if ENTITY_NAME in worker._entities:
        return
    worker.add_entity(Schedule, ENTITY_NAME)
    worker.add_orchestrator(execute_schedule_operation_orchestrator)
    worker.add_orchestrator(durable_kafka_schedule_run, RUN_ORCHESTRATOR)
