"""What a schedule is: the options users give (durabletask's names plus cron, zone, overlap and
catch-up), the description they read back, the query that lists them, and the state the
schedule entity keeps (JSON, so the status topic and ``get_entity`` show it as it is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Callable

from ._errors import ScheduleClientValidationError
from ._timing import Recurrence, check_cron, utc, zone_of

MINIMUM_INTERVAL = timedelta(seconds=1)


class ScheduleStatus(str, Enum):
    """Where a schedule is in its life (durabletask's values)."""

    UNINITIALIZED = "Uninitialized"
    """Not created (or deleted)."""
    ACTIVE = "Active"
    """Starting its orchestration at each due time."""
    PAUSED = "Paused"
    """Kept, but starting nothing until resumed (due times while paused are not caught up)."""


class OverlapPolicy(str, Enum):
    """What a due time does while an earlier run of the same schedule is still going.

    ``ALLOW_ALL`` (the default, durabletask's behaviour) starts every run regardless.
    ``SKIP`` starts nothing while a run is going (the due time counts as skipped).
    ``BUFFER_ONE`` keeps one due time and starts it when the running one ends; more are skipped.
    The two last ones watch each run through a small wrapper orchestration (docs/SCHEDULES.md).
    """

    ALLOW_ALL = "AllowAll"
    SKIP = "Skip"
    BUFFER_ONE = "BufferOne"


def _name_of(value: Any) -> Any:
    if callable(value) and not isinstance(value, str):
        from durable_kafka.task import get_name

        return get_name(value)
    return value


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else utc(value).isoformat()


def _from_iso(value: str | None) -> datetime | None:
    return None if not value else utc(datetime.fromisoformat(value))


MAX_SCHEDULE_ID_LENGTH = 50  # run ids add "-manual-<ISO time>:schedule" (49) and must stay <= 100
_LONGEST_SUFFIX = "-manual-2026-01-01T00:00:00.000000+00:00:schedule"


def _check_ids(schedule_id: str, instance_id: str | None) -> None:
    """The schedule id must make valid run instance ids (streams/ids.py's rules), and fit in them."""
    from durable_kafka.errors import InvalidInstanceIdError
    from durable_kafka.streams.ids import validate_instance_id

    if len(schedule_id) > MAX_SCHEDULE_ID_LENGTH:
        raise ScheduleClientValidationError(schedule_id, f"schedule_id is longer than {MAX_SCHEDULE_ID_LENGTH}")
    if "@" in schedule_id:
        raise ScheduleClientValidationError(schedule_id, "schedule_id cannot contain '@'")
    try:
        validate_instance_id(schedule_id + _LONGEST_SUFFIX)
        if instance_id is not None:
            validate_instance_id(instance_id + ":schedule")
    except InvalidInstanceIdError as error:
        raise ScheduleClientValidationError(schedule_id, str(error)) from error


def _check_interval(schedule_id: str, interval: Any) -> None:
    if not isinstance(interval, timedelta):
        raise ScheduleClientValidationError(schedule_id, f"interval must be a timedelta, got {interval!r}")
    if interval < MINIMUM_INTERVAL:
        raise ScheduleClientValidationError(schedule_id, "interval must be at least 1 second")


def _check_recurrence(schedule_id: str, interval: timedelta | None, cron: str | None, zone: str | None) -> None:
    if (interval is None) == (cron is None):
        raise ScheduleClientValidationError(schedule_id, "give exactly one of interval and cron_expression")
    if interval is not None:
        _check_interval(schedule_id, interval)
        if zone is not None:
            raise ScheduleClientValidationError(schedule_id, "time_zone applies to cron_expression only")
    try:
        if cron is not None:
            check_cron(cron)
        zone_of(zone)
    except ValueError as error:
        raise ScheduleClientValidationError(schedule_id, str(error)) from error


def _check_catch_up(schedule_id: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ScheduleClientValidationError(schedule_id, f"max_catch_up_runs must be an int >= 0, got {value!r}")


def _check_window(schedule_id: str, start_at: datetime | None, end_at: datetime | None) -> None:
    for name, value in (("start_at", start_at), ("end_at", end_at)):
        if value is not None and not isinstance(value, datetime):
            raise ScheduleClientValidationError(schedule_id, f"{name} must be a datetime, got {value!r}")
    if start_at is not None and end_at is not None and utc(start_at) > utc(end_at):
        raise ScheduleClientValidationError(schedule_id, "start_at cannot be later than end_at")


@dataclass
class ScheduleCreationOptions:
    """A new schedule: durabletask's fields, then what durable-kafka adds.

    Give ``interval`` (at least 1 s; due times are ``start_at`` or the creation time plus whole
    intervals) or ``cron_expression`` (5 fields, or 6 with seconds last, croniter's syntax),
    evaluated in ``time_zone`` (IANA name, default UTC). ``orchestration_name`` may also be the
    orchestrator function. ``overlap_policy``: see :class:`OverlapPolicy`. ``max_catch_up_runs``:
    how many due times missed while no worker ran (or the schedule ran late) still start
    afterwards, the latest ones; 0 (the default) starts only the latest due time.
    """

    schedule_id: str
    orchestration_name: str | Callable[..., Any]
    interval: timedelta | None = None
    orchestration_input: Any | None = None
    orchestration_instance_id: str | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    start_immediately_if_late: bool = False
    cron_expression: str | None = None
    time_zone: str | None = None
    overlap_policy: OverlapPolicy = OverlapPolicy.ALLOW_ALL
    max_catch_up_runs: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.schedule_id, str) or not self.schedule_id:
            raise ScheduleClientValidationError(str(self.schedule_id or ""), "schedule_id cannot be empty")
        _check_ids(self.schedule_id, self.orchestration_instance_id)
        self.orchestration_name = _name_of(self.orchestration_name)
        if not isinstance(self.orchestration_name, str) or not self.orchestration_name:
            raise ScheduleClientValidationError(self.schedule_id, "orchestration_name cannot be empty")
        _check_recurrence(self.schedule_id, self.interval, self.cron_expression, self.time_zone)
        _check_window(self.schedule_id, self.start_at, self.end_at)
        self.overlap_policy = OverlapPolicy(self.overlap_policy)
        _check_catch_up(self.schedule_id, self.max_catch_up_runs)


@dataclass
class ScheduleUpdateOptions:
    """Changes to a schedule: only the fields given (not None) change.

    Giving ``cron_expression`` turns an interval schedule into a cron one and ``interval`` the
    reverse. A change of timing (start_at, interval, cron, zone, start_immediately_if_late)
    recomputes the next due time from now.
    """

    orchestration_name: str | Callable[..., Any] | None = None
    orchestration_input: Any | None = None
    orchestration_instance_id: str | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    interval: timedelta | None = None
    start_immediately_if_late: bool | None = None
    cron_expression: str | None = None
    time_zone: str | None = None
    overlap_policy: OverlapPolicy | None = None
    max_catch_up_runs: int | None = None

    def __post_init__(self) -> None:
        self.orchestration_name = _name_of(self.orchestration_name)
        if self.orchestration_instance_id is not None:
            _check_ids("", self.orchestration_instance_id)
        if self.interval is not None:
            _check_interval("", self.interval)
        if self.interval is not None and self.cron_expression is not None:
            raise ScheduleClientValidationError("", "give at most one of interval and cron_expression")
        try:
            if self.cron_expression is not None:
                check_cron(self.cron_expression)
            zone_of(self.time_zone)
        except ValueError as error:
            raise ScheduleClientValidationError("", str(error)) from error
        _check_window("", self.start_at, self.end_at)
        if self.overlap_policy is not None:
            self.overlap_policy = OverlapPolicy(self.overlap_policy)
        if self.max_catch_up_runs is not None:
            _check_catch_up("", self.max_catch_up_runs)


@dataclass
class ScheduleQuery:
    """Which schedules ``list_schedules`` returns (durabletask's fields; bounds exclusive)."""

    DEFAULT_PAGE_SIZE = 100

    status: ScheduleStatus | None = None
    schedule_id_prefix: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    page_size: int | None = None

    def __post_init__(self) -> None:
        self.created_from = _aware(self.created_from)
        self.created_to = _aware(self.created_to)
        if self.status is not None:
            self.status = ScheduleStatus(self.status)


@dataclass
class ScheduleDescription:
    """A schedule's configuration and where it is (durabletask's fields, then ours).

    ``run_count``: runs started at due times (trigger_now runs not counted). ``missed_runs``: due
    times a bounded catch-up left out. ``overlap_skipped``: due times the overlap policy skipped.
    ``running_instance_ids``: runs still going (tracked under SKIP and BUFFER_ONE only);
    ``buffered_instance_id``: the run BUFFER_ONE starts when the running one ends.
    """

    schedule_id: str
    orchestration_name: str | None = None
    orchestration_input: Any | None = None
    orchestration_instance_id: str | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    interval: timedelta | None = None
    start_immediately_if_late: bool | None = None
    status: ScheduleStatus = ScheduleStatus.UNINITIALIZED
    execution_token: str = ""
    last_run_at: datetime | None = None
    next_run_at: datetime | None = None
    cron_expression: str | None = None
    time_zone: str | None = None
    overlap_policy: OverlapPolicy = OverlapPolicy.ALLOW_ALL
    max_catch_up_runs: int = 0
    created_at: datetime | None = None
    last_modified_at: datetime | None = None
    run_count: int = 0
    missed_runs: int = 0
    overlap_skipped: int = 0
    running_instance_ids: list[str] = field(default_factory=list)
    buffered_instance_id: str | None = None


@dataclass
class ScheduleConfig:
    """The configuration part of the entity state (what create sets and update changes)."""

    schedule_id: str
    orchestration_name: str
    interval: timedelta | None = None
    cron_expression: str | None = None
    time_zone: str | None = None
    orchestration_input: Any | None = None
    orchestration_instance_id: str | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    start_immediately_if_late: bool = False
    overlap_policy: OverlapPolicy = OverlapPolicy.ALLOW_ALL
    max_catch_up_runs: int = 0

    TIMING = frozenset({"start_at", "interval", "cron_expression", "time_zone", "start_immediately_if_late"})

    @staticmethod
    def from_options(o: ScheduleCreationOptions) -> ScheduleConfig:
        assert isinstance(o.orchestration_name, str)
        return ScheduleConfig(o.schedule_id, o.orchestration_name, o.interval, o.cron_expression, o.time_zone,
                              o.orchestration_input, o.orchestration_instance_id, _aware(o.start_at),
                              _aware(o.end_at), o.start_immediately_if_late, o.overlap_policy, o.max_catch_up_runs)

    def update(self, o: ScheduleUpdateOptions) -> set[str]:
        """Apply the fields ``o`` sets; the names of those that changed."""
        changed: set[str] = set()
        for name in ("orchestration_name", "orchestration_input", "orchestration_instance_id", "start_at",
                     "end_at", "start_immediately_if_late", "overlap_policy", "max_catch_up_runs", "time_zone"):
            value = getattr(o, name)
            if name in ("start_at", "end_at"):
                value = _aware(value)
            if value is not None and value != getattr(self, name):
                setattr(self, name, value)
                changed.add(name)
        if o.interval is not None and (o.interval != self.interval or self.cron_expression is not None):
            self.interval, self.cron_expression, self.time_zone = o.interval, None, None
            changed.add("interval")
        if o.cron_expression is not None and o.cron_expression != self.cron_expression:
            self.cron_expression, self.interval = o.cron_expression, None
            changed.add("cron_expression")
        _check_recurrence(self.schedule_id, self.interval, self.cron_expression, self.time_zone)
        _check_window(self.schedule_id, self.start_at, self.end_at)
        return changed

    def recurrence(self, created_at: datetime) -> Recurrence:
        return Recurrence(self.start_at or created_at, self.interval, self.cron_expression, self.time_zone)

    def to_json(self) -> dict[str, Any]:
        return {"schedule_id": self.schedule_id, "orchestration_name": self.orchestration_name,
                "interval_seconds": None if self.interval is None else self.interval.total_seconds(),
                "cron_expression": self.cron_expression, "time_zone": self.time_zone,
                "orchestration_input": self.orchestration_input,
                "orchestration_instance_id": self.orchestration_instance_id,
                "start_at": _iso(self.start_at), "end_at": _iso(self.end_at),
                "start_immediately_if_late": self.start_immediately_if_late,
                "overlap_policy": self.overlap_policy.value, "max_catch_up_runs": self.max_catch_up_runs}

    @staticmethod
    def from_json(d: dict[str, Any]) -> ScheduleConfig:
        seconds = d.get("interval_seconds")
        return ScheduleConfig(d["schedule_id"], d["orchestration_name"],
                              None if seconds is None else timedelta(seconds=seconds), d.get("cron_expression"),
                              d.get("time_zone"), d.get("orchestration_input"), d.get("orchestration_instance_id"),
                              _from_iso(d.get("start_at")), _from_iso(d.get("end_at")),
                              bool(d.get("start_immediately_if_late", False)),
                              OverlapPolicy(d.get("overlap_policy", OverlapPolicy.ALLOW_ALL.value)),
                              int(d.get("max_catch_up_runs", 0)))


@dataclass
class ScheduleState:
    """The schedule entity's state: status, token, times, counters and the runs it watches.

    ``execution_token`` ties the chain of delayed ``run_schedule`` self-signals to one
    configuration: pause and update replace it, so a signal armed before them does nothing.
    """

    status: ScheduleStatus = ScheduleStatus.UNINITIALIZED
    execution_token: str = ""
    config: ScheduleConfig | None = None
    created_at: datetime | None = None
    last_modified_at: datetime | None = None
    last_run_at: datetime | None = None
    next_run_at: datetime | None = None
    run_count: int = 0
    missed_runs: int = 0
    overlap_skipped: int = 0
    running: list[str] = field(default_factory=list)
    buffered: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status.value, "execution_token": self.execution_token,
                "config": None if self.config is None else self.config.to_json(),
                "created_at": _iso(self.created_at), "last_modified_at": _iso(self.last_modified_at),
                "last_run_at": _iso(self.last_run_at), "next_run_at": _iso(self.next_run_at),
                "run_count": self.run_count, "missed_runs": self.missed_runs,
                "overlap_skipped": self.overlap_skipped, "running": list(self.running), "buffered": self.buffered}

    @staticmethod
    def from_json(d: dict[str, Any] | None) -> ScheduleState:
        if not d:
            return ScheduleState()
        cfg = d.get("config")
        return ScheduleState(ScheduleStatus(d.get("status", ScheduleStatus.UNINITIALIZED.value)),
                             d.get("execution_token", ""), None if cfg is None else ScheduleConfig.from_json(cfg),
                             _from_iso(d.get("created_at")), _from_iso(d.get("last_modified_at")),
                             _from_iso(d.get("last_run_at")), _from_iso(d.get("next_run_at")),
                             int(d.get("run_count", 0)), int(d.get("missed_runs", 0)),
                             int(d.get("overlap_skipped", 0)), list(d.get("running", [])), d.get("buffered"))

    def to_description(self) -> ScheduleDescription:
        c = self.config
        return ScheduleDescription(
            schedule_id=c.schedule_id if c else "", orchestration_name=c.orchestration_name if c else None,
            orchestration_input=c.orchestration_input if c else None,
            orchestration_instance_id=c.orchestration_instance_id if c else None,
            start_at=c.start_at if c else None, end_at=c.end_at if c else None, interval=c.interval if c else None,
            start_immediately_if_late=c.start_immediately_if_late if c else None, status=self.status,
            execution_token=self.execution_token, last_run_at=self.last_run_at, next_run_at=self.next_run_at,
            cron_expression=c.cron_expression if c else None, time_zone=c.time_zone if c else None,
            overlap_policy=c.overlap_policy if c else OverlapPolicy.ALLOW_ALL,
            max_catch_up_runs=c.max_catch_up_runs if c else 0, created_at=self.created_at,
            last_modified_at=self.last_modified_at, run_count=self.run_count, missed_runs=self.missed_runs,
            overlap_skipped=self.overlap_skipped, running_instance_ids=list(self.running),
            buffered_instance_id=self.buffered)
