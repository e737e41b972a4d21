"""The examples' orchestrations, activities and entities, unit-tested without a broker.

``make demo``, ``make aggregator`` and the HTTP example run them on Kafka; here the same code
runs on :class:`durable_kafka.testing.InMemoryBackend` in milliseconds (the demo's timer is an
hour of virtual time), which is how users are meant to unit-test theirs (docs/TESTING.md).
"""

from __future__ import annotations

from datetime import timedelta

from durable_kafka import OrchestrationStatus
from durable_kafka.entities import EntityInstanceId
from durable_kafka.testing import InMemoryBackend, Replayer
from examples import aggregator, demo, http_hello


def test_demo_orchestration():
    with InMemoryBackend() as backend:
        worker, client = backend.worker(), backend.client()
        worker.add_orchestrator(demo.demo_orchestrator)
        for fn in (demo.ActivityFunction1, demo.ActivityFunction2, demo.FanOutActivity):
            worker.add_activity(fn)
        with worker:
            start = backend.current_time
            iid = client.schedule_new_orchestration(demo.demo_orchestrator, input=3600)
            state = client.wait_for_orchestration_completion(iid)
            assert state.runtime_status == OrchestrationStatus.COMPLETED
            assert state.get_output() == "Orchestration completed."
            assert state.get_custom_status() == {"step": "done", "fan_in": 30}
            assert backend.current_time - start == timedelta(hours=1)
            history = client.get_orchestration_history(iid)
        Replayer(orchestrators=[demo.demo_orchestrator]).replay(history)


def test_aggregator_entity_and_report():
    with InMemoryBackend() as backend:
        worker, client = backend.worker(), backend.client()
        worker.add_entity(aggregator.Aggregator)
        worker.add_orchestrator(aggregator.report)
        with worker:
            sensor = EntityInstanceId("aggregator", "s1")
            for value in (1.0, 2.0, 6.0):
                client.signal_entity(sensor, "add", value)
            summary = client.get_entity(sensor).get_state(dict)
            assert (summary["count"], summary["min"], summary["max"]) == (3, 1.0, 6.0)
            iid = client.schedule_new_orchestration(aggregator.report, input="s1")
            assert client.wait_for_orchestration_completion(iid).get_output() == "s1: 3 readings, mean 3.00"
            client.signal_entity(sensor, "reset")
            assert client.get_entity(sensor) is None


def test_http_hello_orchestrations():
    with InMemoryBackend(hub="hello") as backend:
        worker, client = backend.worker(), backend.client()
        worker.add_orchestrator(http_hello.hello_cities)
        worker.add_orchestrator(http_hello.approval)
        worker.add_activity(http_hello.say_hello)
        with worker:
            iid = client.schedule_new_orchestration(http_hello.hello_cities, input=["Lima"])
            assert client.wait_for_orchestration_completion(iid).get_output() == ["Hello Lima!"]
            pending = client.schedule_new_orchestration(http_hello.approval)
            client.raise_orchestration_event(pending, "Approval", data=True)
            assert client.wait_for_orchestration_completion(pending).get_output() == {"approved": True}
