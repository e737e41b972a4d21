"""The first divergence is the one reported, even when the history goes on after it."""

from datetime import datetime, timezone

from durable_kafka.processors.executor import OrchestrationExecutor, OrchestratorRegistry
from durable_kafka.streams import events as ev


def changed(ctx, n):
    return (yield ctx.call_activity("triple", input=n))


def test_first_mismatch_is_kept_when_later_scheduling_events_follow():
    registry = OrchestratorRegistry()
    registry.add_orchestrator(changed, name="pipeline")
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    history = [
        ev.OrchestratorStarted(-1, t), ev.ExecutionStarted(-1, t, name="pipeline", execution_id="e", input="1"),
        ev.TaskScheduled(1, t, name="double", input="0"), ev.OrchestratorCompleted(-1, t),
        ev.OrchestratorStarted(-1, t), ev.TaskCompleted(-1, t, task_scheduled_id=1, result="0"),
        ev.TaskScheduled(2, t, name="double", input="0"), ev.OrchestratorCompleted(-1, t),
    ]
    result = OrchestrationExecutor(registry).execute("i", history, [])
    assert result.runtime_status == "FAILED"
    assert result.failure_details.error_type == "durable_kafka.errors.NonDeterminismError"
    assert "at sequence number 1" in result.failure_details.message
    assert "call_activity(name='triple')" in result.failure_details.message
