"""Work routed to the workers that host it (docs/ROUTING.md), on the real broker.

Services run as separate worker processes on one hub (``routing_app``): billing hosts
``charge`` and ``count_me``, shipping hosts ``ship``; the orchestrators run in this process.
Each execution is recorded in a file, so the tests count executions per request across
processes: exactly one per request, in the process that hosts the activity.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from durable_kafka import Client, OrchestrationStatus, Worker
from durable_kafka.errors import WorkItemFilterError
from durable_kafka.streams.registrations import RegistrationView

from routing_app import fan, order_flow  # tests/integration is on sys.path (rootdir-style tests)
from sizes import sized  # tests/ is on sys.path (rootdir conftest)

ROOT = Path(__file__).resolve().parents[2]


class Service:
    """One worker subprocess of routing_app (stdout to a file, so it never blocks on a pipe)."""

    def __init__(self, hub, tmp_path: Path, role: str, worker_id: str, log: Path, threads: int = 4,
                 while_starting: Callable[[], object] | None = None) -> None:
        self.worker_id = worker_id
        self.output = tmp_path / f"{worker_id}.out"
        env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": hub.bootstrap, "DK_ROUTING_HUB": hub.name,
               "DK_ROUTING_STATE": str(tmp_path / worker_id), "DK_ROUTING_ID": worker_id,
               "DK_ROUTING_ROLE": role, "DK_ROUTING_LOG": str(log), "DK_ROUTING_THREADS": str(threads),
               "DK_ROUTING_PARTITIONS": str(hub.partitions)}
        with open(self.output, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "durable_kafka", "worker", "tests.integration.routing_app:make_worker"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while "running" not in self.output.read_text():
            assert self.proc.poll() is None, f"{worker_id} exited: {self.output.read_text()}"
            assert time.monotonic() < deadline, f"{worker_id} did not start: {self.output.read_text()}"
            if while_starting is not None:
                while_starting()
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _executions(log: Path) -> list[tuple[str, str, str, str]]:
    """(role, worker id, activity, key) per execution, in the order they were recorded."""
    if not log.exists():
        return []
    return [tuple(line.split("\t")) for line in log.read_text().splitlines()]  # type: ignore[misc]


def _orchestration_worker(hub, tmp_path: Path) -> Worker:
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "orchestrations"), worker_id="orchestrations",
               partitions=hub.partitions, static_membership=False)
    w.add_orchestrator(order_flow)
    w.add_orchestrator(fan)
    return w


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_each_request_reaches_its_host_and_waits_while_none_is_live(hub, tmp_path, caplog):
    log = tmp_path / "executions.log"
    caplog.set_level(logging.WARNING, logger="durable_kafka.processors.routing")
    orchestrations = _orchestration_worker(hub, tmp_path).start()
    billing = Service(hub, tmp_path, "billing", "billing-1", log)
    shipping = None
    try:
        with Client(hub.bootstrap, hub=hub.name) as c:
            first = c.schedule_new_orchestration(order_flow, input={"amount": 5, "item": "book"})
            # charge runs at billing; nobody hosts ship yet: the request waits, the instance runs on
            _wait_for(lambda: any("'ship'" in r.getMessage() and "no live worker" in r.getMessage()
                                  for r in caplog.records), 60, "no log line names the activity without a host")
            assert c.get_orchestration_state(first).runtime_status == OrchestrationStatus.RUNNING
            assert [(role, name) for role, _w, name, _k in _executions(log)] == [("billing", "charge")]

            shipping = Service(hub, tmp_path, "shipping", "shipping-1", log)
            state = c.wait_for_orchestration_completion(first, timeout=60)
            assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
            assert state.get_output() == {"paid": 5, "sent": "shipped book"}

            later = [c.schedule_new_orchestration(order_flow, input={"amount": i, "item": f"item-{i}"})
                     for i in range(10)]
            for i, iid in enumerate(later):
                state = c.wait_for_orchestration_completion(iid, timeout=60)
                assert state.get_output() == {"paid": i, "sent": f"shipped item-{i}"}, state.failure_details

        runs = _executions(log)
        # every request ran once, and only in the service that hosts its activity
        assert Counter((name, key) for _r, _w, name, key in runs) == {
            (name, iid): 1 for iid in [first, *later] for name in ("charge", "ship")}
        assert {(role, name) for role, _w, name, _k in runs} == {("billing", "charge"), ("shipping", "ship")}

        view = RegistrationView(hub.bootstrap, hub.topics.workers).start()
        try:
            assert view.wait_caught_up(30)
            live = view.live()
            assert live["billing-1"].activities == ["charge", "count_me"]
            assert live["shipping-1"].activities == ["ship"]
            assert live["orchestrations"].orchestrations == ["fan", "order_flow"]
            assert live["orchestrations"].activities == []
            assert view.hosts_of_activity("ship") == ["shipping-1"]
        finally:
            view.stop()
    finally:
        for service in (billing, shipping):
            if service is not None:
                service.stop()
        orchestrations.stop()


@pytest.mark.slow
@pytest.mark.chaos
def test_scale_one_set_1_2_1_under_load_loses_and_doubles_nothing(hub, tmp_path):
    """billing-1 alone, then billing-2 joins (1 -> 2) and takes a share, then leaves (2 -> 1) with
    requests still waiting; every request runs exactly once. The load is kept topped up to
    ``backlog`` waiting requests until the scale-in, so each scale event happens under load however
    long a worker takes to start (or to leave), and the run ends soon after it. Full size
    (``make chaos``): 600 requests queued up front."""
    log = tmp_path / "executions.log"
    orchestrations = _orchestration_worker(hub, tmp_path).start()
    services = [Service(hub, tmp_path, "billing", "billing-1", log, threads=2)]
    width, backlog = 10, 120  # requests of 0.1 s on 2 threads: ~20/s for one worker, a backlog of ~6 s
    ids: list[str] = []
    try:
        with Client(hub.bootstrap, hub=hub.name) as c:
            def schedule() -> None:
                ids.append(c.schedule_new_orchestration(fan, input=width, instance_id=f"fan-{len(ids)}",
                                                        wait_for_acceptance=False))

            def top_up() -> None:  # keeps ``backlog`` requests waiting (scheduled, not yet run)
                while len(ids) * width - len(_executions(log)) < backlog:
                    schedule()

            for _ in range(sized(60, 6)):
                schedule()
            _wait_for(lambda: top_up() or len(_executions(log)) >= 40, 60, "billing-1 does not run the load")
            services.append(Service(hub, tmp_path, "billing", "billing-2", log, threads=2,
                                    while_starting=top_up))  # 1 -> 2
            _wait_for(lambda: top_up() or sum(w == "billing-2" for _r, w, _n, _k in _executions(log)) >= 20, 60,
                      "billing-2 takes no share of the load")
            top_up()
            services[1].stop()  # 2 -> 1, with requests still waiting
            done_at_scale_in = len(_executions(log))
            assert done_at_scale_in < len(ids) * width, "the load ended before the scale-in; the test proves nothing"
            for iid in ids:
                state = c.wait_for_orchestration_completion(iid, timeout=180)
                assert state.runtime_status == OrchestrationStatus.COMPLETED, (iid, state.failure_details)
                assert state.get_output() == sum(range(width))
    finally:
        for service in services:
            service.stop()
        orchestrations.stop()
    runs = _executions(log)
    per_request = Counter(key for _r, _w, name, key in runs if name == "count_me")
    assert set(per_request) == {f"fan-{i}/{j}" for i in range(len(ids)) for j in range(width)}  # nothing lost
    assert [k for k, count in per_request.items() if count > 1] == []  # nothing doubled
    by_worker = Counter(w for _r, w, _n, _k in runs)
    assert by_worker["billing-1"] > 0 and by_worker["billing-2"] > 0
    assert len(runs) > done_at_scale_in  # billing-1 finished what billing-2 left
    print(f"\n1 -> 2 -> 1: {len(ids) * width} requests, {done_at_scale_in} run at the scale-in, by worker {dict(by_worker)}")


def test_cleared_filters_take_every_request_and_fail_what_they_cannot_run(hub, tmp_path):
    """``use_work_item_filters(None)``: durabletask's "no filters", the single-service behaviour."""
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "all"), worker_id="all",
               partitions=hub.partitions, static_membership=False)
    w.add_orchestrator(order_flow)
    w.add_activity(lambda ctx, order: {"charged": order["amount"]}, name="charge")
    w.use_work_item_filters(None)
    with w, Client(hub.bootstrap, hub=hub.name) as c:
        iid = c.schedule_new_orchestration(order_flow, input={"amount": 1, "item": "x"})
        state = c.wait_for_orchestration_completion(iid, timeout=90)
        assert state.runtime_status == OrchestrationStatus.FAILED
        assert "no activity named 'ship' is registered" in state.failure_details.message


def test_workers_whose_orchestrators_or_entities_conflict_refuse_to_start(hub, tmp_path):
    def counter(ctx, _input=None):
        ctx.set_state((ctx.get_state(int) or 0) + 1)

    first = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "a"), worker_id="a",
                   partitions=hub.partitions, static_membership=False)
    first.add_orchestrator(order_flow)
    first.add_entity(counter)
    with first:
        other_orchestrators = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "b"), worker_id="b",
                                     partitions=hub.partitions)
        other_orchestrators.add_orchestrator(fan)
        with pytest.raises(WorkItemFilterError, match="order_flow.*live worker a|differ both ways"):
            other_orchestrators.start()
        assert not other_orchestrators.is_running

        other_entities = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "c"), worker_id="c",
                                partitions=hub.partitions)
        other_entities.add_entity(lambda ctx, _input=None: None, name="account")
        with pytest.raises(WorkItemFilterError, match="entities"):
            other_entities.start()
        assert not other_entities.is_running


def test_a_worker_restarted_with_other_activities_serves_them(hub, tmp_path):
    """Static membership keeps a restarted member's old assignment; a new activity set must not.

    Measured before the fix: a worker restarted within the session timeout with the same id but
    other activities kept the partitions of its old activity's topic and never got the new one.
    """
    from confluent_kafka import Producer

    from durable_kafka.streams.codec import Codec
    from durable_kafka.streams.config import producer_config
    from durable_kafka.streams.events import ActivityRequest

    ran: list[tuple[str, int]] = []
    first = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "s"), worker_id="same",
                   partitions=hub.partitions)  # static membership (the default)
    first.add_activity(lambda ctx, x: ran.append(("old", x)), name="old_activity")
    first.start()
    first.stop()
    second = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "s"), worker_id="same",
                    partitions=hub.partitions)
    second.add_activity(lambda ctx, x: ran.append(("new", x)), name="new_activity")
    with second:
        request = ActivityRequest(id="i/e/1", instance_id="i", execution_id="e", task_id=1, name="new_activity",
                                  input="7")
        producer = Producer(producer_config(hub.bootstrap))
        producer.produce(hub.topics.activity_topic("new_activity"), key=b"i", value=Codec.default().encode(request))
        assert producer.flush(30) == 0
        _wait_for(lambda: ran, 60, "the restarted worker does not read its new activity's topic")
    assert ran == [("new", 7)]
