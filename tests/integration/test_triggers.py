"""Trigger routes on the real broker: each route kind, decoders, reuse, early events, dead letters."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from durable_kafka import Client, OrchestrationStatus, Worker, triggers
from durable_kafka.errors import SourceTopicMissingError
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec, schema_fingerprint
from durable_kafka.streams.config import admin_config, consumer_config, producer_config

from trigger_app import counter, echo, order_routes, process_order

WAIT = 60


def make_topics(bootstrap: str, *names: str, partitions: int = 3) -> None:
    admin = AdminClient(admin_config(bootstrap))
    for f in admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]).values():
        f.result()
    deadline = time.monotonic() + 30
    while not all(n in admin.list_topics(timeout=10).topics for n in names):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def send(bootstrap: str, topic: str, *records: tuple[Any, Any], headers: Any = None) -> None:
    """Produce (key, value) records; a value that is not bytes/str is sent as JSON."""
    p = Producer(producer_config(bootstrap))
    for key, value in records:
        if value is not None and not isinstance(value, (bytes, str)):
            value = json.dumps(value)
        p.produce(topic, key=key, value=value, headers=headers)
    assert p.flush(30) == 0


def dead_letters(bootstrap: str, hub: Any, expect: int) -> list[ev.DeadLetter]:
    """Read the hub's dead-letter topic until ``expect`` letters arrived (or the wait ends)."""
    codec = Codec.default()
    c = Consumer(consumer_config(bootstrap, f"{hub}.test-dl"))
    c.assign([TopicPartition(hub.topics.deadletter, p, 0) for p in range(hub.partitions)])
    found: list[ev.DeadLetter] = []
    deadline = time.monotonic() + WAIT
    try:
        while len(found) < expect and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                found.append(codec.decode(m.value(), expected=ev.DeadLetter))
    finally:
        c.close()
    return found


def worker_for(hub: Any, tmp_path: Any, *routes: triggers.Route, **kw: Any) -> Worker:
    w = Worker(hub.bootstrap, hub.name, state_dir=str(tmp_path / "state"), partitions=hub.partitions,
               static_membership=False, **kw)
    w.add_orchestrator(process_order)
    w.add_orchestrator(echo)
    w.add_entity(counter)
    for r in routes:
        w.add_trigger(r)
    return w


def output(client: Client, iid: str) -> Any:
    state = client.wait_for_orchestration_completion(iid, timeout=WAIT)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state
    return json.loads(state.serialized_output or "null")


def test_start_and_raise_by_business_key_with_an_event_before_its_instance(hub, tmp_path):
    orders, payments = f"{hub}-orders", f"{hub}-payments"
    make_topics(hub.bootstrap, orders, payments)
    with worker_for(hub, tmp_path, *order_routes(orders, payments)), Client(hub.bootstrap, hub.name) as client:
        # order 2's payment arrives before the order: it waits for the instance
        send(hub.bootstrap, payments, ("2", {"order_id": 2, "amount": 20}))
        time.sleep(0)  # (no timing: the assertion below waits on the outcome)
        send(hub.bootstrap, orders, ("1", {"order_id": 1, "sku": "a"}), ("2", {"order_id": 2, "sku": "b"}))
        send(hub.bootstrap, payments, ("1", {"order_id": 1, "amount": 10}))
        assert output(client, "order-1") == {"order": {"order_id": 1, "sku": "a"}, "paid": 10}
        assert output(client, "order-2") == {"order": {"order_id": 2, "sku": "b"}, "paid": 20}


def test_signal_terminate_suspend_resume_callables_filters_and_decoders(hub, tmp_path):
    src = {k: f"{hub}-{k}" for k in ("sig", "ctl", "text", "bytes", "avro")}
    make_topics(hub.bootstrap, *src.values())
    schema = {"type": "record", "name": "Ping", "namespace": "shop",
              "fields": [{"name": "id", "type": "string"}, {"name": "n", "type": "long"}]}
    avsc = tmp_path / "ping.avsc"
    avsc.write_text(json.dumps(schema))
    routes = [
        triggers.Signal(src["sig"], entity_id=lambda r: f"@counter@{r.key}", operation="add", input="{value.n}",
                        filter=lambda r: r.value.get("n", 0) > 0),
        triggers.Start(src["ctl"], "process_order", instance_id="{value.id}", name="ctl-start",
                       filter=lambda r: r.value["op"] == "start"),
        triggers.Suspend(src["ctl"], instance_id="{value.id}", reason="by {value.op}", name="ctl-suspend",
                         filter=lambda r: r.value["op"] == "suspend"),
        triggers.Resume(src["ctl"], instance_id="{value.id}", name="ctl-resume",
                        filter=lambda r: r.value["op"] == "resume"),
        triggers.Terminate(src["ctl"], instance_id="{value.id}", reason="{value}", name="ctl-terminate",
                           filter=lambda r: r.value["op"] == "terminate"),
        triggers.Start(src["text"], echo, instance_id="text-{key}", input="{value}", decoder="text"),
        triggers.Start(src["bytes"], echo, instance_id=lambda r: f"bytes-{len(r.value)}", input="{key}",
                       decoder="bytes"),
        triggers.Start(src["avro"], echo, instance_id="avro-{value.id}", input="{value.n}",
                       decoder=triggers.AvroDecoder(str(avsc))),
    ]
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), {"id": "x1", "n": 5})
    avro_value = b"\xc3\x01" + schema_fingerprint(schema).to_bytes(8, "little") + buf.getvalue()
    with worker_for(hub, tmp_path, *routes), Client(hub.bootstrap, hub.name) as client:
        send(hub.bootstrap, src["sig"], ("k1", {"n": 2}), ("k1", {"n": 0}), ("k1", {"n": 3}))
        send(hub.bootstrap, src["text"], ("t", "héllo"))
        send(hub.bootstrap, src["bytes"], ("b", b"\x00\x01\x02"))
        send(hub.bootstrap, src["avro"], (None, avro_value))
        send(hub.bootstrap, src["ctl"], ("c", {"op": "start", "id": "c1"}), ("c", {"op": "suspend", "id": "c1"}))
        assert client.wait_for_orchestration_start("c1", timeout=WAIT)
        deadline = time.monotonic() + WAIT
        while client.get_orchestration_state("c1").runtime_status != OrchestrationStatus.SUSPENDED:
            assert time.monotonic() < deadline, "not suspended"
            time.sleep(0.1)
        send(hub.bootstrap, src["ctl"], ("c", {"op": "resume", "id": "c1"}), ("c", {"op": "terminate", "id": "c1"}))
        state = client.wait_for_orchestration_completion("c1", timeout=WAIT)
        assert state.runtime_status == OrchestrationStatus.TERMINATED
        assert json.loads(state.serialized_output) == {"op": "terminate", "id": "c1"}
        assert output(client, "text-t") == "héllo"
        assert output(client, "bytes-3") == "b"
        assert output(client, "avro-x1") == 5
        deadline = time.monotonic() + WAIT
        while (client.get_entity("@counter@k1") is None
               or json.loads(client.get_entity("@counter@k1").serialized_state or "0") != 5):
            assert time.monotonic() < deadline, "counter never reached 5 (the filtered record must not count)"
            time.sleep(0.1)


def test_reuse_policies(hub, tmp_path):
    skip, fail, replace = (f"{hub}-{k}" for k in ("skip", "fail", "replace"))
    make_topics(hub.bootstrap, skip, fail, replace, partitions=1)
    routes = [
        triggers.Start(skip, echo, instance_id="s-{value.id}", input="{value.v}"),
        triggers.Start(fail, echo, instance_id="f-{value.id}", input="{value.v}", reuse="fail", name="failing"),
        triggers.Start(replace, process_order, instance_id="r-{value.id}", input="{value.v}", reuse="replace"),
    ]
    with worker_for(hub, tmp_path, *routes), Client(hub.bootstrap, hub.name) as client:
        send(hub.bootstrap, skip, (None, {"id": 1, "v": "first"}))
        assert output(client, "s-1") == "first"
        send(hub.bootstrap, fail, (None, {"id": 1, "v": "first"}))
        assert output(client, "f-1") == "first"
        send(hub.bootstrap, replace, (None, {"id": 1, "v": "first"}))
        first = client.wait_for_orchestration_start("r-1", timeout=WAIT)
        send(hub.bootstrap, skip, (None, {"id": 1, "v": "second"}))
        send(hub.bootstrap, fail, (None, {"id": 1, "v": "second"}))
        send(hub.bootstrap, replace, (None, {"id": 1, "v": "second"}))
        letters = dead_letters(hub.bootstrap, hub, 1)
        assert [(d.topic, d.offset, d.error_type) for d in letters] == [(fail, 1, "InstanceExistsError")]
        assert "failing" in letters[0].reason
        deadline = time.monotonic() + WAIT
        while json.loads(client.get_orchestration_state("r-1").serialized_input) != "second":
            assert time.monotonic() < deadline, "replace did not start anew"
            time.sleep(0.1)
        assert client.get_orchestration_state("r-1").instance_id == first.instance_id
        # skip: the first run stands (the second record was handled by doing nothing)
        assert output(client, "s-1") == "first" and output(client, "f-1") == "first"


def test_bad_records_go_to_the_dead_letter_topic_and_the_route_goes_on(hub, tmp_path):
    src = f"{hub}-bad"
    make_topics(hub.bootstrap, src, partitions=1)

    def picky(rec: triggers.TriggerRecord) -> Any:
        if rec.value.get("boom"):
            raise RuntimeError("boom")
        return rec.value["v"]

    routes = [triggers.Start(src, echo, instance_id="bad-{value.id}", input=picky, name="picky")]
    with worker_for(hub, tmp_path, *routes), Client(hub.bootstrap, hub.name) as client:
        send(hub.bootstrap, src, (None, b"{not json"), (None, {"v": 1}), (None, {"id": 3, "boom": True}),
             (None, {"id": 4, "v": "ok"}))
        assert output(client, "bad-4") == "ok"
        letters = sorted(dead_letters(hub.bootstrap, hub, 3), key=lambda d: d.offset)
        assert [(d.topic, d.partition, d.offset) for d in letters] == [(src, 0, 0), (src, 0, 1), (src, 0, 2)]
        assert [d.error_type for d in letters] == ["TriggerDecodeError", "TemplateFieldMissingError",
                                                   "RouteCallableError"]
        assert all("picky" in d.reason for d in letters)


def test_a_missing_source_topic_is_a_start_up_error_unless_created(hub, tmp_path):
    route = triggers.Start(f"{hub}-nowhere", echo, instance_id="{key}")
    w = worker_for(hub, tmp_path, route)
    with pytest.raises(SourceTopicMissingError, match="nowhere"):
        w.start()
    w2 = Worker(hub.bootstrap, hub.name, state_dir=str(tmp_path / "s2"), partitions=hub.partitions,
                static_membership=False)
    w2.add_orchestrator(echo)
    w2.add_trigger(route, create_missing=True)
    with w2, Client(hub.bootstrap, hub.name) as client:
        send(hub.bootstrap, route.topic, ("made", {"x": 1}))
        assert client.wait_for_orchestration_completion("made", timeout=WAIT).runtime_status == \
            OrchestrationStatus.COMPLETED


def test_replaying_the_source_topic_creates_no_new_instances(hub, tmp_path):
    src = f"{hub}-replay"
    make_topics(hub.bootstrap, src, partitions=2)
    route = triggers.Start(src, echo, instance_id="rp-{value.id}", input="{value.id}")
    ids = [f"rp-{i}" for i in range(20)]
    with worker_for(hub, tmp_path, route), Client(hub.bootstrap, hub.name) as client:
        send(hub.bootstrap, src, *((str(i), {"id": i}) for i in range(20)))
        executions = {iid: client.wait_for_orchestration_completion(iid, timeout=WAIT).instance_id and
                      _execution(client, iid) for iid in ids}
    from durable_kafka._trigger_runtime import trigger_group

    group = trigger_group(hub.name, [route])
    admin = AdminClient(admin_config(hub.bootstrap))
    from confluent_kafka import ConsumerGroupTopicPartitions

    deadline = time.monotonic() + WAIT
    while True:  # the stopped worker's member leaves the group (no static membership here)
        try:
            admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
                group, [TopicPartition(src, p, 0) for p in range(2)])])[group].result()
            break
        except Exception:  # noqa: BLE001 - group not empty yet
            assert time.monotonic() < deadline
            time.sleep(0.5)
    marker = f"{hub}-marker"
    make_topics(hub.bootstrap, marker, partitions=1)
    w = worker_for(hub, tmp_path, route, triggers.Start(marker, echo, instance_id="marker"))
    with w, Client(hub.bootstrap, hub.name) as client:
        # the replayed records come first on their partitions; the marker shows the worker ran past them
        send(hub.bootstrap, marker, (None, {"x": 1}))
        client.wait_for_orchestration_completion("marker", timeout=WAIT)
        deadline = time.monotonic() + WAIT
        while w._trigger_processor.handler.stats["commands"] < 21:  # 20 replayed + the marker
            assert time.monotonic() < deadline, w._trigger_processor.handler.stats
            time.sleep(0.1)
        assert {iid: _execution(client, iid) for iid in ids} == executions


def _execution(client: Client, iid: str) -> str:
    status = client._current_status(iid)
    assert status is not None
    return str(status.execution_id)
