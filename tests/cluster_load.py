"""Continuous orchestration load on the local three-node cluster, and what chaos tests check.

A :class:`ClusterLoad` creates a hub on the cluster (replication by the catalog's defaults:
RF 3, min ISR 2), runs workers as ``python -m durable_kafka worker`` subprocesses (this class
is their supervisor: a worker that exits, e.g. with code 70 when librdkafka blocks in a
transactional call, is started again and counted), and schedules ``chaos_orchestration``
instances at a steady rate from a background thread while the test breaks brokers.

``finish()`` stops scheduling, waits for every started instance to complete and then checks,
from the history topic: each instance started once and completed once with the right output,
every scheduled activity completed exactly once in history and executed at least once (the
workers' execution log), no duplicated history record, and the audit passes. The pause per
fault is the longest gap between consecutive completions (the history records' CreateTime,
i.e. when the worker produced them in the transaction that committed) after that fault.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition

from cluster_app import ACTIVITIES_PER_ORCHESTRATION, expected_output
from durable_kafka import Client, OrchestrationStatus
from durable_kafka.connectors.audit import audit
from durable_kafka.connectors.cluster import ClusterConfig
from durable_kafka.streams import events as ev
from durable_kafka.errors import DurableKafkaError
from durable_kafka.streams.admin import delete_hub, ensure_topics
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import LIBRDKAFKA_LOGGER_NAME
from durable_kafka.streams.topics import HubTopics

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Fault:
    """One thing done to the cluster, and when (wall clock, seconds)."""

    label: str
    at: float
    pause_s: float | None = None  # filled by finish()


@dataclass
class LoadReport:
    started: int = 0
    completed: int = 0
    lost: list[str] = field(default_factory=list)  # started, never completed once
    duplicated: list[str] = field(default_factory=list)  # more than one start or completion
    wrong_output: list[str] = field(default_factory=list)
    task_problems: list[str] = field(default_factory=list)  # a task completed 0 or 2+ times in history
    tasks: int = 0
    executions: int = 0
    reexecutions: int = 0  # at-least-once activities: allowed, reported
    unexecuted: list[str] = field(default_factory=list)  # completed in history, never executed
    duplicate_records: int = 0
    audit_problems: list[str] = field(default_factory=list)
    worker_restarts: int = 0
    baseline_gap_s: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    seconds: float = 0.0
    long_gaps: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds), start from load begin
    worker_warnings: Counter = field(default_factory=Counter)  # what the workers logged, by kind

    def summary(self) -> str:
        lines = [f"{self.started} started, {self.completed} completed, {len(self.lost)} lost, "
                 f"{len(self.duplicated)} duplicated, {self.tasks} activity tasks, {self.executions} executions "
                 f"({self.reexecutions} re-executions), {self.worker_restarts} worker restarts, "
                 f"steady-state max gap {self.baseline_gap_s:.2f}s, {self.seconds:.0f}s of load"]
        lines += [f"  {f.label}: progress paused {f.pause_s:.2f}s" for f in self.faults if f.pause_s is not None]
        if self.long_gaps:
            lines.append("  gaps over 2 s (start after load began, length): " +
                         ", ".join(f"{start:.1f}s+{length:.2f}s" for start, length in self.long_gaps))
        lines += [f"  worker log x{count}: {kind}" for kind, count in self.worker_warnings.most_common(8)]
        return "\n".join(lines)

    def assert_correct(self) -> None:
        """Correctness only: nothing lost, nothing doubled, history and audit agree."""
        assert self.started > 0 and self.completed == self.started, self.summary()
        assert not self.lost, f"lost: {self.lost[:5]}"
        assert not self.duplicated, f"duplicated: {self.duplicated[:5]}"
        assert not self.wrong_output, f"wrong output: {self.wrong_output[:5]}"
        assert not self.task_problems, self.task_problems[:5]
        assert self.duplicate_records == 0, f"{self.duplicate_records} duplicated history records"
        assert not self.unexecuted, f"completed without an execution: {self.unexecuted[:5]}"
        assert self.tasks == self.started * ACTIVITIES_PER_ORCHESTRATION, self.summary()
        assert not self.audit_problems, self.audit_problems[:5]


class _Worker:
    def __init__(self, load: ClusterLoad, index: int) -> None:
        self.load, self.index = load, index
        self.state = load.workdir / f"worker-{index}"
        self.log_path = load.workdir / f"worker-{index}.log"
        self.proc: subprocess.Popen | None = None

    def spawn(self, timeout: float = 120.0) -> None:
        env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": self.load.cfg.bootstrap, "DK_CHAOS_HUB": self.load.hub,
               "DK_CHAOS_STATE": str(self.state), "DK_CHAOS_PARTITIONS": str(self.load.partitions),
               "DK_CHAOS_EXEC_LOG": str(self.load.exec_log), "DK_STUCK_AFTER": str(self.load.stuck_after)}
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as out:  # a file, not a pipe: a full pipe would block the worker
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "durable_kafka", "worker", "tests.cluster_app:make_worker",
                 "--log-level", os.environ.get("DK_CHAOS_LOG_LEVEL", "WARNING")],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as log:
                log.seek(start)
                if b" running on hub " in log.read():
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"worker {self.index} did not start:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class ClusterLoad:
    """Workers plus a steady stream of orchestrations on one fresh hub of the cluster."""

    def __init__(self, cfg: ClusterConfig, workdir: Path, *, workers: int = 1, partitions: int = 6,
                 rate: float = 10.0, stuck_after: float = 30.0, say=print) -> None:
        self.cfg, self.workdir, self.partitions, self.rate = cfg, workdir, partitions, rate
        self.stuck_after = stuck_after
        self.say = say
        self.hub = f"chaos{uuid.uuid4().hex[:10]}"
        self.topics = HubTopics(self.hub)
        self.exec_log = workdir / "executions.log"
        self.workers = [_Worker(self, i) for i in range(workers)]
        self.ids: list[str] = []
        self.faults: list[Fault] = []
        self.restarts: list[str] = []
        self._stop = threading.Event()
        self._supervising = threading.Event()
        self._threads: list[threading.Thread] = []
        self.client: Client | None = None
        self._began = 0.0
        self._load_stopped_at = 0.0

    # ------------------------------------------------------------------ running
    def start(self) -> ClusterLoad:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ensure_topics(self.hub, self.partitions, bootstrap=self.cfg.bootstrap)
        for worker in self.workers:
            worker.spawn()
        self.client = Client(self.cfg.bootstrap, hub=self.hub)
        self._began = time.time()
        self._supervising.set()
        for target in (self._schedule, self._supervise):
            thread = threading.Thread(target=target, daemon=True, name=f"load-{target.__name__}")
            thread.start()
            self._threads.append(thread)
        return self

    def _schedule(self) -> None:
        interval, due, n = 1.0 / self.rate, time.monotonic(), 0
        while not self._stop.is_set():
            iid = f"c-{n}-{uuid.uuid4().hex[:6]}"
            self.client.schedule_new_orchestration("chaos_orchestration", input=n, instance_id=iid,
                                                   wait_for_acceptance=False)
            self.ids.append(iid)
            n += 1
            due += interval
            self._stop.wait(max(0.0, due - time.monotonic()))

    def _supervise(self) -> None:
        while self._supervising.is_set():
            for worker in self.workers:
                if worker.proc is not None and worker.proc.poll() is not None:
                    reason = f"worker {worker.index} exited with {worker.proc.returncode}: {worker.tail(3)}"
                    self.restarts.append(reason)
                    self.say(f"  supervisor: {reason.splitlines()[0]}; starting it again")
                    worker.spawn()
            time.sleep(0.5)

    def fault(self, label: str) -> Fault:
        """Note that a fault happens now (call right before doing it)."""
        fault = Fault(label, time.time())
        self.faults.append(fault)
        self.say(f"  {time.time() - self._began:6.1f}s {label}")
        return fault

    def completed_count(self) -> int:
        done = 0
        for iid in list(self.ids):
            state = self.client.get_orchestration_state(iid)
            done += state is not None and state.runtime_status == OrchestrationStatus.COMPLETED
        return done

    def wait_completions(self, count: int, timeout: float = 120.0) -> None:
        """Wait until at least ``count`` instances completed (load is flowing)."""
        deadline = time.monotonic() + timeout
        while self.completed_count() < count:
            assert time.monotonic() < deadline, f"fewer than {count} completions in {timeout:.0f}s"
            time.sleep(0.5)

    def finish(self, timeout: float = 240.0) -> LoadReport:
        """Stop scheduling, wait for every instance, stop the workers, check everything."""
        self._stop.set()
        self._threads[0].join(30)
        self._load_stopped_at = time.time()
        self.client.flush(timeout)
        deadline = time.monotonic() + timeout
        pending = list(self.ids)
        while pending:
            state = self.client.get_orchestration_state(pending[-1])
            if state is not None and state.runtime_status in (OrchestrationStatus.COMPLETED, OrchestrationStatus.FAILED,
                                                              OrchestrationStatus.TERMINATED):
                pending.pop()
                continue
            if time.monotonic() > deadline:
                break  # reported as lost below
            time.sleep(0.2)
        self._supervising.clear()
        self._threads[1].join(30)
        self._stop_processes()
        return self._verify()

    def _stop_processes(self) -> None:
        self._stop.set()
        self._supervising.clear()
        for worker in self.workers:
            worker.stop()
        if self.client is not None:
            self.client.close()
            self.client = None

    def close(self) -> None:
        """Stop everything and delete the hub: the cluster outlives the run, its topics need not."""
        self._stop_processes()
        try:
            delete_hub(self.hub, bootstrap=self.cfg.bootstrap, timeout=60)
        except DurableKafkaError as exc:
            self.say(f"  could not delete hub {self.hub}: {exc}")

    # ------------------------------------------------------------------ checking
    def _history(self) -> list[tuple[int, ev.HistoryRecord]]:
        """(CreateTime ms, record) of every committed history record of the hub."""
        consumer = Consumer({"bootstrap.servers": self.cfg.bootstrap, "group.id": f"chaos-{uuid.uuid4().hex}",
                             "isolation.level": "read_committed", "enable.auto.commit": False,
                             "logger": logging.getLogger(LIBRDKAFKA_LOGGER_NAME)})
        codec, topic = Codec.default(), self.topics.history
        try:
            ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                    for p in range(self.partitions)}
            pending = {p: hi for p, (lo, hi) in ends.items() if hi > lo}
            consumer.assign([TopicPartition(topic, p, ends[p][0]) for p in pending])
            out = []
            while pending:
                msg = consumer.poll(0.5)
                if msg is not None:
                    if msg.error() is None:
                        # one HistoryBatch per step (D20): its events, with their per-event ids
                        out.extend((msg.timestamp()[1], r) for r in ev.history_records(codec.decode(msg.value())))
                    elif msg.error().code() != KafkaError._PARTITION_EOF:
                        raise AssertionError(f"reading history: {msg.error()}")
                for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
                    if tp.offset >= pending[tp.partition]:
                        del pending[tp.partition]
            return out
        finally:
            consumer.close()

    def _verify(self) -> LoadReport:
        report = LoadReport(started=len(self.ids), worker_restarts=len(self.restarts), faults=self.faults,
                            seconds=self._load_stopped_at - self._began)
        history = self._history()
        report.duplicate_records = sum(c - 1 for c in Counter(r.id for _, r in history).values() if c > 1)
        by_instance: dict[str, list[tuple[int, ev.HistoryRecord]]] = {}
        for ts, rec in history:
            by_instance.setdefault(rec.instance_id, []).append((ts, rec))
        executions = Counter()
        if self.exec_log.exists():
            for line in self.exec_log.read_text().splitlines():
                iid, task_id = line.split()
                executions[(iid, int(task_id))] += 1
        report.executions = sum(executions.values())
        report.reexecutions = sum(c - 1 for c in executions.values() if c > 1)
        completion_times: list[float] = []
        for iid in self.ids:
            recs = by_instance.get(iid, [])
            starts = [r for _, r in recs if isinstance(r.event, ev.ExecutionStarted)]
            ends = [(ts, r) for ts, r in recs if isinstance(r.event, ev.ExecutionCompleted)]
            if not starts or not ends:
                report.lost.append(iid)
                continue
            if len(starts) > 1 or len(ends) > 1:
                report.duplicated.append(iid)
            ts, end = ends[0]
            completion_times.append(ts / 1000)
            if end.event.runtime_status == "COMPLETED":
                report.completed += 1
            n = int(iid.split("-")[1])
            if end.event.result is None or json.loads(end.event.result) != expected_output(n):
                report.wrong_output.append(f"{iid}: {end.event.runtime_status} {end.event.result}")
            scheduled = [r.event.event_id for _, r in recs if isinstance(r.event, ev.TaskScheduled)]
            done = Counter(r.event.task_scheduled_id for _, r in recs if isinstance(r.event, ev.TaskCompleted))
            report.tasks += len(scheduled)
            for task_id in scheduled:
                if done[task_id] != 1:
                    report.task_problems.append(f"{iid} task {task_id} completed {done[task_id]} times")
                if executions[(iid, task_id)] == 0:
                    report.unexecuted.append(f"{iid} task {task_id}")
        for worker in self.workers:
            report.worker_warnings.update(_warning_kinds(worker.log_path))
        result = audit(self.hub, self.cfg.bootstrap)
        report.audit_problems = list(result.problems)
        self._pauses(sorted(completion_times), report)
        return report

    def _pauses(self, times: list[float], report: LoadReport) -> None:
        if len(times) < 2:
            return
        gaps = list(zip(times, times[1:]))
        first_fault = self.faults[0].at if self.faults else self._load_stopped_at
        steady = [b - a for a, b in gaps if b < first_fault]
        report.baseline_gap_s = max(steady, default=0.0)
        report.long_gaps = [(a - self._began, b - a) for a, b in gaps if b - a > 2.0]
        # a gap belongs to the first fault inside it (the one that stopped progress); a gap with
        # no fault inside belongs to the latest fault before it (progress still recovering)
        for fault in self.faults:
            fault.pause_s = 0.0
        for a, b in gaps:
            if a > self._load_stopped_at:
                break
            inside = [f for f in self.faults if a <= f.at < b]
            before = [f for f in self.faults if f.at < a]
            owner = inside[0] if inside else before[-1] if before else None
            if owner is not None:
                owner.pause_s = max(owner.pause_s, b - a)


def _warning_kinds(path: Path) -> Counter:
    """Worker log lines of level WARNING and above, by message with digits blurred."""
    import re

    kinds: Counter = Counter()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return kinds
    for line in text.splitlines():
        if '"level":"WARNING"' in line or '"level":"ERROR"' in line or "Traceback" in line or "stopped by" in line:
            msg = line.split('"msg":"', 1)[-1]
            kinds[re.sub(r"\d+", "N", msg)[:160]] += 1
    return kinds


# ---------------------------------------------------------------------------------------------
# the three cases, shared by the scaled-down tests (tests/integration) and tests/chaos


def _heal(load: ClusterLoad, node_id: int) -> None:
    from durable_kafka.connectors import cluster

    cluster.start_node(load.cfg, node_id)
    cluster.wait_in_sync(load.cfg, timeout=180)


def kill_busiest_leader(load: ClusterLoad, down_s: float) -> int:
    """kill -9 the node leading the most hub partitions, keep it down ``down_s``, restart it."""
    from durable_kafka.connectors import cluster

    counts = cluster.leader_counts(load.cfg, load.topics.all())
    node = cluster.busiest_leader(load.cfg, load.topics.all())
    load.fault(f"kill -9 of node {node}, leader of {counts[node]}/{sum(counts.values())} hub partitions")
    cluster.kill_node(load.cfg, node)
    time.sleep(down_s)
    load.fault(f"restart of node {node}")
    _heal(load, node)
    return node


def kill_active_controller(load: ClusterLoad, down_s: float) -> tuple[int, int]:
    """kill -9 the active controller, wait for the new one, keep it down ``down_s``, restart it."""
    from durable_kafka.connectors import cluster

    node = cluster.active_controller(load.cfg)
    load.fault(f"kill -9 of node {node}, the active controller")
    cluster.kill_node(load.cfg, node)
    began = time.monotonic()
    successor = cluster.active_controller(load.cfg)
    load.say(f"  node {successor} is the active controller after {time.monotonic() - began:.1f}s")
    time.sleep(down_s)
    load.fault(f"restart of node {node}")
    _heal(load, node)
    return node, successor


def rolling_restart(load: ClusterLoad, settle_s: float) -> None:
    """Clean restart of every node in turn, each once the previous one's replicas are in sync."""
    from durable_kafka.connectors import cluster

    for node in load.cfg.node_ids:
        load.fault(f"rolling restart of node {node}")
        cluster.stop_node(load.cfg, node)
        _heal(load, node)
        time.sleep(settle_s)
