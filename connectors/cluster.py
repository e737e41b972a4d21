"""Control of a local three-node Kafka cluster: up, down, status, and faults for chaos tests.

Why this exists: a single broker cannot show what happens when a partition leader or the
active controller dies, and the engine's claims (nothing lost, nothing doubled) matter most
then. This module runs three KRaft nodes on 127.0.0.1, each a combined broker+controller, so
the controller quorum is the three of them and killing the active controller is a real
election. It reuses connectors/broker.py for everything a node needs (jar assembly, Java,
storage format, spawning, the transactional readiness probe); only the per-node settings differ.

    python -m durable_kafka.connectors.cluster up|down|status \
        [--base-port 9292] [--state-dir .state/cluster]

Ports: brokers on base..base+2 (9292-9294), controllers on base+3..base+5 (9295-9297).
Internal topics (offsets, transaction state) get replication factor 3 and min ISR 2, and so
does any topic created without explicit settings. ``up`` is idempotent, starts only the nodes
that are not running and returns once a transactional round trip through the cluster works;
``down`` stops all nodes at once (one by one, the last two would wait for a quorum that is
already gone). Tests use the Python API: :func:`kill_node`, :func:`start_node`,
:func:`restart_node`, :func:`busiest_leader`, :func:`active_controller`, :func:`wait_in_sync`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from durable_kafka.connectors import broker
from durable_kafka.connectors.broker import HOST, BrokerConfig, BrokerStatus, Progress
from durable_kafka.errors import BrokerError

__all__ = [
    "DEFAULT_BASE_PORT",
    "ClusterConfig",
    "ClusterStatus",
    "active_controller",
    "busiest_leader",
    "default_state_dir",
    "down",
    "kill_node",
    "leader_counts",
    "live_brokers",
    "main",
    "node_properties",
    "restart_node",
    "start_node",
    "status",
    "stop_node",
    "up",
    "wait_in_sync",
]

logger = logging.getLogger(__name__)

DEFAULT_NODES = 3
DEFAULT_BASE_PORT = 9292
START_TIMEOUT_S = 180.0  # three JVMs on a small shared machine
JAVA_HEAP = ("-Xmx512m", "-Xms128m")


def default_state_dir() -> Path:
    """``<repo>/.state/cluster``: beside the single broker's ``.state/kafka``, never shared."""
    return broker.REPO_ROOT / ".state" / "cluster"


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """Where the nodes of one local cluster listen and keep their files."""

    nodes: int = DEFAULT_NODES
    base_port: int = DEFAULT_BASE_PORT
    state_dir: Path = dataclasses.field(default_factory=default_state_dir)
    cache_dir: Path = dataclasses.field(default_factory=broker.default_cache_dir)

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise BrokerError(f"a cluster needs at least one node, got {self.nodes}")
        object.__setattr__(self, "state_dir", Path(self.state_dir).expanduser().resolve())
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser().resolve())

    @property
    def node_ids(self) -> list[int]:
        return list(range(1, self.nodes + 1))

    def node(self, node_id: int) -> BrokerConfig:
        """The single-broker view of node ``node_id`` (1-based): its ports and its own state dir."""
        if node_id not in self.node_ids:
            raise BrokerError(f"no node {node_id} in a {self.nodes}-node cluster")
        return BrokerConfig(port=self.base_port + node_id - 1,
                            controller_port=self.base_port + self.nodes + node_id - 1,
                            state_dir=self.state_dir / f"node-{node_id}", cache_dir=self.cache_dir,
                            java_heap=JAVA_HEAP)

    @property
    def bootstrap(self) -> str:
        """Every broker, so clients find the cluster whichever node is down."""
        return ",".join(self.node(n).bootstrap for n in self.node_ids)

    @property
    def quorum_voters(self) -> str:
        return ",".join(f"{n}@{HOST}:{self.node(n).controller_port}" for n in self.node_ids)

    @property
    def replication_factor(self) -> int:
        return min(3, self.nodes)

    @property
    def min_insync_replicas(self) -> int:
        return 2 if self.replication_factor >= 3 else 1

    @property
    def cluster_id_file(self) -> Path:
        return self.state_dir / "cluster.id"


@dataclasses.dataclass(frozen=True)
class ClusterStatus:
    """Each node's status; ``running`` when all of them run."""

    nodes: dict[int, BrokerStatus]
    bootstrap: str

    @property
    def running(self) -> bool:
        return all(node.running for node in self.nodes.values())

    def describe(self) -> str:
        up_count = sum(node.running for node in self.nodes.values())
        head = f"{up_count}/{len(self.nodes)} nodes running, bootstrap={self.bootstrap}"
        return "\n".join([head] + [f"  node {n}: {s.describe()}" for n, s in self.nodes.items()])


# ---------------------------------------------------------------------------------------------
# configuration


def node_properties(cfg: ClusterConfig, node_id: int) -> str:
    """server.properties of one node: the single broker's settings, plus the quorum and RF."""
    rf, min_isr = str(cfg.replication_factor), str(cfg.min_insync_replicas)
    return broker.server_properties(cfg.node(node_id), overrides={
        "node.id": str(node_id),
        "controller.quorum.voters": cfg.quorum_voters,
        "default.replication.factor": rf,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": min_isr,
        # never elect a replica that missed acknowledged writes, even to end an outage
        "unclean.leader.election.enable": "false",
    })


def _cluster_id(cfg: ClusterConfig) -> str:
    """One id for all nodes, kept at the cluster's root so a wiped node rejoins the same cluster."""
    if cfg.cluster_id_file.is_file():
        return cfg.cluster_id_file.read_text().strip()
    cluster_id = broker.new_cluster_id()
    cfg.cluster_id_file.write_text(cluster_id + "\n")
    return cluster_id


def _prepare(cfg: ClusterConfig, node_id: int, java: str) -> BrokerConfig:
    node = cfg.node(node_id)
    node.state_dir.mkdir(parents=True, exist_ok=True)
    node.properties_file.write_text(node_properties(cfg, node_id))
    node.cluster_id_file.write_text(_cluster_id(cfg) + "\n")
    broker._format_storage(java, node)
    return node


# ---------------------------------------------------------------------------------------------
# status


def status(cfg: ClusterConfig | None = None) -> ClusterStatus:
    """Whether each node's pid file names a live kafka.Kafka and its port answers."""
    cfg = cfg or ClusterConfig()
    return ClusterStatus({n: broker.status(cfg.node(n)) for n in cfg.node_ids}, cfg.bootstrap)


def _exited(node: BrokerConfig) -> bool:
    """True when the node's process is gone (or a zombie); False while it runs or is starting.

    Right after the spawn the child may not have exec'd java yet, so its command line is still
    Python's and ``broker._is_our_broker`` says no: that must not read as "exited".
    """
    pid = broker._read_pid(node)
    if pid is None:
        return True
    if broker._is_our_broker(pid, node):
        return False
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except PermissionError:
        return False
    except (OSError, IndexError):  # ProcessLookupError included: gone
        return True
    return state in ("Z", "X")


def _admin(cfg: ClusterConfig) -> AdminClient:
    return AdminClient({"bootstrap.servers": cfg.bootstrap, "logger": broker._client_logger})


def live_brokers(cfg: ClusterConfig, timeout: float = 10.0) -> set[int]:
    """Ids of the brokers the cluster's metadata lists (registered and not fenced)."""
    return set(_admin(cfg).list_topics(timeout=timeout).brokers)


# ---------------------------------------------------------------------------------------------
# up / down


def up(cfg: ClusterConfig | None = None, timeout: float = START_TIMEOUT_S,
       progress: Progress | None = None) -> ClusterStatus:
    """Start every node that is not running; return once a transactional round trip works."""
    cfg = cfg or ClusterConfig()
    say = progress or logger.info
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    with broker._locked(cfg.state_dir / ".lock"):
        found = status(cfg)
        if found.running:
            _wait_ready(cfg, time.monotonic() + timeout, say)
            return status(cfg)
        broker.assemble(cfg.cache_dir, progress=say)
        java = broker.find_java()
        for node_id in cfg.node_ids:
            if found.nodes[node_id].pid is None:
                _start(cfg, node_id, java, say)
        _wait_ready(cfg, time.monotonic() + timeout, say)
        say(f"cluster ready: bootstrap={cfg.bootstrap}")
        return status(cfg)


def _start(cfg: ClusterConfig, node_id: int, java: str, say: Progress) -> int:
    node = cfg.node(node_id)
    for port, what in ((node.port, "broker"), (node.controller_port, "controller")):
        if broker._port_open(port):
            raise BrokerError(f"{what} port {port} of node {node_id} is in use by another process; "
                              "stop it or pick another --base-port")
    _prepare(cfg, node_id, java)
    say(f"starting node {node_id} on {node.bootstrap} (controller {node.controller_port})")
    return broker._spawn(java, node)


def _wait_ready(cfg: ClusterConfig, deadline: float, say: Progress) -> None:
    """Every node alive and registered, then a transactional round trip through the cluster."""
    last_error, said = "no node answered", 0.0
    while time.monotonic() < deadline:
        for node_id in cfg.node_ids:
            node = cfg.node(node_id)
            if _exited(node):
                raise BrokerError(f"node {node_id} is not running (exited during startup?); log tail "
                                  f"({node.log_file}):\n{broker._log_tail(node)}")
        try:
            registered = live_brokers(cfg, timeout=5)
            if registered >= set(cfg.node_ids):
                broker.round_trip(cfg.bootstrap, timeout=max(1.0, min(20.0, deadline - time.monotonic())),
                                  replication_factor=cfg.replication_factor)
                return
            last_error = f"brokers registered so far: {sorted(registered)}"
        except (KafkaException, BrokerError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() - said > 15:
            said = time.monotonic()
            say(f"waiting for the cluster ({last_error})")
        time.sleep(0.5)
    raise BrokerError(f"cluster on {cfg.bootstrap} not ready in time ({last_error}); nodes were left "
                      f"running, `down` stops them; logs in {cfg.state_dir}/node-*/broker.log")


def down(cfg: ClusterConfig | None = None, timeout: float = broker.STOP_TIMEOUT_S) -> int:
    """Stop every node: SIGTERM to all at once, ``timeout`` seconds' grace, then SIGKILL.

    Returns how many nodes were running. Stopping the nodes together matters: once two of
    three controllers are gone the last node's controlled shutdown waits for a quorum forever.
    """
    cfg = cfg or ClusterConfig()
    if not cfg.state_dir.is_dir():
        return 0
    with broker._locked(cfg.state_dir / ".lock"):
        running = {}
        for node_id in cfg.node_ids:
            node = cfg.node(node_id)
            pid = broker._read_pid(node)
            if pid is not None and broker._is_our_broker(pid, node):
                running[node_id] = pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            else:
                node.pid_file.unlink(missing_ok=True)
        end = time.monotonic() + timeout
        for node_id, pid in running.items():
            node = cfg.node(node_id)
            while time.monotonic() < end and broker._is_our_broker(pid, node):
                time.sleep(0.2)
            if broker._is_our_broker(pid, node):
                logger.warning("node %d (pid %d) ignored SIGTERM for %.0fs; killing it", node_id, pid, timeout)
                _kill_and_wait(pid, node)
            node.pid_file.unlink(missing_ok=True)
        return len(running)


# ---------------------------------------------------------------------------------------------
# faults, for tests


def _kill_and_wait(pid: int, node: BrokerConfig) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while broker._is_our_broker(pid, node):
        time.sleep(0.05)


def kill_node(cfg: ClusterConfig, node_id: int) -> bool:
    """``kill -9`` node ``node_id`` (no controlled shutdown); True if it was running."""
    node = cfg.node(node_id)
    pid = broker._read_pid(node)
    if pid is None or not broker._is_our_broker(pid, node):
        return False
    _kill_and_wait(pid, node)
    node.pid_file.unlink(missing_ok=True)
    return True


def stop_node(cfg: ClusterConfig, node_id: int, timeout: float = broker.STOP_TIMEOUT_S) -> bool:
    """Stop one node cleanly (SIGTERM: controlled shutdown moves its leaderships first)."""
    return broker.down(cfg.node(node_id), timeout=timeout)


def start_node(cfg: ClusterConfig, node_id: int, timeout: float = START_TIMEOUT_S) -> None:
    """Start one node (if not running) and return once the cluster lists it as a live broker.

    Its replicas may still be catching up: call :func:`wait_in_sync` for that.
    """
    node = cfg.node(node_id)
    with broker._locked(node.state_dir / ".lock"):
        pid = broker._read_pid(node)
        if pid is None or not broker._is_our_broker(pid, node):
            _start(cfg, node_id, broker.find_java(), logger.info)
    deadline = time.monotonic() + timeout
    while True:
        if _exited(node):
            raise BrokerError(f"node {node_id} exited while starting; log tail:\n{broker._log_tail(node)}")
        if broker._port_open(node.port):
            # ask the node itself: the cluster's metadata keeps listing a killed broker until its
            # session times out, and a restarted node serves requests once it is unfenced
            with contextlib.suppress(KafkaException):
                alone = AdminClient({"bootstrap.servers": node.bootstrap, "logger": broker._client_logger})
                if node_id in alone.list_topics(timeout=5).brokers:
                    return
        if time.monotonic() > deadline:
            raise BrokerError(f"node {node_id} not registered after {timeout:.0f}s")
        time.sleep(0.2)


def restart_node(cfg: ClusterConfig, node_id: int, timeout: float = START_TIMEOUT_S) -> None:
    """Clean stop and start of one node (one step of a rolling restart)."""
    stop_node(cfg, node_id)
    start_node(cfg, node_id, timeout)


def leader_counts(cfg: ClusterConfig, topics: Iterable[str], timeout: float = 10.0) -> Counter[int]:
    """How many partitions of ``topics`` each broker leads (leaderless partitions are left out)."""
    metadata = _admin(cfg).list_topics(timeout=timeout)
    counts: Counter[int] = Counter()
    for name in topics:
        topic = metadata.topics.get(name)
        if topic is None:
            raise BrokerError(f"topic {name!r} does not exist on {cfg.bootstrap}")
        for partition in topic.partitions.values():
            if partition.leader >= 0:
                counts[partition.leader] += 1
    return counts


def busiest_leader(cfg: ClusterConfig, topics: Iterable[str]) -> int:
    """The node leading the most partitions of ``topics`` (lowest id on a tie)."""
    counts = leader_counts(cfg, topics)
    if not counts:
        raise BrokerError("no partition of the given topics has a leader")
    return min(counts, key=lambda node_id: (-counts[node_id], node_id))


def _quorum_state(node: BrokerConfig) -> dict | None:
    path = node.data_dir / "__cluster_metadata-0" / "quorum-state"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def active_controller(cfg: ClusterConfig, timeout: float = 30.0) -> int:
    """The node id of the active controller (the KRaft quorum leader).

    Kafka's DescribeCluster, asked through a broker, names a random live broker as "controller"
    in KRaft mode (clients are not meant to reach controllers), and confluent-kafka has no
    DescribeMetadataQuorum; so this reads what each live voter persisted about the election
    (``__cluster_metadata-0/quorum-state``: leader id and epoch) and takes the highest epoch's
    leader. A dead node's file is ignored; an election in progress (no leader yet) is waited out.
    """
    deadline = time.monotonic() + timeout
    while True:
        best: tuple[int, int] | None = None
        for node_id in cfg.node_ids:
            node = cfg.node(node_id)
            pid = broker._read_pid(node)
            if pid is None or not broker._is_our_broker(pid, node):
                continue
            state = _quorum_state(node)
            if state is None:
                continue
            epoch, leader = int(state.get("leaderEpoch", -1)), int(state.get("leaderId", -1))
            if best is None or epoch > best[0]:
                best = (epoch, leader)
        if best is not None and best[1] > 0:
            leader_node = cfg.node(best[1])
            pid = broker._read_pid(leader_node)
            if pid is not None and broker._is_our_broker(pid, leader_node):
                return best[1]
        if time.monotonic() > deadline:
            raise BrokerError(f"no active controller found within {timeout:.0f}s (latest {best})")
        time.sleep(0.2)


def wait_in_sync(cfg: ClusterConfig, topics: Iterable[str] | None = None, timeout: float = 120.0) -> None:
    """Wait until every partition of ``topics`` (default: all) has all its replicas in sync."""
    names = list(topics) if topics is not None else None
    deadline = time.monotonic() + timeout
    lagging: list[str] = []
    while time.monotonic() < deadline:
        try:
            metadata = _admin(cfg).list_topics(timeout=10)
        except KafkaException as exc:
            lagging = [f"metadata: {exc}"]
            time.sleep(0.5)
            continue
        chosen = names if names is not None else list(metadata.topics)
        lagging = []
        for name in chosen:
            topic = metadata.topics.get(name)
            if topic is None:
                lagging.append(f"{name}: missing")
                continue
            lagging += [f"{name}[{p.id}] isr={p.isrs} replicas={p.replicas}"
                        for p in topic.partitions.values() if sorted(p.isrs) != sorted(p.replicas)]
        if not lagging:
            return
        time.sleep(0.5)
    raise BrokerError(f"replicas not in sync after {timeout:.0f}s: {lagging[:5]}")


# ---------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m durable_kafka.connectors.cluster",
                                     description="Run a local three-node Kafka cluster.")
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                        help="brokers on base..base+2, controllers on base+3..base+5 (default 9292)")
    parser.add_argument("--state-dir", type=Path, default=None, help="default: <repo>/.state/cluster")
    parser.add_argument("--timeout", type=float, default=START_TIMEOUT_S,
                        help="seconds to wait for the cluster to be ready")
    args = parser.parse_args(argv)
    cfg = ClusterConfig(base_port=args.base_port, state_dir=args.state_dir or default_state_dir())

    def say(line: str) -> None:
        print(f"cluster: {line}", flush=True)

    try:
        if args.command == "up":
            say(up(cfg, timeout=args.timeout, progress=say).describe())
        elif args.command == "down":
            stopped = down(cfg)
            say(f"stopped {stopped} node(s)" if stopped else "was not running")
        else:
            found = status(cfg)
            say(found.describe())
            return 0 if found.running else 1
    except BrokerError as exc:
        print(f"cluster: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
