"""Control of the local development Kafka broker: assemble, start, check, stop.

Why this exists: durable-kafka keeps all of its state in Kafka, so every integration test,
demo and benchmark needs a real broker, and the machines we work on have Java and Maven but
no container engine. This module builds a broker from Maven Central jars (docker/local/pom.xml)
and runs ONE combined KRaft broker+controller on 127.0.0.1, tuned for a single node (all
internal topics with replication factor 1, few partitions, small thread pools).

    python -m durable_kafka.connectors.broker up|down|status \
        [--port 9092] [--controller-port 9093] [--state-dir .state/kafka]

``up`` is idempotent (a running broker is found through its pid file and port) and returns
only after a transactional produce -> read_committed consume round trip succeeded, because the
engine depends on transactions and the first transaction is what creates the internal topics.
``down`` is idempotent too. Everyone else finds the broker through DURABLE_KAFKA_BOOTSTRAP.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from durable_kafka.connectors import broker_security
from durable_kafka.errors import BrokerError
from durable_kafka.streams.config import BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP, bootstrap_servers

__all__ = [
    "BOOTSTRAP_ENV",
    "DEFAULT_BOOTSTRAP",
    "KAFKA_VERSION",
    "BrokerConfig",
    "BrokerStatus",
    "assemble",
    "bootstrap_servers",
    "default_cache_dir",
    "default_state_dir",
    "down",
    "find_java",
    "main",
    "new_cluster_id",
    "round_trip",
    "server_properties",
    "status",
    "up",
]

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
"""Pinned broker version; must match docker/local/pom.xml and docker/compose.yaml."""

DEFAULT_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
HOST = "127.0.0.1"

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
JAVA_HEAP = ("-Xmx768m", "-Xms256m")
PROBE_TOPIC = "__durable_kafka_probe"

# librdkafka chatters while the broker is still coming up ("Coordinator load in progress"); the
# probe's clients log here, and the NullHandler keeps that out of stderr unless asked for.
_client_logger = logging.getLogger(__name__ + ".client")
_client_logger.addHandler(logging.NullHandler())

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_DIR = REPO_ROOT / "docker" / "local"
POM = LOCAL_DIR / "pom.xml"
LOG4J2_CONFIG = LOCAL_DIR / "log4j2.xml"

Progress = Callable[[str], None]


def default_state_dir() -> Path:
    """``<repo>/.state/kafka``: git-ignored, and shared by every helper on this checkout."""
    return REPO_ROOT / ".state" / "kafka"


def default_cache_dir(version: str = KAFKA_VERSION) -> Path:
    """Where assembled jars live, outside the repo so that fresh clones reuse them."""
    base = os.environ.get("DURABLE_KAFKA_CACHE_DIR")
    if base:
        return Path(base).expanduser() / f"kafka-{version}"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "durable-kafka" / f"kafka-{version}"


@dataclasses.dataclass(frozen=True)
class BrokerConfig:
    """Where one local broker listens and keeps its files."""

    port: int = DEFAULT_PORT
    controller_port: int = DEFAULT_CONTROLLER_PORT
    state_dir: Path = dataclasses.field(default_factory=default_state_dir)
    cache_dir: Path = dataclasses.field(default_factory=default_cache_dir)
    #: SASL_SSL + ACLs instead of PLAINTEXT (connectors/broker_security.py)
    secure: bool = False
    java_heap: tuple[str, ...] = JAVA_HEAP
    """JVM heap flags; the three-node cluster (connectors/cluster.py) uses smaller ones."""

    def __post_init__(self) -> None:
        if self.port == self.controller_port:
            raise BrokerError(f"broker port and controller port are both {self.port}")
        object.__setattr__(self, "state_dir", Path(self.state_dir).expanduser().resolve())
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser().resolve())

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def client_config(self) -> dict[str, str]:
        """Security settings of the admin principal (empty for the PLAINTEXT broker)."""
        return broker_security.client_config(self.state_dir) if self.secure else {}

    @property
    def lib_dir(self) -> Path:
        return self.cache_dir / "lib"

    @property
    def properties_file(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        """stdout/stderr of the JVM: warnings, errors and "Kafka Server started"."""
        return self.state_dir / "broker.log"

    @property
    def cluster_id_file(self) -> Path:
        return self.state_dir / "cluster.id"


@dataclasses.dataclass(frozen=True)
class BrokerStatus:
    """What ``status`` found: ``running`` means our pid is alive and the port answers."""

    running: bool
    pid: int | None
    port_open: bool
    bootstrap: str

    def describe(self) -> str:
        if self.running:
            return f"running pid={self.pid} bootstrap={self.bootstrap}"
        if self.pid is not None:
            return f"starting pid={self.pid} bootstrap={self.bootstrap} (port not answering yet)"
        if self.port_open:
            return f"port {self.bootstrap} answers but no broker of ours runs there"
        return f"stopped bootstrap={self.bootstrap}"


# ---------------------------------------------------------------------------------------------
# assembly


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def _assembled(lib_dir: Path) -> bool:
    stamp = lib_dir / ".complete"
    return stamp.is_file() and stamp.read_text().strip() == _pom_digest()


def assemble(cache_dir: Path | None = None, progress: Progress | None = None) -> Path:
    """Copy the broker's jars from Maven Central into ``<cache>/lib`` unless already complete.

    The copy goes to a temporary folder renamed into place only when Maven succeeded, and a
    stamp holding the pom's digest marks it complete, so an interrupted or outdated assembly is
    redone rather than half-used. A file lock keeps two concurrent ``up`` calls from racing.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    lib_dir = cache_dir / "lib"
    if _assembled(lib_dir):
        return lib_dir
    say = progress or logger.info
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".assemble.lock"):
        if _assembled(lib_dir):
            return lib_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is not on PATH; it is needed once to assemble Kafka")
        tmp = cache_dir / f"lib.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        say(f"assembling Kafka {KAFKA_VERSION} from Maven Central into {lib_dir} (first time only)")
        cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
               f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]
        started = time.monotonic()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if proc.returncode != 0 or not any(tmp.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
            shutil.rmtree(tmp, ignore_errors=True)
            out = (proc.stdout + proc.stderr)[-4000:]
            raise BrokerError(f"assembling Kafka {KAFKA_VERSION} failed "
                              f"(mvn exit {proc.returncode}):\n{out}")
        (tmp / ".complete").write_text(_pom_digest() + "\n")
        shutil.rmtree(lib_dir, ignore_errors=True)
        tmp.rename(lib_dir)
        jars = len(list(lib_dir.glob("*.jar")))
        say(f"assembled {jars} jars in {time.monotonic() - started:.0f}s")
        return lib_dir


# ---------------------------------------------------------------------------------------------
# java


def _java_major(java: str) -> int | None:
    try:
        proc = subprocess.run([java, "-version"], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java() -> str:
    """``java`` on PATH if it runs and is 17+, else ``$JAVA_HOME/bin/java`` (Kafka 4 needs 17)."""
    candidates: list[str] = []
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidates.append(str(Path(java_home) / "bin" / "java"))
    seen: list[str] = []
    for java in candidates:
        major = _java_major(java)
        if major is not None and major >= 17:
            return java
        seen.append(f"{java} (version {major})" if major else f"{java} (does not run)")
    tried = ", ".join(seen) or "java on PATH and JAVA_HOME"
    raise BrokerError(f"no Java 17+ found: tried {tried}")


def _java_cmd(java: str, cfg: BrokerConfig, main: str, *args: str) -> list[str]:
    # The classpath wildcard 'lib/*' is expanded by java itself, not by a shell.
    return [java, *cfg.java_heap, "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={cfg.state_dir / 'logs'}",
            "-cp", str(cfg.lib_dir / "*"), main, *args]


# ---------------------------------------------------------------------------------------------
# configuration and storage


def server_properties(cfg: BrokerConfig, overrides: dict[str, str] | None = None) -> str:
    """One combined broker+controller, every internal topic sized for a single node.

    ``overrides`` replaces or adds settings: connectors/cluster.py uses it for the node id, the
    three-voter quorum and the replication of internal topics, so both share every other value.
    """
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{cfg.controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{cfg.port},CONTROLLER://{HOST}:{cfg.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{cfg.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(cfg.data_dir),
        # topics: created explicitly by the hub admin, never by a stray produce
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # internal topics on one node
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "12",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "4",
        # fast groups and prompt cleanup of transactions left open by killed workers
        "group.initial.rebalance.delay.ms": "0",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "5000",
        # small machine: few threads, a small cleaner buffer
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.replica.fetchers": "1",
        "num.recovery.threads.per.data.dir": "1",
        "background.threads": "4",
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        "log.cleaner.io.buffer.size": str(512 * 1024),
        "delete.topic.enable": "true",
    }
    if cfg.secure:
        settings.update(broker_security.server_settings(cfg.state_dir, HOST, cfg.port, cfg.controller_port))
    settings.update(overrides or {})
    lines = ["# written by durable_kafka.connectors.broker on every `up`; edits are overwritten"]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def new_cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding (Kafka's Uuid text form).

    An id starting with '-' is drawn again: the storage tool would read it as an option.
    """
    while True:
        text = base64.urlsafe_b64encode(os.urandom(16))
        cluster_id = text.decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _format_storage(java: str, cfg: BrokerConfig) -> None:
    """Format KRaft storage once; ``meta.properties`` in the data dir marks it done."""
    if (cfg.data_dir / "meta.properties").is_file():
        return
    if cfg.cluster_id_file.is_file():
        cluster_id = cfg.cluster_id_file.read_text().strip()
    else:
        cluster_id = new_cluster_id()
        cfg.cluster_id_file.write_text(cluster_id + "\n")
    # A static controller.quorum.voters needs no --standalone / --initial-controllers.
    cmd = _java_cmd(java, cfg, "kafka.tools.StorageTool", "format",
                    "-t", cluster_id, "-c", str(cfg.properties_file),
                    *(broker_security.format_arguments(cfg.state_dir) if cfg.secure else []))
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0 or not (cfg.data_dir / "meta.properties").is_file():
        raise BrokerError(f"formatting KRaft storage in {cfg.data_dir} failed "
                          f"(exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")


# ---------------------------------------------------------------------------------------------
# process and port checks


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _reap(pid: int) -> None:
    """Collect the exit status if the broker is our own child (else it would linger as a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _is_alive(pid: int) -> bool:
    """The process exists and is not a zombie (whatever it runs)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # not Linux, or it just went: the next check decides
    return state not in ("Z", "X")


def _is_our_broker(pid: int, cfg: BrokerConfig) -> bool:
    """Alive, not a zombie, and running kafka.Kafka on this state dir (guards against pid reuse)."""
    if not _is_alive(pid):
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.exists():  # not Linux: the signal check is all we have
        return True
    try:
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and str(cfg.properties_file).encode() in cmdline


def _read_pid(cfg: BrokerConfig) -> int | None:
    try:
        return int(cfg.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _port_open(port: int, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((HOST, port)) == 0


def _log_tail(cfg: BrokerConfig, lines: int = 40) -> str:
    try:
        text = cfg.log_file.read_text(errors="replace")
    except OSError:
        return f"(no log at {cfg.log_file})"
    return "\n".join(text.splitlines()[-lines:])


def status(cfg: BrokerConfig | None = None) -> BrokerStatus:
    """Whether our broker runs: its pid file names a live kafka.Kafka and the port answers."""
    cfg = cfg or BrokerConfig()
    pid = _read_pid(cfg)
    if pid is not None and not _is_our_broker(pid, cfg):
        pid = None
    port_open = _port_open(cfg.port)
    return BrokerStatus(running=pid is not None and port_open, pid=pid,
                        port_open=port_open, bootstrap=cfg.bootstrap)


# ---------------------------------------------------------------------------------------------
# readiness: a transactional round trip


def _ensure_probe_topic(bootstrap: str, timeout: float, security: dict[str, str],
                        replication_factor: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _client_logger, **security})
    if PROBE_TOPIC in admin.list_topics(timeout=timeout).topics:
        return
    futures = admin.create_topics([NewTopic(PROBE_TOPIC, 1, replication_factor)], operation_timeout=timeout)
    future = futures[PROBE_TOPIC]
    try:
        future.result(timeout=timeout)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise


def round_trip(bootstrap: str, timeout: float = 15.0, security: dict[str, str] | None = None,
               replication_factor: int = 1) -> None:
    """Produce one record in a transaction and read it back with read_committed.

    Raises confluent-kafka's KafkaException (or BrokerError if the record never shows up);
    ``up`` retries until its deadline. The first call also creates __transaction_state and
    __consumer_offsets, so the first real test does not pay for that. ``security`` holds the
    admin principal's settings on the secure broker; ``replication_factor`` is the probe topic's
    (a cluster probes through all of its nodes).
    """
    security = security or {}
    _ensure_probe_topic(bootstrap, timeout, security, replication_factor)
    token = uuid.uuid4().hex.encode()
    producer = Producer({"bootstrap.servers": bootstrap, "logger": _client_logger,
                         "transactional.id": "durable-kafka-broker-probe", **security,
                         "transaction.timeout.ms": 30000})
    producer.init_transactions(timeout)
    producer.begin_transaction()
    delivered: list[int] = []

    def on_delivery(err: object, msg: object) -> None:
        if err is None:
            delivered.append(msg.offset())  # type: ignore[attr-defined]

    producer.produce(PROBE_TOPIC, value=token, key=b"probe", on_delivery=on_delivery)
    producer.commit_transaction(timeout)
    if not delivered:
        raise BrokerError("probe record was not acknowledged")
    consumer = Consumer({"bootstrap.servers": bootstrap, "logger": _client_logger,
                         "group.id": "durable-kafka-broker-probe", **security,
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        consumer.assign([TopicPartition(PROBE_TOPIC, 0, delivered[0])])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            if msg.value() == token:
                consumer.commit(message=msg, asynchronous=False)
                return
        raise BrokerError(f"probe record not read back from {PROBE_TOPIC} within {timeout:.0f}s")
    finally:
        consumer.close()


def _wait_ready(cfg: BrokerConfig, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = "port never opened"
    while time.monotonic() < deadline:
        # only "gone" counts here: between fork and exec (long on a loaded machine) the child's
        # command line is still ours, so the kafka.Kafka check of _is_our_broker would misfire
        if not _is_alive(pid):
            raise BrokerError(f"broker process {pid} exited during startup; "
                              f"log tail ({cfg.log_file}):\n{_log_tail(cfg)}")
        if _port_open(cfg.port):
            try:
                round_trip(cfg.bootstrap, timeout=max(1.0, min(15.0, deadline - time.monotonic())),
                           security=cfg.client_config())
                return
            except (KafkaException, BrokerError) as exc:  # not ready yet: retry until deadline
                last_error = f"{type(exc).__name__}: {exc}"
                logger.debug("broker not ready yet: %s", last_error)
        time.sleep(0.5)
    raise BrokerError(f"broker on {cfg.bootstrap} (pid {pid}) not ready after {timeout:.0f}s "
                      f"({last_error}); it was left running, `down` stops it; "
                      f"log tail ({cfg.log_file}):\n{_log_tail(cfg)}")


# ---------------------------------------------------------------------------------------------
# up / down


def up(cfg: BrokerConfig | None = None, timeout: float = START_TIMEOUT_S,
       progress: Progress | None = None) -> BrokerStatus:
    """Start the broker unless it runs; return once a transactional round trip works."""
    cfg = cfg or BrokerConfig()
    say = progress or logger.info
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cfg.state_dir / ".lock"):
        found = status(cfg)
        if found.running:
            return found
        if found.pid is not None:  # started by someone else, still coming up
            _wait_ready(cfg, found.pid, timeout)
            return status(cfg)
        if found.port_open:
            raise BrokerError(f"port {cfg.port} is in use by another process; "
                              "stop it or pick another --port")
        if _port_open(cfg.controller_port):
            raise BrokerError(f"controller port {cfg.controller_port} is in use; "
                              "pick another --controller-port")
        assemble(cfg.cache_dir, progress=say)
        java = find_java()
        if cfg.secure:
            broker_security.prepare(cfg.state_dir, cfg.bootstrap)
        cfg.properties_file.write_text(server_properties(cfg))
        cfg.properties_file.chmod(0o600)  # the secure variant holds the admin's password
        _format_storage(java, cfg)
        say(f"starting Kafka {KAFKA_VERSION} on {cfg.bootstrap} (state in {cfg.state_dir})")
        pid = _spawn(java, cfg)
        _wait_ready(cfg, pid, timeout)
        say(f"broker ready: pid={pid} bootstrap={cfg.bootstrap}")
        return status(cfg)


def _spawn(java: str, cfg: BrokerConfig) -> int:
    cmd = _java_cmd(java, cfg, "kafka.Kafka", str(cfg.properties_file))
    with open(cfg.log_file, "ab") as log:
        log.write(f"\n==== start {time.strftime('%Y-%m-%dT%H:%M:%S')} ====\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=cfg.state_dir, start_new_session=True, close_fds=True)
    # The broker outlives this process; forget the Popen so its finalizer does not warn.
    proc.returncode = 0
    cfg.pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def down(cfg: BrokerConfig | None = None, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop our broker: SIGTERM, ``timeout`` seconds' grace, then SIGKILL.

    Returns True if a broker was running. Only a process that the pid file names AND that runs
    kafka.Kafka on this state dir is signalled, so a stale pid file never kills a stranger.
    """
    cfg = cfg or BrokerConfig()
    if not cfg.state_dir.is_dir():
        return False
    with _locked(cfg.state_dir / ".lock"):
        pid = _read_pid(cfg)
        if pid is None or not _is_our_broker(pid, cfg):
            cfg.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _is_our_broker(pid, cfg):
            time.sleep(0.2)
        if _is_our_broker(pid, cfg):
            logger.warning("broker pid %d ignored SIGTERM for %.0fs; killing it", pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _is_our_broker(pid, cfg):
                time.sleep(0.1)
        cfg.pid_file.unlink(missing_ok=True)
        return True


# ---------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m durable_kafka.connectors.broker",
                                     description="Run the local development Kafka broker.")
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--controller-port", type=int, default=DEFAULT_CONTROLLER_PORT)
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="default: <repo>/.state/kafka")
    parser.add_argument("--secure", action="store_true",
                        help="SASL_SSL listener, SCRAM users, ACLs enforced (see docs/SECURITY.md)")
    parser.add_argument("--timeout", type=float, default=START_TIMEOUT_S,
                        help="seconds to wait for the broker to be ready")
    args = parser.parse_args(argv)
    cfg = BrokerConfig(port=args.port, controller_port=args.controller_port,
                       state_dir=args.state_dir or default_state_dir(), secure=args.secure)

    def say(line: str) -> None:
        print(f"broker: {line}", flush=True)

    try:
        if args.command == "up":
            say(up(cfg, timeout=args.timeout, progress=say).describe())
        elif args.command == "down":
            say("stopped" if down(cfg) else "was not running")
        else:
            found = status(cfg)
            say(found.describe())
            return 0 if found.running else 1
    except BrokerError as exc:
        print(f"broker: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
