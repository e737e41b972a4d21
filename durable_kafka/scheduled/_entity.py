"""The schedule entity: one per schedule (``@schedule@<schedule_id>``), holding its state and
driving itself with delayed self-signals, as durabletask's ``Schedule`` entity does.

Why this is exactly once per due time: an operation's state change, the orchestrations it
starts and the delayed ``run_schedule`` signal it arms are one Kafka transaction of the entity
processor; a worker killed with ``kill -9`` aborts the open transaction and its successor
finds the state and the armed signal (kept in the entity processor's timer index, a compacted
changelog) as of the last commit. Each run's instance id is derived from its due time
(``<schedule_id>-<due time, ISO UTC>``), so a run is also recognisable in listings.

The entity reads the wall clock (it is not replayed: each operation runs once); what it
computes from it is kept in its state.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from typing import Any

from durable_kafka.entities import DurableEntity, EntityInstanceId

from ._models import (
    OverlapPolicy,
    ScheduleConfig,
    ScheduleCreationOptions,
    ScheduleState,
    ScheduleStatus,
    ScheduleUpdateOptions,
    _from_iso,
)
from ._timing import utc

log = logging.getLogger("durable_kafka.scheduled")

ENTITY_NAME = "schedule"
RUN_SCHEDULE_OPERATION = "run_schedule"
RUN_COMPLETED_OPERATION = "run_completed"
DELETE_OPERATION = "delete"
RUN_ORCHESTRATOR = "durable_kafka_schedule_run"  # the wrapper that reports a run's end (SKIP/BUFFER_ONE)
WATCH_SUFFIX = ":schedule"


def _now() -> datetime:
    """The wall clock (a module function so that unit tests can move it)."""
    return datetime.now(timezone.utc)


def _first_due(state: ScheduleState, since: datetime) -> datetime:
    """The first due time of a timeline (re)started at ``since``: the time of the create, timing
    update or resume that started it, as that operation read the clock (kept in the state).

    Computed there, not when the ``run_schedule`` signal it arms is handled: a signal handled late
    then finds this due time (and any after it) already passed, and runs it or counts it as missed
    through the catch-up bound like any later one, instead of silently starting from its own "now".
    """
    config = state.config
    assert config is not None
    recurrence = config.recurrence(state.created_at or since)
    if state.last_run_at is None and config.start_immediately_if_late and recurrence.anchor <= since:
        return since
    return recurrence.next_after(since)


def run_instance_id(schedule_id: str, due: datetime) -> str:
    """The instance id of the run of ``schedule_id`` due at ``due``."""
    return f"{schedule_id}-{utc(due).isoformat()}"


def _refused(operation: str, state: ScheduleState, target: ScheduleStatus) -> dict[str, Any]:
    """An operation the status does not allow: nothing changes, the client raises the error."""
    return {"error": "invalid_transition", "operation": operation, "from_status": state.status.value,
            "to_status": target.value}


_NOT_FOUND = {"error": "not_found"}


class Schedule(DurableEntity):
    """Operations: create/update/pause/resume/trigger (from clients, through an orchestration),
    ``run_schedule`` (its own delayed signal), ``run_completed`` (from the run wrapper), ``delete``."""

    # ------------------------------------------------------------------ state
    def _load(self) -> ScheduleState:
        return ScheduleState.from_json(self.get_state(dict))

    def _save(self, state: ScheduleState) -> None:
        self.set_state(state.to_json())

    def _arm(self, state: ScheduleState, at: datetime | None = None) -> None:
        assert state.config is not None
        self.signal_entity(EntityInstanceId(ENTITY_NAME, state.config.schedule_id), RUN_SCHEDULE_OPERATION,
                           state.execution_token, signal_time=at)

    # ------------------------------------------------------------------ client operations
    def create_schedule(self, options: dict[str, Any]) -> dict[str, Any] | None:
        """Create the schedule, or replace the configuration of an existing one (durabletask)."""
        state = self._load()
        config = ScheduleConfig.from_json(options)
        ScheduleCreationOptions(config.schedule_id, config.orchestration_name, config.interval,
                                cron_expression=config.cron_expression, time_zone=config.time_zone,
                                start_at=config.start_at, end_at=config.end_at,
                                max_catch_up_runs=config.max_catch_up_runs)  # validates
        now = _now()
        if state.created_at is None:
            state.created_at = now
        state.config = config
        state.status = ScheduleStatus.ACTIVE
        state.last_modified_at = now
        state.next_run_at = _first_due(state, now)
        state.running, state.buffered = [], None  # a fresh start, also out of a lost watch (docs)
        state.execution_token = uuid.uuid4().hex
        self._save(state)
        self._arm(state)
        log.info("created schedule %r", config.schedule_id)
        return None

    def update_schedule(self, options: dict[str, Any]) -> dict[str, Any] | None:
        state = self._load()
        if state.config is None:
            return _NOT_FOUND
        update = ScheduleUpdateOptions(
            orchestration_name=options.get("orchestration_name"), orchestration_input=options.get("orchestration_input"),
            orchestration_instance_id=options.get("orchestration_instance_id"),
            start_at=_from_iso(options.get("start_at")), end_at=_from_iso(options.get("end_at")),
            interval=ScheduleConfig.from_json({"schedule_id": "", "orchestration_name": "",
                                               "interval_seconds": options.get("interval_seconds")}).interval,
            start_immediately_if_late=options.get("start_immediately_if_late"),
            cron_expression=options.get("cron_expression"), time_zone=options.get("time_zone"),
            overlap_policy=options.get("overlap_policy"), max_catch_up_runs=options.get("max_catch_up_runs"))
        changed = state.config.update(update)
        if not changed:
            return None
        now = _now()
        state.last_modified_at = now
        if changed & ScheduleConfig.TIMING:  # a paused schedule has none until resumed
            state.next_run_at = _first_due(state, now) if state.status == ScheduleStatus.ACTIVE else None
        state.execution_token = uuid.uuid4().hex
        self._save(state)
        if state.status == ScheduleStatus.ACTIVE:
            self._arm(state)
        return None

    def pause_schedule(self) -> dict[str, Any] | None:
        state = self._load()
        if state.config is None:
            return _NOT_FOUND
        if state.status != ScheduleStatus.ACTIVE:
            return _refused("pause_schedule", state, ScheduleStatus.PAUSED)
        state.status = ScheduleStatus.PAUSED
        state.next_run_at = None
        state.execution_token = uuid.uuid4().hex  # the armed signal becomes stale
        state.last_modified_at = _now()
        self._save(state)
        return None

    def resume_schedule(self) -> dict[str, Any] | None:
        state = self._load()
        if state.config is None:
            return _NOT_FOUND
        if state.status != ScheduleStatus.PAUSED:
            return _refused("resume_schedule", state, ScheduleStatus.ACTIVE)
        now = _now()
        state.status = ScheduleStatus.ACTIVE
        state.next_run_at = _first_due(state, now)  # due times while paused are not caught up
        state.last_modified_at = now
        self._save(state)
        self._arm(state)
        return None

    def trigger_schedule(self) -> dict[str, Any] | None:
        """Start a run now (the overlap policy applies); the due-time timeline is not touched."""
        state = self._load()
        if state.config is None:
            return _NOT_FOUND
        now = _now()
        iid = self._start_run(state, f"{state.config.schedule_id}-manual-{now.isoformat()}")
        self._save(state)
        return {"instance_id": iid}

    # ------------------------------------------------------------------ its own signals
    def run_schedule(self, execution_token: str) -> None:
        """Start the runs that are due, then arm the signal for the next due time."""
        state = self._load()
        config = state.config
        if config is None:
            return  # deleted: a signal of the old chain, nothing to do
        if execution_token != state.execution_token or state.status != ScheduleStatus.ACTIVE:
            log.debug("ignoring a stale run signal of schedule %r", config.schedule_id)
            return
        now = _now()
        if config.end_at is not None and now > config.end_at:
            log.info("schedule %r has passed its end time; deleting it", config.schedule_id)
            self.delete_state()  # as durabletask: a finished schedule is removed
            return
        if state.next_run_at is None:  # a state written before create/update/resume set it (older releases)
            state.next_run_at = _first_due(state, state.last_modified_at or now)
        recurrence = config.recurrence(state.created_at or now)
        due, missed = recurrence.due_through(state.next_run_at, now, config.max_catch_up_runs + 1)
        state.missed_runs += missed
        for d in due:
            if config.end_at is not None and d > config.end_at:
                break
            iid = config.orchestration_instance_id or run_instance_id(config.schedule_id, d)
            self._start_run(state, iid)
            state.run_count += 1
            state.last_run_at = d
        if due:
            state.next_run_at = recurrence.next_after(due[-1])
        self._save(state)
        self._arm(state, state.next_run_at)

    def run_completed(self, instance_id: str) -> None:
        """A watched run ended (from the wrapper): forget it, start the buffered one if any."""
        state = self._load()
        if state.config is None or instance_id not in state.running:
            return
        state.running.remove(instance_id)
        if state.buffered is not None and state.status == ScheduleStatus.ACTIVE:
            buffered, state.buffered = state.buffered, None
            self._start_run(state, buffered)
        self._save(state)

    # ------------------------------------------------------------------ runs
    def _start_run(self, state: ScheduleState, instance_id: str) -> str | None:
        """Start one run as the overlap policy says; its instance id, or None if skipped/buffered."""
        config = state.config
        assert config is not None
        policy = config.overlap_policy
        if policy == OverlapPolicy.ALLOW_ALL:
            return self.schedule_new_orchestration(config.orchestration_name, config.orchestration_input,
                                                   instance_id=instance_id)
        if state.running:
            if policy == OverlapPolicy.BUFFER_ONE and state.buffered is None:
                state.buffered = instance_id
            else:
                state.overlap_skipped += 1
            return None
        state.running.append(instance_id)
        self.schedule_new_orchestration(RUN_ORCHESTRATOR, {
            "schedule_id": config.schedule_id, "orchestration_name": config.orchestration_name,
            "input": config.orchestration_input, "instance_id": instance_id}, instance_id=instance_id + WATCH_SUFFIX)
        return instance_id
