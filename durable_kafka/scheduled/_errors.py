"""Errors of recurring schedules (durabletask's names), under ``DurableKafkaError``.

    ScheduleError                       any schedule operation that cannot be done as asked
    ├── ScheduleNotFoundError           no schedule with that id
    ├── ScheduleClientValidationError   options that cannot make a schedule (also a ValueError)
    └── ScheduleInvalidTransitionError  e.g. pause of a paused schedule, resume of an active one
"""

from __future__ import annotations

from durable_kafka.errors import DurableKafkaError, InvalidArgumentError


class ScheduleError(DurableKafkaError):
    """Base of the errors a schedule operation raises."""


class ScheduleNotFoundError(ScheduleError):
    """The schedule does not exist (never created, or deleted)."""

    def __init__(self, schedule_id: str) -> None:
        self.schedule_id = schedule_id
        super().__init__(f"Schedule with ID '{schedule_id}' was not found.")


class ScheduleClientValidationError(ScheduleError, InvalidArgumentError):
    """Options that cannot make a schedule; raised by the client before anything is sent."""

    def __init__(self, schedule_id: str, message: str) -> None:
        self.schedule_id = schedule_id
        super().__init__(f"Validation failed for schedule '{schedule_id}': {message}")


class ScheduleInvalidTransitionError(ScheduleError):
    """The operation is not valid in the schedule's current status."""

    def __init__(self, schedule_id: str, from_status: object, to_status: object, operation_name: str) -> None:
        self.schedule_id = schedule_id
        self.from_status = from_status
        self.to_status = to_status
        self.operation_name = operation_name
        super().__init__(f"Invalid state transition for schedule '{schedule_id}': operation "
                         f"'{operation_name}' cannot transition from '{from_status}' to '{to_status}'.")
