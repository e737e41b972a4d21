"""The three-node cluster's layout and per-node settings (no broker started)."""

from __future__ import annotations

import pytest

from durable_kafka.connectors.cluster import ClusterConfig, node_properties
from durable_kafka.errors import BrokerError


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_ports_stay_in_the_cluster_range_and_never_collide(tmp_path) -> None:
    cfg = ClusterConfig(state_dir=tmp_path)
    ports = [p for n in cfg.node_ids for p in (cfg.node(n).port, cfg.node(n).controller_port)]
    assert sorted(ports) == list(range(9292, 9298))
    assert cfg.bootstrap == "127.0.0.1:9292,127.0.0.1:9293,127.0.0.1:9294"
    assert len({cfg.node(n).state_dir for n in cfg.node_ids}) == 3
    with pytest.raises(BrokerError):
        cfg.node(4)


def test_every_node_votes_in_one_quorum_with_three_copies_of_internal_topics(tmp_path) -> None:
    cfg = ClusterConfig(state_dir=tmp_path)
    nodes = {n: _props(node_properties(cfg, n)) for n in cfg.node_ids}
    assert {p["node.id"] for p in nodes.values()} == {"1", "2", "3"}
    assert {p["controller.quorum.voters"] for p in nodes.values()} == {
        "1@127.0.0.1:9295,2@127.0.0.1:9296,3@127.0.0.1:9297"}
    for p in nodes.values():
        assert p["process.roles"] == "broker,controller"
        assert p["offsets.topic.replication.factor"] == p["transaction.state.log.replication.factor"] == "3"
        assert p["transaction.state.log.min.isr"] == p["min.insync.replicas"] == "2"
        assert p["log.dirs"].startswith(str(tmp_path))
    assert nodes[2]["listeners"] == "PLAINTEXT://127.0.0.1:9293,CONTROLLER://127.0.0.1:9296"


def test_a_smaller_cluster_keeps_writes_possible_with_a_node_down(tmp_path) -> None:
    props = _props(node_properties(ClusterConfig(nodes=2, state_dir=tmp_path), 1))
    assert props["offsets.topic.replication.factor"] == "2"
    assert props["min.insync.replicas"] == "1"
