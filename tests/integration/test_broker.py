"""The broker control itself: up/down are idempotent and storage is formatted only once.

Runs a SECOND broker on free ports with its state in a temporary directory (the session's
``private_broker``, shared with test_broker_restart.py), so the shared broker on 9092 is never
touched. It reuses the assembled jars in the default cache (only the very first assembly on a
machine is slow).
"""

from __future__ import annotations

import base64
import socket
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from durable_kafka.connectors import broker

pytestmark = pytest.mark.timeout(400)


def _port_answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def cfg(private_broker: broker.BrokerConfig) -> broker.BrokerConfig:
    return private_broker


def _produce_consume(bootstrap: str) -> bytes:
    topic = f"roundtrip-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    value = uuid.uuid4().bytes
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=b"k", value=value)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic,
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                return msg.value()
    finally:
        consumer.close()
    return b""


def test_up_down_idempotent_on_a_separate_broker(cfg: broker.BrokerConfig) -> None:
    shared_pid_before = broker.status().pid

    first = broker.up(cfg)
    assert first.running and first.pid is not None
    assert first.bootstrap == f"127.0.0.1:{cfg.port}"
    starts = cfg.log_file.read_text().count("==== start")

    again = broker.up(cfg)
    assert again.running and again.pid == first.pid
    assert cfg.log_file.read_text().count("==== start") == starts  # the second up spawned nothing

    # cluster id: 16 random bytes as URL-safe base64 without padding, and the broker uses it
    cluster_id = cfg.cluster_id_file.read_text().strip()
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    admin = AdminClient({"bootstrap.servers": cfg.bootstrap})
    described = admin.describe_cluster(request_timeout=30).result(timeout=30)
    assert described.cluster_id == cluster_id
    assert [node.port for node in described.nodes] == [cfg.port]

    assert _produce_consume(cfg.bootstrap) != b""
    broker.round_trip(cfg.bootstrap)  # transactional produce, read_committed consume

    assert broker.down(cfg) is True
    assert not broker.status(cfg).running
    assert not _port_answers(cfg.port) and not _port_answers(cfg.controller_port)
    assert not cfg.pid_file.exists()
    assert broker.down(cfg) is False

    # a restart keeps the formatted storage (same cluster, topics still there)
    restarted = broker.up(cfg)
    assert restarted.running and restarted.pid != first.pid
    assert cfg.cluster_id_file.read_text().strip() == cluster_id
    topics = AdminClient({"bootstrap.servers": cfg.bootstrap}).list_topics(timeout=30).topics
    assert broker.PROBE_TOPIC in topics
    # left running: test_broker_restart.py goes on with it (the session stops it at the end)

    assert broker.status().pid == shared_pid_before  # the shared broker was left alone


def test_server_properties_are_single_node(tmp_path: Path) -> None:
    cfg = broker.BrokerConfig(port=29092, controller_port=29093, state_dir=tmp_path)
    props = dict(line.split("=", 1) for line in broker.server_properties(cfg).splitlines()
                 if line and not line.startswith("#"))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr", "share.coordinator.state.topic.replication.factor",
                "num.partitions"):
        assert props[key] == "1", key
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_cluster_ids_are_url_safe_and_never_look_like_options() -> None:
    ids = {broker.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22 and "=" not in cluster_id and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
