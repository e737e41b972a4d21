"""The three-node cluster: hub topics get RF 3 / min ISR 2, and one quick broker kill under load.

The full-length versions (each failure on its own, more load, two workers, longer outages) are
in tests/chaos (`make chaos`). These scaled-down ones keep `make test` short; like them they assert
correctness only (nothing lost or doubled), and print the pause each fault caused.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from cluster_load import ClusterLoad, kill_active_controller
from durable_kafka.connectors import cluster
from durable_kafka.streams.admin import delete_hub, describe_topics, ensure_topics

pytestmark = pytest.mark.timeout(600)


def test_hub_topics_on_the_cluster_get_three_copies_and_min_isr_two(kafka_cluster, unique_name):
    hub = unique_name("rf")
    try:
        assert ensure_topics(hub, 2, bootstrap=kafka_cluster.bootstrap)
        reports = describe_topics(hub, 2, bootstrap=kafka_cluster.bootstrap)
        assert [(r.replication_factor, r.min_insync_replicas) for r in reports] == [(3, 2)] * len(reports)
        assert all(r.ok for r in reports), [r.problems for r in reports]
        leaders = cluster.leader_counts(kafka_cluster, [r.name for r in reports])
        assert set(leaders) == set(kafka_cluster.node_ids), "replicas should spread over every node"
    finally:
        delete_hub(hub, bootstrap=kafka_cluster.bootstrap)


def test_cli_overrides_the_cluster_defaults(kafka_cluster, unique_name):
    hub = unique_name("rf")
    try:
        proc = subprocess.run([sys.executable, "-m", "durable_kafka", "topics", "create", "--hub", hub,
                               "--partitions", "1", "--bootstrap", kafka_cluster.bootstrap,
                               "--replication-factor", "2", "--min-insync-replicas", "1"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        reports = describe_topics(hub, 1, bootstrap=kafka_cluster.bootstrap)
        assert {(r.replication_factor, r.min_insync_replicas) for r in reports} == {(2, 1)}
        proc = subprocess.run([sys.executable, "-m", "durable_kafka", "topics", "create", "--hub", hub + "x",
                               "--bootstrap", kafka_cluster.bootstrap, "--replication-factor", "4"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "needs 4 brokers" in proc.stderr, proc.stderr
    finally:
        delete_hub(hub, bootstrap=kafka_cluster.bootstrap)


def test_single_broker_hub_topics_keep_one_copy(hub):
    reports = describe_topics(hub, hub.partitions, bootstrap=hub.bootstrap)
    assert {(r.replication_factor, r.min_insync_replicas) for r in reports} == {(1, 1)}


@pytest.mark.slow
def test_kill_of_the_controller_leading_hub_partitions_loses_and_doubles_nothing(kafka_cluster, tmp_path):
    """One worker, 5 orchestrations/s; kill -9 of the active controller, which (every node being
    broker and controller) also leads about a third of the hub's partitions (checked): the quorum
    elects another controller and those partitions get new leaders in the same outage; the node
    is down 3 s, then restarted. Every start completes exactly once.

    One kill, not two: each killed node's restart (a JVM start, then its replicas catching up) is
    most of this test's time. The separate full-length cases, the busiest leader, the controller
    and a rolling restart, with two workers, are tests/chaos/test_cluster_chaos.py (`make chaos`).
    """
    load = ClusterLoad(kafka_cluster, tmp_path, workers=1, partitions=6, rate=5.0).start()
    try:
        load.wait_completions(10)
        led = cluster.leader_counts(kafka_cluster, load.topics.all())
        killed, successor = kill_active_controller(load, down_s=3)
        assert successor != killed, "the quorum should have elected another controller"
        assert led[killed] > 0, f"the killed controller {killed} led no hub partition ({dict(led)}): no failover"
        time.sleep(3)  # completions after the restart belong to the run
        report = load.finish()
    finally:
        load.close()
    print("\n" + report.summary())
    report.assert_correct()
