"""Operators scale by partition: a second worker takes half of the partitions, and when a worker
leaves, the other restores its partitions from the changelog and finishes its instances."""

from __future__ import annotations

import time

import pytest

from durable_kafka import Client, OrchestrationStatus, Worker


def add_one(ctx, x):
    return x + 1


def chain(ctx, n):
    x = 0
    for _ in range(n):
        x = yield ctx.call_activity(add_one, input=x)
    return x


def waiter(ctx, _):
    return (yield ctx.wait_for_external_event("go"))


def _worker(hub, state_dir, worker_id):
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(state_dir), worker_id=worker_id, partitions=hub.partitions)
    w.add_orchestrator(chain)
    w.add_orchestrator(waiter)
    w.add_activity(add_one)
    return w


def _owned(w: Worker) -> set[int]:
    return set(w._orch_processor.owned)


@pytest.mark.hub_partitions(4)
def test_second_worker_takes_half_then_everything_when_the_first_leaves(hub, tmp_path):
    a = _worker(hub, tmp_path / "a", "worker-a").start()
    b = None
    try:
        with Client(hub.bootstrap, hub=hub.name) as c:
            waiting = [c.schedule_new_orchestration(waiter) for _ in range(12)]
            for iid in waiting:
                c.wait_for_orchestration_start(iid, timeout=30)
            assert _owned(a) == set(range(4))

            b = _worker(hub, tmp_path / "b", "worker-b").start()
            deadline = time.monotonic() + 60
            while not (_owned(a) and _owned(b) and _owned(a) | _owned(b) == set(range(4))):
                assert time.monotonic() < deadline, (_owned(a), _owned(b))
                time.sleep(0.1)
            assert len(_owned(a)) == 2 and len(_owned(b)) == 2 and not (_owned(a) & _owned(b))
            # instances started on a continue on whichever worker now owns them
            for i, iid in enumerate(waiting[:6]):
                c.raise_orchestration_event(iid, "go", data=i)
            for i, iid in enumerate(waiting[:6]):
                assert c.wait_for_orchestration_completion(iid, timeout=60).get_output() == i
            runs = [c.schedule_new_orchestration(chain, input=5) for _ in range(8)]
            for iid in runs:
                assert c.wait_for_orchestration_completion(iid, timeout=60).get_output() == 5

            a.stop()  # b restores a's partitions from the changelog
            deadline = time.monotonic() + 60
            while _owned(b) != set(range(4)):
                assert time.monotonic() < deadline, _owned(b)
                time.sleep(0.1)
            for i, iid in enumerate(waiting[6:]):
                c.raise_orchestration_event(iid, "go", data=100 + i)
            for i, iid in enumerate(waiting[6:]):
                state = c.wait_for_orchestration_completion(iid, timeout=60)
                assert state.runtime_status == OrchestrationStatus.COMPLETED
                assert state.get_output() == 100 + i
    finally:
        a.stop()
        if b is not None:
            b.stop()
