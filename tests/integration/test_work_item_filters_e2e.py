"""Work-item filters as durabletask's own e2e tests use them, on the real broker.

The durabletask style: enter an empty worker, register, choose filters, then ``start()``. What
explicit filters leave out is not processed: an orchestration stays PENDING, an entity's
operation never runs.
"""

from __future__ import annotations

import time

from durable_kafka import (
    ActivityWorkItemFilter,
    Client,
    EntityWorkItemFilter,
    OrchestrationStatus,
    OrchestrationWorkItemFilter,
    WorkItemFilters,
    Worker,
    task,
)
from durable_kafka.entities import DurableEntity, EntityInstanceId


def plus_one(_, value):
    return value + 1


def with_activity(ctx, start):
    return (yield ctx.call_activity(plus_one, input=start))


def other(ctx, _):
    return "other"


def _worker(hub, tmp_path, name):
    return Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / name), partitions=hub.partitions)


def test_auto_filters_and_cleared_filters_process_everything(hub, tmp_path):
    for n, filters in enumerate(("auto", None)):
        with _worker(hub, tmp_path, f"w{n}") as w:
            w.add_orchestrator(with_activity)
            w.add_activity(plus_one)
            if filters == "auto":
                w.use_work_item_filters()
            else:
                w.use_work_item_filters()
                w.use_work_item_filters(None)
            w.start()
            with Client(hub.bootstrap, hub=hub.name) as c:
                state = c.wait_for_orchestration_completion(c.schedule_new_orchestration(with_activity, input=5),
                                                            timeout=60)
        assert state.runtime_status == OrchestrationStatus.COMPLETED and state.serialized_output == "6"


def test_non_matching_orchestrator_is_not_processed(hub, tmp_path):
    with _worker(hub, tmp_path, "w") as w:
        w.add_orchestrator(with_activity)
        w.add_orchestrator(other)
        w.add_activity(plus_one)
        w.use_work_item_filters(WorkItemFilters(
            orchestrations=[OrchestrationWorkItemFilter(name=task.get_name(other))],
            activities=[ActivityWorkItemFilter(name=task.get_name(plus_one))],
        ))
        w.start()
        with Client(hub.bootstrap, hub=hub.name) as c:
            held = c.schedule_new_orchestration(with_activity, input=1)
            done = c.wait_for_orchestration_completion(c.schedule_new_orchestration(other), timeout=60)
            assert done.runtime_status == OrchestrationStatus.COMPLETED
            assert done.serialized_output == '"other"'
            state = c.get_orchestration_state(held)
            assert state is not None and state.runtime_status == OrchestrationStatus.PENDING

    # a worker whose filters take it (here: none) runs the held instance
    with _worker(hub, tmp_path, "w2") as w2:
        w2.add_orchestrator(with_activity)
        w2.add_orchestrator(other)
        w2.add_activity(plus_one)
        w2.start()
        with Client(hub.bootstrap, hub=hub.name) as c:
            state = c.wait_for_orchestration_completion(held, timeout=90)
    assert state.runtime_status == OrchestrationStatus.COMPLETED and state.serialized_output == "2"


def test_non_matching_entity_is_not_processed(hub, tmp_path):
    ran: list[str] = []

    class AllowedEntity(DurableEntity):
        def ping(self, _):
            ran.append("allowed")

    class BlockedEntity(DurableEntity):
        def ping(self, _):
            ran.append("blocked")

    with _worker(hub, tmp_path, "w") as w:
        w.add_entity(AllowedEntity)
        w.add_entity(BlockedEntity)
        w.use_work_item_filters(WorkItemFilters(entities=[EntityWorkItemFilter(name="allowedentity")]))
        w.start()
        with Client(hub.bootstrap, hub=hub.name) as c:
            c.signal_entity(EntityInstanceId("allowedentity", "k1"), "ping")
            c.signal_entity(EntityInstanceId("blockedentity", "k1"), "ping")
            deadline = time.monotonic() + 30
            while "allowed" not in ran and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1)  # the blocked signal went in at the same time: give it its chance to run
    assert ran == ["allowed"]
