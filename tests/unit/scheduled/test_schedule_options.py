"""Options are checked before anything is sent: typed errors, durabletask-compatible."""

from datetime import datetime, timedelta, timezone

import pytest

from durable_kafka.errors import InvalidArgumentError
from durable_kafka.scheduled import (
    OverlapPolicy,
    ScheduleClientValidationError,
    ScheduleCreationOptions,
    ScheduleQuery,
    ScheduleStatus,
    ScheduleUpdateOptions,
)


def work(ctx, _):
    return None


@pytest.mark.parametrize("kwargs, match", [
    ({}, "exactly one of interval and cron_expression"),
    ({"interval": timedelta(seconds=1), "cron_expression": "* * * * *"}, "exactly one"),
    ({"interval": timedelta(milliseconds=500)}, "at least 1 second"),
    ({"interval": 5}, "must be a timedelta"),
    ({"cron_expression": "99 * * * *"}, "invalid cron"),
    ({"cron_expression": "* * * * *", "time_zone": "Nowhere/City"}, "unknown time zone"),
    ({"interval": timedelta(seconds=5), "time_zone": "Europe/Paris"}, "cron_expression only"),
    ({"interval": timedelta(seconds=5), "max_catch_up_runs": -1}, "max_catch_up_runs"),
    ({"interval": timedelta(seconds=5), "start_at": datetime(2026, 2, 1), "end_at": datetime(2026, 1, 1)},
     "start_at cannot be later"),
])
def test_bad_creation_options(kwargs, match):
    with pytest.raises(ScheduleClientValidationError, match=match) as info:
        ScheduleCreationOptions("s1", "work", **kwargs)
    assert isinstance(info.value, (ValueError, InvalidArgumentError))


@pytest.mark.parametrize("schedule_id", ["a/b", "a#b", "a?b", "@x", "x" * 51])
def test_schedule_ids_must_make_valid_instance_ids(schedule_id):
    with pytest.raises(ScheduleClientValidationError):
        ScheduleCreationOptions(schedule_id, "work", timedelta(seconds=5))
    ScheduleCreationOptions("x" * 50, "work", timedelta(seconds=5))


def test_empty_ids_and_names():
    with pytest.raises(ValueError):
        ScheduleCreationOptions("", "work", timedelta(seconds=5))
    with pytest.raises(ValueError):
        ScheduleCreationOptions("s1", "", timedelta(seconds=5))


def test_function_names_and_policy_strings():
    o = ScheduleCreationOptions("s1", work, cron_expression="0 9 * * 1-5", time_zone="Europe/Paris",
                                overlap_policy="Skip")  # type: ignore[arg-type]
    assert o.orchestration_name == "work" and o.overlap_policy is OverlapPolicy.SKIP


def test_update_options_and_query():
    with pytest.raises(ScheduleClientValidationError):
        ScheduleUpdateOptions(interval=timedelta(seconds=1), cron_expression="* * * * *")
    q = ScheduleQuery(status="Paused", created_from=datetime(2026, 1, 1))  # type: ignore[arg-type]
    assert q.status is ScheduleStatus.PAUSED and q.created_from == datetime(2026, 1, 1, tzinfo=timezone.utc)
