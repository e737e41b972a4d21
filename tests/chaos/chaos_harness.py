"""What every chaos scenario (and the soak run) shares: worker processes, sizes, the ledger.

Why one ledger for all scenarios: "0 lost, 0 duplicated, 0 stuck" must mean the same thing in
every row of docs/RELIABILITY.md. It is computed from what is durable, not from what the
client saw: the committed ``<hub>.history`` topic (read_committed, with each record's Kafka
timestamp) and the activities' side-effect file.

  * lost: an instance the client handed to Kafka that never started (no ExecutionStarted);
  * stuck: started, but not completed by the deadline;
  * duplicated: an instance with more than one ExecutionStarted or ExecutionCompleted, a task
    completed twice, a timer fired twice, or a history record id written twice;
  * wrong: completed with an output other than the expected one;
  * re-executed: activity executions (side-effect lines) beyond one per (instance, task):
    allowed (activities are at-least-once), counted and printed.

Pause lengths (printed, never asserted): the longest gap between consecutive completions, and
for each disruption the time from its end (restart, SIGCONT) to the first history record
committed after it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import LIBRDKAFKA_LOGGER_NAME
from sizes import scale, sized  # noqa: F401 - re-exported; tests/ is on sys.path (rootdir conftest, soak.py)

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.chaos.chaos_app:make_worker"

#: Summary lines of the scenarios run in this process (conftest prints them after the run).
SUMMARIES: list[str] = []


# ------------------------------------------------------------------------------------ sizes
# scale() and sized() are tests/sizes.py's (the one DK_CHAOS_SCALE knob), re-exported here.


def wait_until(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until truthy; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------ workers
class WorkerProcess:
    """One ``python -m durable_kafka worker`` subprocess with a fixed identity and state dir.

    Output goes to a log file, not a pipe: a pipe nobody reads fills up and freezes the worker,
    which would look like exactly the kind of stall the scenarios measure.
    """

    def __init__(self, bootstrap: str, hub: str, partitions: int, workdir: Path, worker_id: str = "w1",
                 effects: Path | None = None, stuck_after: float = 30.0, log_level: str = "WARNING") -> None:
        self.bootstrap, self.hub, self.partitions = bootstrap, hub, partitions
        self.worker_id = worker_id
        self.state_dir = workdir / f"state-{worker_id}"
        self.log_path = workdir / f"{worker_id}.log"
        self.effects = effects
        self.stuck_after = stuck_after
        self.log_level = log_level
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 90.0) -> WorkerProcess:
        """Spawn and return once the worker printed that it runs (it then owns its partitions)."""
        env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": self.bootstrap, "DK_CHAOS_HUB": self.hub,
               "DK_CHAOS_STATE": str(self.state_dir), "DK_CHAOS_PARTITIONS": str(self.partitions),
               "DK_CHAOS_WORKER_ID": self.worker_id, "DK_STUCK_AFTER": str(self.stuck_after),
               "DK_CHAOS_EFFECTS": str(self.effects) if self.effects else ""}
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            log.write(f"==== start {self.starts} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "durable_kafka", "worker", APP, "--log-level", self.log_level],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            text = self._log_from(offset)
            if "running on hub" in text:
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.worker_id} exited with {self.proc.returncode}: {text[-2000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"worker {self.worker_id} not running after {timeout:.0f}s: {text[-2000:]}")
            time.sleep(0.1)

    def _log_from(self, offset: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def log_text(self) -> str:
        return self._log_from(0) if self.log_path.exists() else ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL (a SIGCONT first would be wrong: a stopped process dies on SIGKILL too)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful: leaves the group), SIGKILL if it does not exit in ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused worker could not act on SIGTERM
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def rss_bytes(self) -> int | None:
        return rss_of(self.pid) if self.alive() else None


def rss_of(pid: int | None) -> int | None:
    """Resident set size of ``pid`` from /proc (None if it is gone)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# ------------------------------------------------------------------------------------ reading
def read_committed(bootstrap: str, topic: str, codec: Codec | None = None,
                   timeout: float = 120.0) -> list[tuple[int, bytes | None, Any]]:
    """Every committed record of ``topic`` as (timestamp ms, key, decoded value or raw bytes).

    Like ``connectors.audit.read_topic`` but keeping each record's timestamp (the pause lengths
    come from them) and bounded by ``timeout``.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"chaos-{uuid.uuid4().hex}",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10,
                         "logger": logging.getLogger(LIBRDKAFKA_LOGGER_NAME)})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        bounds = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in meta.partitions}
        pending = {p: hi for p, (lo, hi) in bounds.items() if hi > lo}
        consumer.assign([TopicPartition(topic, p, bounds[p][0]) for p in pending])
        out: list[tuple[int, bytes | None, Any]] = []
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"reading {topic} took over {timeout:.0f}s")
            for m in consumer.consume(1000, 0.2):
                if m.error() is None:
                    value = m.value()
                    if codec is not None and value is not None:
                        value = codec.decode(value)
                    out.append((m.timestamp()[1], m.key(), value))
                elif m.error().code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(str(m.error()))
            for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
                if tp.offset >= pending[tp.partition]:
                    del pending[tp.partition]
        return out
    finally:
        consumer.close()


def read_effects(path: Path | None) -> Counter:
    """(instance, task id) -> how many times the activity function ran."""
    runs: Counter = Counter()
    if path is None or not path.exists():
        return runs
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            runs[(parts[0], int(parts[1]))] += 1
    return runs


# ------------------------------------------------------------------------------------ the ledger
@dataclass
class Disruption:
    """One fault injected: its label and the wall-clock time (time.time()) the pause is measured
    from: the kill itself for a kill -9 (so the figure includes the restart, as a user sees it),
    the SIGCONT for a pause, the scale event for a rebalance."""

    label: str
    at: float


@dataclass
class Verdict:
    scenario: str
    expected: int
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    executions: int = 0
    reexecuted: int = 0
    longest_gap_s: float = 0.0
    recoveries: list[tuple[str, float | None]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.stuck or self.duplicated or self.wrong)

    def line(self) -> str:
        rec = ", ".join(f"{label} {s:.1f}s" if s is not None else f"{label} none" for label, s in self.recoveries)
        worst = max((s for _, s in self.recoveries if s is not None), default=None)
        extra = "".join(f" {k}={v}" for k, v in self.extra.items())
        return (f"[chaos] {self.scenario}: instances={self.expected} lost={len(self.lost)} "
                f"duplicated={len(self.duplicated)} stuck={len(self.stuck)} wrong={len(self.wrong)} "
                f"activity_runs={self.executions} re-executed={self.reexecuted} "
                f"longest_completion_gap={self.longest_gap_s:.1f}s "
                f"worst_first_progress={'%.1fs' % worst if worst is not None else 'n/a'}"
                f"{extra}" + (f" ({rec})" if rec else ""))

    def report(self) -> str:
        """Print and remember the summary line; return it."""
        text = self.line()
        print(text, flush=True)
        SUMMARIES.append(text)
        return text

    def assert_clean(self) -> None:
        assert self.ok, (f"{self.line()}\n lost={self.lost[:5]} stuck={self.stuck[:5]} "
                         f"duplicated={self.duplicated[:5]} wrong={self.wrong[:5]}")


def judge(scenario: str, bootstrap: str, history_topic: str, expected: dict[str, Any],
          effects: Path | None = None, disruptions: Iterable[Disruption] = (),
          check_output: Callable[[str, Any], bool] | None = None) -> Verdict:
    """Build the verdict for the instances ``expected`` (id -> expected output or None).

    ``check_output(id, output)`` overrides the equality check (outputs are compared as JSON
    values). Entity histories ('@...') and other instances on the hub are ignored.
    """
    import json

    records = [(ts, r) for ts, _k, v in read_committed(bootstrap, history_topic, Codec.default())
               for r in ev.history_records(v) if r.instance_id in expected]
    ids = Counter(r.id for _, r in records)
    by_instance: dict[str, list[tuple[int, ev.HistoryRecord]]] = defaultdict(list)
    for ts, r in records:
        by_instance[r.instance_id].append((ts, r))
    verdict = Verdict(scenario, len(expected))
    completions: list[int] = []
    for iid, want in expected.items():
        recs = [r for _, r in by_instance.get(iid, [])]
        starts = sum(isinstance(r.event, ev.ExecutionStarted) for r in recs)
        ends = [(ts, r) for ts, r in by_instance.get(iid, []) if isinstance(r.event, ev.ExecutionCompleted)]
        tasks = Counter(r.event.task_scheduled_id for r in recs if isinstance(r.event, (ev.TaskCompleted, ev.TaskFailed)))
        timers = Counter(r.event.timer_id for r in recs if isinstance(r.event, ev.TimerFired))
        dup_ids = [r.id for r in recs if ids[r.id] > 1]
        if starts > 1 or len(ends) > 1 or any(c > 1 for c in tasks.values()) or any(c > 1 for c in timers.values()) \
                or dup_ids:
            verdict.duplicated.append(iid)
        if starts == 0:
            verdict.lost.append(iid)
            continue
        if not ends:
            verdict.stuck.append(iid)
            continue
        completions.append(ends[0][0])
        event = ends[0][1].event
        output = json.loads(event.result) if event.result is not None else None
        good = check_output(iid, output) if check_output else (event.runtime_status == "COMPLETED" and output == want)
        if not good:
            verdict.wrong.append(iid)
    completions.sort()
    verdict.longest_gap_s = max((b - a for a, b in zip(completions, completions[1:])), default=0) / 1000
    stamps = sorted(ts for ts, _ in records)
    for d in disruptions:
        after = next((ts for ts in stamps if ts / 1000 >= d.at), None)
        verdict.recoveries.append((d.label, (after / 1000 - d.at) if after is not None else None))
    runs = read_effects(effects)
    runs = Counter({k: v for k, v in runs.items() if k[0] in expected})
    verdict.executions = sum(runs.values())
    verdict.reexecuted = sum(v - 1 for v in runs.values())
    return verdict


def wait_all_done(client: Any, ids: Iterable[str], timeout: float, on_tick: Callable[[int, int], None] | None = None
                  ) -> list[str]:
    """Wait (bounded) until every id has a terminal status; return the ones still not done."""
    from durable_kafka import OrchestrationStatus

    terminal = {OrchestrationStatus.COMPLETED, OrchestrationStatus.FAILED, OrchestrationStatus.TERMINATED}
    pending = list(ids)
    total = len(pending)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        still = []
        for iid in pending:
            s = client.get_orchestration_state(iid, fetch_payloads=False)
            if s is None or s.runtime_status not in terminal:
                still.append(iid)
        pending = still
        if on_tick is not None:
            on_tick(total - len(pending), total)
        if pending:
            time.sleep(0.5)
    return pending


def schedule_flows(client: Any, prefix: str, first: int, count: int, timer_s: Callable[[int], float] | None = None
                   ) -> dict[str, Any]:
    """Queue ``count`` chaos_flow instances (ids '<prefix>-<n>'); return id -> expected output."""
    from chaos_app import expected_flow_output  # tests/chaos is on sys.path

    expected: dict[str, Any] = {}
    for n in range(first, first + count):
        iid = f"{prefix}-{n}"
        spec = {"n": n, "timer_s": timer_s(n) if timer_s else 1.0 + (n % 4) * 0.5}
        client.schedule_new_orchestration("chaos_flow", input=spec, instance_id=iid, wait_for_acceptance=False)
        expected[iid] = expected_flow_output(n)
    client.flush()
    return expected


def not_done(client: Any, ids: Iterable[str]) -> int:
    """How many of ``ids`` have no terminal status yet (from the client's status cache)."""
    return len(wait_all_done(client, ids, timeout=0))
