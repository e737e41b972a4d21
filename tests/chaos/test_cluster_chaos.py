"""Full-length broker failures on the three-node cluster under continuous load (`make chaos`).

Two workers (so consumer groups and transactional ids of several processes are involved),
10 orchestrations/s, each case on a fresh hub with RF 3 / min ISR 2:

  (a) kill -9 of the node leading the most hub partitions, 15 s down, restart;
  (b) kill -9 of the active controller (KRaft quorum leader), 15 s down, restart;
  (c) rolling restart of all three nodes (clean stop, start, replicas in sync, next).

Each asserts correctness only (every start completed exactly once, every scheduled activity
completed once in history and executed at least once, the audit passes) and prints the pause
each fault caused; docs/RELIABILITY.md records the figures.
"""

from __future__ import annotations

import time

import pytest

from cluster_load import ClusterLoad, kill_active_controller, kill_busiest_leader, rolling_restart

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

RATE = 10.0
WORKERS = 2
PARTITIONS = 12


def _run(kafka_cluster, tmp_path, case) -> None:
    load = ClusterLoad(kafka_cluster, tmp_path, workers=WORKERS, partitions=PARTITIONS, rate=RATE).start()
    try:
        load.wait_completions(50)
        time.sleep(10)  # a steady-state stretch to compare the pauses with
        case(load)
        time.sleep(10)  # and load after the cluster healed
        report = load.finish(timeout=300)
    finally:
        load.close()
    print("\n" + report.summary())
    report.assert_correct()


def test_kill_9_busiest_leader_then_restart(kafka_cluster, tmp_path):
    _run(kafka_cluster, tmp_path, lambda load: kill_busiest_leader(load, down_s=15))


def test_kill_9_active_controller_then_restart(kafka_cluster, tmp_path):
    _run(kafka_cluster, tmp_path, lambda load: kill_active_controller(load, down_s=15))


def test_rolling_restart_of_all_three_nodes(kafka_cluster, tmp_path):
    _run(kafka_cluster, tmp_path, lambda load: rolling_restart(load, settle_s=5))
