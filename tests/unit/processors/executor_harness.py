"""Test harness for the executor: event builders and a tiny in-memory "processor".

:class:`Harness` plays the orchestration processor's part without Kafka: each ``episode``
wraps new events in OrchestratorStarted/OrchestratorCompleted, steps the live orchestration,
records the returned actions as history events (``action_to_event``), and then checks that a
fresh executor replaying the whole recorded history reaches the same state. So every scenario
test also proves its history replays deterministically.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from durable_kafka.processors.actions import action_to_event
from durable_kafka.processors.executor import ExecutionResult, OrchestrationExecutor, OrchestratorRegistry
from durable_kafka.streams import events as ev

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
IID = "inst-1"


def at(seconds: float) -> datetime:
    """T0 plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def os_(ts: datetime = T0) -> ev.OrchestratorStarted:
    return ev.OrchestratorStarted(-1, ts)


def started(name: str, input: Any = None, ts: datetime = T0, parent: str | None = None) -> ev.ExecutionStarted:
    return ev.ExecutionStarted(
        -1, ts, name=name, execution_id="exec-1",
        input=None if input is None else json.dumps(input), parent_instance_id=parent,
    )


def scheduled(seq: int, name: str, ts: datetime = T0) -> ev.TaskScheduled:
    return ev.TaskScheduled(seq, ts, name=name)


def completed(seq: int, result: Any = None, ts: datetime = T0) -> ev.TaskCompleted:
    return ev.TaskCompleted(-1, ts, task_scheduled_id=seq, result=None if result is None else json.dumps(result))


def failed(seq: int, message: str = "boom", error_type: str = "ValueError", ts: datetime = T0) -> ev.TaskFailed:
    details = ev.FailureDetails(message=message, error_type=error_type, stack_trace=f"Traceback: {message}")
    return ev.TaskFailed(-1, ts, task_scheduled_id=seq, failure_details=details)


def timer_created(seq: int, fire_at: datetime, ts: datetime = T0) -> ev.TimerCreated:
    return ev.TimerCreated(seq, ts, fire_at=fire_at)


def timer_fired(seq: int, fire_at: datetime) -> ev.TimerFired:
    return ev.TimerFired(-1, fire_at, timer_id=seq, fire_at=fire_at)


def raised(name: str, data: Any = None, ts: datetime = T0) -> ev.EventRaised:
    return ev.EventRaised(-1, ts, name=name, input=None if data is None else json.dumps(data))


def registry_of(*fns: Any) -> OrchestratorRegistry:
    registry = OrchestratorRegistry()
    for fn in fns:
        registry.add_orchestrator(fn)
    return registry


class Harness:
    """Drives one instance episode by episode, recording history like the processor would."""

    def __init__(self, registry: OrchestratorRegistry, instance_id: str = IID, check_replay: bool = True) -> None:
        self.executor = OrchestrationExecutor(registry)
        self.instance_id = instance_id
        self.live = self.executor.start(instance_id)
        self.history: list[ev.HistoryEvent] = []
        self.now = T0
        self.check_replay = check_replay

    def start(self, name: str, input: Any = None, parent: str | None = None) -> ExecutionResult:
        return self.episode(started(name, input, self.now, parent))

    def episode(self, *events: ev.HistoryEvent, now: datetime | None = None) -> ExecutionResult:
        if now is not None:
            self.now = now
        new = [os_(self.now), *events]
        result = self.live.step(new)
        self.history += new
        self.history += [action_to_event(a, self.now, self.instance_id) for a in result.actions]
        self.history.append(ev.OrchestratorCompleted(-1, self.now))
        if self.check_replay:
            self.assert_replays_same()
        return result

    def assert_replays_same(self) -> None:
        """A fresh executor replaying the recorded history reaches the same state, no divergence."""
        fresh = self.executor.start(self.instance_id)
        fresh.apply(self.history)
        live, again = self.live.execution, fresh.execution
        assert again.failure == live.failure, again.failure
        assert again.status == live.status
        assert again.output == live.output
        assert again.custom_status == live.custom_status
        assert again.pending_actions == {}, f"history lacks events for {again.pending_actions}"
        assert fresh.is_finished == self.live.is_finished
