"""Completion routes: one record per instance that ends, on the real broker, exactly once."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from durable_kafka import Client, OrchestrationStatus, Worker, triggers
from durable_kafka.errors import InvalidRouteError, SourceTopicMissingError
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import consumer_config

from test_triggers import make_topics
from trigger_app import echo, process_order

WAIT = 60


def fails(ctx: Any, _: Any) -> Any:
    raise ValueError("no stock")
    yield  # a generator: orchestrators are


def read_all(bootstrap: str, topic: str, expect: int, settle: float = 2.0) -> list[tuple[bytes, bytes]]:
    """Committed records of a one-partition topic: until ``expect`` arrived, then ``settle`` more."""
    c = Consumer(consumer_config(bootstrap, f"outputs-{time.monotonic_ns()}"))
    c.assign([TopicPartition(topic, 0, 0)])
    out: list[tuple[bytes, bytes]] = []
    deadline, quiet_until = time.monotonic() + WAIT, None
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                out.append((m.key(), m.value()))
            if len(out) >= expect:
                quiet_until = quiet_until or time.monotonic() + settle
                if time.monotonic() > quiet_until:
                    break
    finally:
        c.close()
    return out


def test_each_ended_instance_is_published_once_in_the_chosen_format(hub, tmp_path):
    json_topic, avro_topic = f"{hub}.out-json", f"{hub}.out-avro"
    make_topics(hub.bootstrap, json_topic, avro_topic, partitions=1)
    w = Worker(hub.bootstrap, hub.name, state_dir=str(tmp_path / "state"), partitions=hub.partitions)
    for o in (echo, process_order, fails):
        w.add_orchestrator(o)
    w.add_output(triggers.PublishCompletion(json_topic))
    w.add_output(triggers.PublishCompletion(avro_topic, orchestrators=[echo], format="avro"))
    with w, Client(hub.bootstrap, hub=hub.name) as c:
        done = c.schedule_new_orchestration(echo, input={"n": 1}, instance_id="o-done")
        failed = c.schedule_new_orchestration(fails, instance_id="o-failed")
        stopped = c.schedule_new_orchestration(process_order, input="x", instance_id="o-stopped")
        waiting = c.schedule_new_orchestration(process_order, input="y", instance_id="o-waiting")
        c.wait_for_orchestration_completion(done, timeout=WAIT)
        c.wait_for_orchestration_completion(failed, timeout=WAIT)
        c.wait_for_orchestration_start(stopped, timeout=WAIT)
        c.terminate_orchestration(stopped, output="enough")
        c.wait_for_orchestration_completion(stopped, timeout=WAIT)
        # an event for an instance that already ended changes nothing and publishes nothing
        c.raise_orchestration_event(stopped, "paid", data=1)
        c.wait_for_orchestration_start(waiting, timeout=WAIT)
        records = read_all(hub.bootstrap, json_topic, expect=3)
        by_id = {k.decode(): json.loads(v) for k, v in records}
        assert len(records) == 3 and set(by_id) == {"o-done", "o-failed", "o-stopped"}  # not the waiting one
        assert by_id["o-done"]["runtimeStatus"] == "Completed" and by_id["o-done"]["output"] == {"n": 1}
        assert by_id["o-done"]["input"] == {"n": 1} and by_id["o-done"]["name"] == "echo"
        assert by_id["o-done"]["instanceId"] == "o-done" and by_id["o-done"]["createdTime"]
        assert by_id["o-failed"]["runtimeStatus"] == "Failed"
        assert "no stock" in by_id["o-failed"]["failureDetails"]["errorMessage"]
        assert by_id["o-stopped"]["runtimeStatus"] == "Terminated" and by_id["o-stopped"]["output"] == "enough"
        avro = read_all(hub.bootstrap, avro_topic, expect=1)
        assert len(avro) == 1
        status = Codec.default().decode(avro[0][1], expected=ev.InstanceStatus)
        assert status.instance_id == "o-done" and status.runtime_status == OrchestrationStatus.COMPLETED
        # a restarted instance ends, and is published, again
        c.restart_orchestration(done)
        deadline = time.monotonic() + WAIT
        while len(read_all(hub.bootstrap, json_topic, expect=4, settle=0.5)) < 4:
            assert time.monotonic() < deadline
        assert w.errors() == []


def test_output_routes_are_checked_when_declared_and_at_start(hub, tmp_path):
    with pytest.raises(InvalidRouteError, match="format"):
        triggers.PublishCompletion("t", format="xml")
    with pytest.raises(InvalidRouteError, match="orchestrators"):
        triggers.PublishCompletion("t", orchestrators="echo")
    w = Worker(hub.bootstrap, hub.name, state_dir=str(tmp_path / "state"), partitions=hub.partitions)
    w.add_orchestrator(echo)
    with pytest.raises(InvalidRouteError, match="PublishCompletion"):
        w.add_output(triggers.Start(f"{hub}.x", echo, instance_id="{key}"))
    w.add_output(triggers.PublishCompletion(f"{hub}.missing-output"))
    with pytest.raises(SourceTopicMissingError, match="output topic"):
        w.start()
