"""docker/compose.cluster.yaml says what `make cluster-up` runs: same version, same settings.

No container engine runs here, so this is how the compose file is kept true: every broker
setting of connectors/cluster.py (apart from addresses and paths, which differ by design)
must appear in the compose file's shared environment with the same value.
"""

from __future__ import annotations

import re
from pathlib import Path

from durable_kafka.connectors.broker import KAFKA_VERSION
from durable_kafka.connectors.cluster import ClusterConfig, node_properties

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.cluster.yaml"
# where a node listens, advertises and stores differs between loopback ports and containers
PER_HOST = {"listeners", "advertised.listeners", "log.dirs", "controller.quorum.voters", "node.id",
            "listener.security.protocol.map", "inter.broker.listener.name"}


def _compose_env() -> dict[str, str]:
    env = {}
    for match in re.finditer(r"^\s+(KAFKA_[A-Z0-9_]+):\s*(.+?)\s*$", COMPOSE.read_text(), re.MULTILINE):
        env[match.group(1)] = match.group(2).strip('"')
    return env


def test_compose_cluster_matches_the_local_cluster_settings() -> None:
    env = _compose_env()
    local = dict(line.split("=", 1) for line in node_properties(ClusterConfig(), 1).splitlines()
                 if line and not line.startswith("#"))
    mismatched = {}
    for key, value in local.items():
        if key in PER_HOST:
            continue
        name = "KAFKA_" + key.upper().replace(".", "_")
        if env.get(name) != value:
            mismatched[key] = (value, env.get(name))
    assert not mismatched, f"compose.cluster.yaml differs from connectors/cluster.py: {mismatched}"


def test_compose_cluster_runs_the_pinned_version_on_three_voters() -> None:
    text = COMPOSE.read_text()
    assert text.count(f"image: apache/kafka:{KAFKA_VERSION}") == 3
    assert 'KAFKA_CONTROLLER_QUORUM_VOTERS: "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"' in text
    heap = " ".join(ClusterConfig().node(1).java_heap)
    assert f'KAFKA_HEAP_OPTS: "{heap}"' in text
