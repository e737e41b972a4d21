"""durabletask.scheduled's names, locked: ported code imports them from durable_kafka.scheduled."""

import durable_kafka.scheduled as scheduled
from durable_kafka import Worker
from durable_kafka.errors import DurableKafkaError


def test_durabletask_names():
    for name in ("ScheduledTaskClient", "AsyncScheduledTaskClient", "ScheduleClient", "AsyncScheduleClient",
                 "ScheduleCreationOptions", "ScheduleUpdateOptions", "ScheduleDescription", "ScheduleQuery",
                 "ScheduleStatus", "ScheduleError", "ScheduleNotFoundError", "ScheduleClientValidationError",
                 "ScheduleInvalidTransitionError", "configure_scheduled_tasks"):
        assert name in scheduled.__all__, name
    assert scheduled.__all__ == sorted(scheduled.__all__)
    assert {s.name for s in scheduled.ScheduleStatus} == {"UNINITIALIZED", "ACTIVE", "PAUSED"}
    for method in ("create_schedule", "get_schedule", "list_schedules", "get_schedule_client"):
        assert callable(getattr(scheduled.ScheduledTaskClient, method))
        assert callable(getattr(scheduled.AsyncScheduledTaskClient, method))
    for method in ("create", "describe", "pause", "resume", "update", "delete", "trigger_now"):
        assert callable(getattr(scheduled.ScheduleClient, method))
        assert callable(getattr(scheduled.AsyncScheduleClient, method))
    assert issubclass(scheduled.ScheduleError, DurableKafkaError)
    assert issubclass(scheduled.ScheduleClientValidationError, ValueError)


def test_configure_registers_once(tmp_path):
    w = Worker("127.0.0.1:1", hub="h", state_dir=str(tmp_path))
    w.configure_scheduled_tasks()
    scheduled.configure_scheduled_tasks(w)  # twice: nothing more
    assert "schedule" in w._entities
