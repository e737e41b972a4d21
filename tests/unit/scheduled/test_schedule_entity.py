"""The schedule entity's operations, run directly (no broker) with a movable clock."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from durable_kafka.entities import EntityContext, EntityInstanceId, run_operation
from durable_kafka.scheduled import OverlapPolicy, ScheduleCreationOptions, ScheduleStatus, ScheduleUpdateOptions
from durable_kafka.scheduled import _entity
from durable_kafka.scheduled._client import _update_json
from durable_kafka.scheduled._models import ScheduleConfig, ScheduleState

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


class Harness:
    """One schedule entity with its state, a clock, and what its operations sent."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = T0
        self.state: str | None = None
        self.starts: list[tuple[str, str, object]] = []
        self.armed: list[tuple[str, datetime | None]] = []  # (token, signal_time) of run_schedule signals
        self.signals: list[object] = []
        monkeypatch.setattr(_entity, "_now", lambda: self.now)

    def op(self, operation: str, input: object = None) -> object:  # noqa: A002
        ctx = EntityContext(EntityInstanceId("schedule", "s1"), operation, self.state)
        result = run_operation(_entity.Schedule, ctx, input)
        if ctx.state_changed:
            self.state = ctx.state_json
        for sig in ctx.outcome.signals:
            self.signals.append(sig)
            if sig.operation == "run_schedule":
                self.armed.append((json.loads(sig.input), sig.scheduled_time))
        for o in ctx.outcome.orchestrations:
            self.starts.append((o.name, o.instance_id, json.loads(o.input) if o.input else None))
        return result

    def create(self, **kw: object) -> None:
        options = ScheduleCreationOptions("s1", "work", **kw)  # type: ignore[arg-type]
        self.op("create_schedule", ScheduleConfig.from_options(options).to_json())

    def tick(self) -> None:
        """Deliver the last armed run_schedule signal at its time (or now)."""
        token, at = self.armed[-1]
        if at is not None and at > self.now:
            self.now = at
        self.op("run_schedule", token)

    @property
    def s(self) -> ScheduleState:
        return ScheduleState.from_json(json.loads(self.state) if self.state else None)


@pytest.fixture
def h(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(monkeypatch)


def run_ids(h: Harness) -> list[str]:
    return [iid for _, iid, _ in h.starts]


def test_interval_runs_once_per_due_time_with_due_time_ids(h):
    h.create(interval=timedelta(seconds=10), orchestration_input={"x": 1})
    assert h.s.status == ScheduleStatus.ACTIVE and h.starts == []
    h.tick()  # the first signal computes the first due time and re-arms for it
    assert h.s.next_run_at == T0 + timedelta(seconds=10) and h.starts == []
    for _ in range(3):
        h.tick()
    assert run_ids(h) == [f"s1-{(T0 + timedelta(seconds=10 * k)).isoformat()}" for k in (1, 2, 3)]
    assert h.starts[0][0] == "work" and h.starts[0][2] == {"x": 1}
    assert h.s.run_count == 3 and h.s.last_run_at == T0 + timedelta(seconds=30)


def test_downtime_fires_only_the_latest_by_default(h):
    h.create(interval=timedelta(seconds=10))
    h.tick()
    h.now = T0 + timedelta(hours=1, seconds=5)  # the worker was down for an hour
    h.op("run_schedule", h.armed[-1][0])
    assert run_ids(h) == [f"s1-{(T0 + timedelta(hours=1)).isoformat()}"]
    assert h.s.missed_runs == 359
    assert h.armed[-1][1] == T0 + timedelta(hours=1, seconds=10)


def test_bounded_catch_up_starts_the_latest_missed_runs(h):
    h.create(interval=timedelta(seconds=10), max_catch_up_runs=2)
    h.tick()
    h.now = T0 + timedelta(minutes=1, seconds=1)
    h.op("run_schedule", h.armed[-1][0])
    assert run_ids(h) == [f"s1-{(T0 + timedelta(seconds=s)).isoformat()}" for s in (40, 50, 60)]
    assert h.s.missed_runs == 3


def test_pause_makes_the_armed_signal_stale_and_resume_skips_the_paused_span(h):
    h.create(interval=timedelta(seconds=10))
    h.tick()
    stale = h.armed[-1][0]
    assert h.op("pause_schedule") is None and h.s.status == ScheduleStatus.PAUSED
    assert h.op("pause_schedule") == {"error": "invalid_transition", "operation": "pause_schedule",
                                      "from_status": "Paused", "to_status": "Paused"}
    h.now = T0 + timedelta(seconds=35)
    h.op("run_schedule", stale)
    assert h.starts == []
    h.op("resume_schedule")
    h.tick()
    assert h.s.next_run_at == T0 + timedelta(seconds=40) and h.starts == []
    h.tick()
    assert run_ids(h) == [f"s1-{(T0 + timedelta(seconds=40)).isoformat()}"]


def test_update_changes_timing_and_old_signals_do_nothing(h):
    h.create(interval=timedelta(seconds=10))
    h.tick()
    old = h.armed[-1][0]
    h.op("update_schedule", _update_json(ScheduleUpdateOptions(cron_expression="*/5 * * * *", time_zone="Asia/Tokyo")))
    s = h.s
    assert s.config is not None and s.config.interval is None and s.config.cron_expression == "*/5 * * * *"
    assert h.s.next_run_at == T0 + timedelta(minutes=5)  # recomputed from the update's time
    h.op("run_schedule", old)
    assert h.s.next_run_at == T0 + timedelta(minutes=5) and h.starts == []
    h.tick()
    assert h.s.next_run_at == T0 + timedelta(minutes=5)


def late(h: Harness, by: timedelta) -> None:
    """Deliver the last armed run_schedule signal ``by`` after the operation that armed it."""
    h.now += by
    h.op("run_schedule", h.armed[-1][0])


def test_the_first_due_time_is_known_once_created(h):
    h.create(interval=timedelta(seconds=10))
    assert h.s.next_run_at == T0 + timedelta(seconds=10)  # before the create's own signal is handled


def test_a_late_create_signal_still_runs_the_first_due_time(h):
    h.create(interval=timedelta(seconds=10))
    late(h, timedelta(seconds=12))  # the create's self-signal handled after the first due time
    assert run_ids(h) == [f"s1-{(T0 + timedelta(seconds=10)).isoformat()}"]
    assert h.s.run_count == 1 and h.s.missed_runs == 0
    assert h.s.next_run_at == T0 + timedelta(seconds=20) and h.armed[-1][1] == T0 + timedelta(seconds=20)


def test_a_late_create_signal_goes_through_the_catch_up_bound(h):
    h.create(interval=timedelta(seconds=10))
    late(h, timedelta(seconds=25))  # two due times passed: the latest runs, the other is counted
    assert run_ids(h) == [f"s1-{(T0 + timedelta(seconds=20)).isoformat()}"]
    assert h.s.run_count == 1 and h.s.missed_runs == 1


def test_a_late_create_signal_catches_up_every_due_time_within_the_bound(h):
    h.create(interval=timedelta(seconds=10), max_catch_up_runs=5)
    late(h, timedelta(seconds=25))
    assert run_ids(h) == [f"s1-{(T0 + timedelta(seconds=s)).isoformat()}" for s in (10, 20)]
    assert h.s.missed_runs == 0


def test_a_start_time_passed_before_the_signal_is_handled_still_runs(h):
    h.create(interval=timedelta(hours=1), start_at=T0 + timedelta(seconds=5))
    late(h, timedelta(seconds=7))
    assert run_ids(h) == [f"s1-{(T0 + timedelta(seconds=5)).isoformat()}"]
    assert h.s.next_run_at == T0 + timedelta(hours=1, seconds=5)


def test_a_cron_schedule_handled_late_runs_its_first_due_time(h):
    h.create(cron_expression="* * * * * */10")  # every 10 s (seconds field last)
    late(h, timedelta(seconds=14))
    assert run_ids(h) == [f"s1-{(T0 + timedelta(seconds=10)).isoformat()}"]


def test_a_late_resume_signal_runs_due_times_after_the_resume_only(h):
    h.create(interval=timedelta(seconds=10))
    h.tick()
    h.op("pause_schedule")
    h.now = T0 + timedelta(seconds=35)
    h.op("resume_schedule")  # 10, 20, 30 fell while paused: not caught up
    assert h.s.next_run_at == T0 + timedelta(seconds=40)
    late(h, timedelta(seconds=17))  # handled at 52: 40 and 50 are due
    assert run_ids(h) == [f"s1-{(T0 + timedelta(seconds=50)).isoformat()}"]
    assert h.s.missed_runs == 1


def test_a_late_update_signal_runs_due_times_from_the_update(h):
    h.create(interval=timedelta(hours=1))
    h.tick()
    h.now = T0 + timedelta(seconds=3)
    h.op("update_schedule", _update_json(ScheduleUpdateOptions(interval=timedelta(seconds=10),
                                                               max_catch_up_runs=9)))
    late(h, timedelta(seconds=20))  # handled at 23: 10 and 20 are due (anchored at the creation)
    assert run_ids(h) == [f"s1-{(T0 + timedelta(seconds=s)).isoformat()}" for s in (10, 20)]


def test_a_timing_update_while_paused_leaves_no_next_due_time_until_resumed(h):
    h.create(interval=timedelta(seconds=10))
    h.op("pause_schedule")
    h.op("update_schedule", _update_json(ScheduleUpdateOptions(interval=timedelta(seconds=20))))
    assert h.s.next_run_at is None and h.s.status == ScheduleStatus.PAUSED
    h.now = T0 + timedelta(seconds=5)
    h.op("resume_schedule")
    assert h.s.next_run_at == T0 + timedelta(seconds=20)


def test_a_state_without_a_next_due_time_starts_from_its_last_change(h):
    """A state written by a release that left next_run_at to the first run_schedule signal."""
    h.create(interval=timedelta(seconds=10))
    legacy = json.loads(h.state or "{}")
    legacy["next_run_at"] = None
    h.state = json.dumps(legacy)
    late(h, timedelta(seconds=12))
    assert run_ids(h) == [f"s1-{(T0 + timedelta(seconds=10)).isoformat()}"]


def test_skip_and_buffer_one(h):
    h.create(interval=timedelta(seconds=10), overlap_policy=OverlapPolicy.BUFFER_ONE)
    h.tick()
    h.tick()
    first = f"s1-{(T0 + timedelta(seconds=10)).isoformat()}"
    assert h.starts == [("durable_kafka_schedule_run", first + ":schedule",
                         {"schedule_id": "s1", "orchestration_name": "work", "input": None, "instance_id": first})]
    h.tick()  # still running: buffered
    h.tick()  # and one more: skipped
    s = h.s
    assert s.running == [first] and s.buffered == f"s1-{(T0 + timedelta(seconds=20)).isoformat()}"
    assert s.overlap_skipped == 1 and len(h.starts) == 1
    h.op("run_completed", first)
    assert h.starts[-1][1] == f"s1-{(T0 + timedelta(seconds=20)).isoformat()}:schedule"
    assert h.s.buffered is None


def test_trigger_now_is_outside_the_timeline(h):
    h.create(interval=timedelta(hours=1))
    h.tick()
    out = h.op("trigger_schedule")
    assert out == {"instance_id": f"s1-manual-{T0.isoformat()}"}
    assert h.s.next_run_at == T0 + timedelta(hours=1) and h.s.run_count == 0


def test_start_immediately_if_late(h):
    h.create(interval=timedelta(hours=1), start_at=T0 - timedelta(minutes=30), start_immediately_if_late=True)
    h.tick()
    assert run_ids(h) == [f"s1-{T0.isoformat()}"]
    assert h.s.next_run_at == T0 + timedelta(minutes=30)


def test_end_at_deletes_the_schedule(h):
    h.create(interval=timedelta(seconds=10), end_at=T0 + timedelta(seconds=15))
    h.tick()
    h.tick()
    assert len(h.starts) == 1
    h.now = T0 + timedelta(seconds=21)
    h.op("run_schedule", h.armed[-1][0])
    assert h.state is None and len(h.starts) == 1


def test_operations_on_a_missing_schedule(h):
    for op in ("pause_schedule", "resume_schedule", "trigger_schedule"):
        assert h.op(op) == {"error": "not_found"}
    h.op("run_schedule", "whatever")
    h.op("run_completed", "x")
    assert h.state is None


def test_delete_removes_the_state(h):
    h.create(interval=timedelta(seconds=10))
    h.op("delete")
    assert h.state is None
