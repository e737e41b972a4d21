"""InstanceStep on plain messages: a state and a batch in, records and a state out; no broker.

Every test also checks the applier property: folding the history the step recorded with the
applier table gives the same open work and status as the live step holds.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from durable_kafka import task
from durable_kafka.processors import store as keys
from durable_kafka.processors.actions import action_to_event
from durable_kafka.processors.executor import OrchestrationExecutor, OrchestratorRegistry
from durable_kafka.processors.instance import InstanceStep, Loaded, Outcome, Topics
from durable_kafka.processors.instance_state import InstanceState, fold_history, recover_open_work
from durable_kafka.streams import events as ev
from durable_kafka.streams.status import OrchestrationStatus as S

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)
IID = "order-1"
TOPICS = Topics("orch", "acts", "ents", "hist", "status", "replies")


def two_activities(ctx: task.OrchestrationContext, _: Any) -> Any:
    a = yield ctx.call_activity("first")
    b = yield ctx.call_activity("second", input=a)
    return [a, b]


def counts_down(ctx: task.OrchestrationContext, n: int) -> Any:
    """Continues as new without awaiting anything until n reaches 0 (several executions in one step)."""
    if n > 0:
        ctx.continue_as_new(n - 1)
        return None
    return "done"
    yield  # a generator, as orchestrators are


def waits_a_minute(ctx: task.OrchestrationContext, _: Any) -> Any:
    yield ctx.create_timer(timedelta(minutes=1))
    return "late"


class Engine:
    """The processor's part, in memory: one Loaded kept between steps, history in a list."""

    def __init__(self, *fns: Any) -> None:
        registry = OrchestratorRegistry()
        for fn in fns:
            registry.add_orchestrator(fn)
        self.executor = OrchestrationExecutor(registry)
        self.loaded = Loaded(instance_id=IID, partition=0)
        self.history: list[ev.HistoryRecord] = []
        self.batches: list[ev.HistoryBatch] = []  # the history records of the last step
        self.seq = 0

    def msg(self, body: Any, msg_id: str | None = None) -> ev.OrchestratorMessage:
        self.seq += 1
        return ev.OrchestratorMessage(id=msg_id or f"m{self.seq}", instance_id=IID, sent_at=NOW, body=body)

    def step(self, *msgs: ev.OrchestratorMessage, timers: tuple[ev.TimerRecord, ...] = (),
             now: datetime = NOW) -> Outcome:
        s = InstanceStep(loaded=self.loaded, instance_id=IID, now=now, topics=TOPICS, executor=self.executor,
                         load_history=lambda i, e: [r.event for r in self.history if r.execution_id == e],
                         action_to_event=action_to_event)
        s.apply_messages(list(msgs))
        for t in timers:
            s.apply_timer(t)
        out = s.finish()
        self.batches = [p.value for p in out.produce if p.topic == "hist"]
        self.history += [r for batch in self.batches for r in ev.history_records(batch)]
        return out

    def execution(self) -> str:
        assert self.loaded.header is not None
        return self.loaded.header.execution_id

    def refold(self) -> InstanceState:
        return fold_history(InstanceState(instance_id=IID), [r.event for r in self.history])


def start(name: str, **kw: Any) -> ev.StartOrchestration:
    return ev.StartOrchestration(name=name, execution_id="x1", **kw)


def result(e: Engine, task_id: int, value: Any) -> ev.ActivityResult:
    return ev.ActivityResult(execution_id=e.execution(), task_id=task_id, result=json.dumps(value))


def produced(out: Outcome, topic: str) -> list[Any]:
    return [p.value for p in out.produce if p.topic == topic]


def assert_fold_matches(e: Engine) -> None:
    folded = e.refold()
    assert folded.status == e.loaded.status
    assert (folded.open_tasks, folded.open_timers, folded.open_requests, folded.locks) == (
        e.loaded.open_tasks, e.loaded.open_timers, e.loaded.open_requests, e.loaded.locks)
    assert recover_open_work(IID, [r.event for r in e.history]).open_tasks == e.loaded.open_tasks


def test_start_schedules_the_first_activity_and_reports_running() -> None:
    e = Engine(two_activities)
    out = e.step(e.msg(start("two_activities"), "start-1"))
    (req,) = produced(out, "acts")
    assert (req.name, req.task_id) == ("first", 1)
    assert [type(r.event).__name__ for r in e.history] == [
        "OrchestratorStarted", "ExecutionStarted", "TaskScheduled", "OrchestratorCompleted"]
    (status,) = produced(out, "status")
    assert status.runtime_status is S.RUNNING
    assert e.loaded.open_tasks == {1}
    assert out.puts[keys.instance_key(IID)] is e.loaded.header
    assert_fold_matches(e)


def test_a_result_delivered_twice_in_one_batch_completes_the_task_once() -> None:
    e = Engine(two_activities)
    e.step(e.msg(start("two_activities")))
    e.step(e.msg(result(e, 1, "a")), e.msg(result(e, 1, "a")))
    kinds = [type(r.event).__name__ for r in e.history]
    assert kinds.count("TaskCompleted") == 1
    assert e.loaded.open_tasks == {2}
    assert_fold_matches(e)
    e.step(e.msg(result(e, 2, "b")))
    assert e.loaded.status is S.COMPLETED
    assert e.loaded.header is not None and json.loads(e.loaded.header.output or "") == ["a", "b"]
    assert_fold_matches(e)


def test_suspend_then_terminate_in_one_batch_ends_terminated() -> None:
    e = Engine(two_activities)
    e.step(e.msg(start("two_activities")))
    out = e.step(e.msg(ev.SuspendOrchestration(reason="pause")),
                 e.msg(ev.TerminateOrchestration(output='"stop"', recursive=False)))
    assert e.loaded.status is S.TERMINATED
    assert produced(out, "status")[-1].runtime_status is S.TERMINATED
    assert_fold_matches(e)


def test_timer_index_written_and_removed_when_the_timer_fires() -> None:
    e = Engine(waits_a_minute)
    out = e.step(e.msg(start("waits_a_minute")))
    (timer_key,) = [k for k in out.puts if k.startswith(keys.TIMER_PREFIX)]
    record = out.puts[timer_key]
    assert e.loaded.open_timers == {1: record.fire_at.timestamp() * 1000}
    assert_fold_matches(e)
    e.step(timers=(record, record))  # a timer seen twice fires once
    assert [type(r.event).__name__ for r in e.history].count("TimerFired") == 1
    assert e.loaded.status is S.COMPLETED and e.loaded.open_timers == {}
    assert_fold_matches(e)


def test_a_start_due_within_the_next_millisecond_waits_for_its_time() -> None:
    """start_at travels as timestamp-millis; a start record handled 0.4 ms before it is not yet due."""
    e = Engine(two_activities)
    start_at = NOW + timedelta(milliseconds=1)
    out = e.step(e.msg(start("two_activities", scheduled_start_at=start_at)),
                 now=NOW + timedelta(microseconds=600))
    assert e.loaded.status is S.PENDING and e.history == []
    (timer_key,) = [k for k in out.puts if k.startswith(keys.TIMER_PREFIX)]
    record = out.puts[timer_key]
    assert keys.due_ms_of(timer_key) == start_at.timestamp() * 1000
    e.step(timers=(record,), now=start_at)  # the processor fires it once now_ms reaches its due ms
    assert e.loaded.status is S.RUNNING
    assert e.history[0].event.timestamp >= start_at
    assert_fold_matches(e)


def test_a_start_due_now_starts_at_once() -> None:
    e = Engine(two_activities)
    e.step(e.msg(start("two_activities", scheduled_start_at=NOW)))
    assert e.loaded.status is S.RUNNING and e.history[0].event.timestamp == NOW


def test_a_duplicate_message_id_is_dropped() -> None:
    e = Engine(two_activities)
    e.step(e.msg(start("two_activities")))
    first = e.msg(result(e, 1, "a"), "dup")
    e.step(first)
    before = len(e.history)
    e.step(e.msg(result(e, 1, "a"), "dup"))
    assert len(e.history) == before


def test_a_step_writes_its_history_as_one_batch_record_under_its_first_index() -> None:
    """D20: one HistoryBatch per step, in the store and on the history topic, not one per event."""
    e = Engine(two_activities)
    out = e.step(e.msg(start("two_activities"), "start-1"))
    (batch,) = e.batches
    assert (batch.index, len(batch.events), batch.id) == (0, 4, f"{IID}/x1/0+4")
    history_puts = {k: v for k, v in out.puts.items() if k.startswith(keys.history_prefix(IID))}
    assert history_puts == {keys.history_key(IID, "x1", 0): batch}
    out = e.step(e.msg(result(e, 1, "one")))
    (batch,) = e.batches
    assert (batch.index, [type(x).__name__ for x in batch.events]) == (
        4, ["OrchestratorStarted", "TaskCompleted", "TaskScheduled", "OrchestratorCompleted"])
    assert [r.index for r in e.history] == list(range(8))
    assert [r.id for r in e.history][4:6] == [f"{IID}/x1/4", f"{IID}/x1/5"]


def test_continue_as_new_tombstones_the_old_executions_batches_and_starts_a_new_batch() -> None:
    e = Engine(counts_down)
    out = e.step(e.msg(start("counts_down", input="2"), "start-1"))
    first, second, third = e.batches  # one step: three executions, each its own batch
    assert [b.execution_id for b in (first, second)] != [third.execution_id] * 2
    for old in (first, second):
        assert out.puts[keys.history_key(IID, old.execution_id, 0)] is None
    assert out.puts[keys.history_key(IID, third.execution_id, 0)] is third
