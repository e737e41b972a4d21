"""Trigger routes against the Python client: records/s into started instances, and latency.

Run (broker up: ``make broker-up``)::

    .venv/bin/python bench/triggers.py [--count 20000] [--partitions N] [--source-partitions 4]
        [--rounds 3] [--baseline GIT_REF | --variant-env NAME=VALUE] [--profile DIR]

or ``make bench-triggers``. One worker subprocess serves one fresh hub with one Start route on a
fresh source topic; the orchestration it starts (``parked``) waits for an event that never
comes, so each instance reaches RUNNING and stays there. In ONE run, the same load goes in two
ways, one after the other, on the same worker:

  trigger  ``--count`` records produced to the source topic as fast as a confluent-kafka
           producer sends them (the record timestamp is the moment of the send);
  client   ``--count`` ``Client.schedule_new_orchestration(..., wait_for_acceptance=False)``
           calls from Python (the moment of the call is recorded per instance).

For each instance the time it became RUNNING is read from its first RUNNING snapshot on the
``<hub>.status`` change feed (``last_updated_at``, the worker's clock; one machine, one clock).
Throughput is instances / (last RUNNING - first send); latency is RUNNING - send, p50/p99. The
burst's latency is mostly queueing (everything is sent at once), so a paced run of each way
(``--paced-rate`` requests/s, open loop) measures latency below saturation. A trigger's latency
is split at its start command on ``<hub>.orchestrator-events`` (the record timestamp: when the
trigger processor produced it, before its commit): request -> command is the trigger
processor's hop, command -> RUNNING the rest. The worker's CPU per started instance (every
thread, from /proc) is the figure least moved by other load on the machine; the worker's
``bench-stats`` lines add each processor's transactions, records per transaction and the time of
its processing, ``send_offsets_to_transaction`` and ``commit_transaction`` per phase, and the
cyclic garbage collector's time.

``--rounds`` repeats the whole run with a fresh worker and hub and reports medians;
``--baseline REF`` also runs a worker of another git revision (``git archive`` into /tmp, on
PYTHONPATH) alternating with this checkout round by round, and ``--variant-env`` this checkout
with environment variables set (the bench app's knobs: ``BENCH_GC_THRESHOLD``,
``BENCH_GC_FREEZE``, ``BENCH_SWITCH_INTERVAL``). ``--profile DIR`` runs py-spy on the worker
during each burst. Nothing asserts a timing: progress lines, then Markdown tables.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from _common import (  # noqa: E402
    ChildProcess,
    PySpy,
    cpu_seconds,
    Ticker,
    fmt,
    load_average,
    markdown_table,
    median,
    percentile,
    progress,
    ratio,
    summarise_collapsed,
    unique_name,
)
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from durable_kafka import Client, OrchestrationStatus  # noqa: E402
from durable_kafka.streams.admin import delete_hub  # noqa: E402
from durable_kafka.streams.codec import Codec  # noqa: E402
from durable_kafka.streams.config import bootstrap_servers  # noqa: E402
from durable_kafka.streams.events import InstanceStatus, OrchestratorMessage, StartOrchestration  # noqa: E402
from durable_kafka.streams.topics import DEFAULT_PARTITIONS, HubTopics  # noqa: E402

WARMUP = 200


@dataclass
class Phase:
    """One way in: when each instance was requested and when it was seen RUNNING (epoch s)."""

    label: str
    sent: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    commanded: dict[str, float] = field(default_factory=dict)  # start command produced (record timestamp)
    send_seconds: float = 0.0
    #: the worker's processor counters over the phase (StatsTap.delta)
    processors: dict[str, dict[str, float]] = field(default_factory=dict)
    #: CPU seconds the worker process used during the phase (every thread, librdkafka's too)
    worker_cpu_s: float = float("nan")

    def cpu_ms_per_instance(self) -> float:
        return 1000 * self.worker_cpu_s / len(self.sent) if self.sent else float("nan")

    def rate(self) -> float:
        done = [iid for iid in self.sent if iid in self.running]
        if not done:
            return float("nan")
        span = max(self.running[i] for i in done) - min(self.sent.values())
        return len(done) / span if span > 0 else float("nan")

    def latencies_ms(self) -> list[float]:
        return [(self.running[i] - t) * 1000 for i, t in self.sent.items() if i in self.running]

    def to_command_ms(self) -> list[float]:
        """Request -> its start command produced to orchestrator-events (the trigger processor's hop)."""
        return [(self.commanded[i] - t) * 1000 for i, t in self.sent.items() if i in self.commanded]

    def command_to_running_ms(self) -> list[float]:
        return [(self.running[i] - c) * 1000 for i, c in self.commanded.items() if i in self.running]


class StatsTap:
    """The worker's ``bench-stats`` lines (bench/_triggers_app.py): processor counters, once a second."""

    def __init__(self, worker: ChildProcess) -> None:
        self.latest: dict[str, dict[str, float]] = {}
        worker.listeners.append(self._line)

    def _line(self, line: str) -> None:
        if line.startswith("bench-stats "):
            self.latest = json.loads(line[len("bench-stats "):])

    def delta(self, before: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        time.sleep(1.2)  # the next line covers the phase's last commits
        return {name: {k: v if k == "max_rss_mib" else _minus(v, before.get(name, {}).get(k, 0))
                       for k, v in now.items()}
                for name, now in self.latest.items()}


def _minus(now: Any, before: Any) -> Any:
    if isinstance(now, list):
        return [a - b for a, b in zip(now, before or [0] * len(now))]
    return now - before


def describe_processors(counters: dict[str, dict[str, float]]) -> str:
    """``name: records/transaction, ms processing and ms committing per transaction`` of each processor."""
    parts = []
    for name, c in sorted(counters.items()):
        if name == "gc":
            parts.append(f"gc: {c.get('collections', 0):,.0f} collections, {c.get('gc_s', 0):.2f} s, "
                         f"worker max RSS {c.get('max_rss_mib', 0):,.0f} MiB")
            continue
        batches = c.get("batches", 0)
        if batches:
            split = ""
            if "parts_s" in c:  # the commit's two calls (the timings deque keeps the last 4,096)
                split = (f" (send_offsets {1000 * c['parts_s'][1] / batches:.1f} + commit "
                         f"{1000 * c['parts_s'][2] / batches:.1f})")
            parts.append(f"{name}: {batches:,.0f} transactions, {c['records'] / batches:,.1f} records each, "
                         f"{1000 * c['process_s'] / batches:.1f} ms processing + "
                         f"{1000 * c['commit_s'] / batches:.1f} ms committing{split} per transaction")
    return "; ".join(parts)


class StatusFeed:
    """Follows ``<hub>.status`` (read_committed) and records each instance's first RUNNING time.

    It also follows ``<hub>.orchestrator-events`` and records when each instance's start command
    was produced (the record timestamp: the trigger processor's produce, or the client's), which
    splits a trigger's latency into its two hops.
    """

    def __init__(self, bootstrap: str, topics: HubTopics, partitions: int) -> None:
        self._codec = Codec.default()
        self._status = topics.status
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("bench-feed"),
                                   "isolation.level": "read_committed", "enable.auto.commit": False})
        self._consumer.assign([TopicPartition(t, p, 0) for t in (topics.status, topics.orchestrator_events)
                               for p in range(partitions)])
        self.running: dict[str, float] = {}
        self.commanded: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="status-feed", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(1000, 0.1):
                if msg.error() or msg.value() is None:
                    continue
                record = self._codec.decode(msg.value())
                if isinstance(record, OrchestratorMessage):
                    if isinstance(record.body, StartOrchestration):
                        with self._lock:
                            self.commanded.setdefault(record.instance_id, msg.timestamp()[1] / 1000)
                    continue
                if not isinstance(record, InstanceStatus):
                    continue
                if record.runtime_status == OrchestrationStatus.RUNNING:
                    with self._lock:
                        self.running.setdefault(record.instance_id, record.last_updated_at.timestamp())

    def collect(self, phase: Phase, worker: ChildProcess, timeout: float) -> None:
        """Wait until every instance of ``phase`` is RUNNING, then copy their times into it."""
        deadline = time.monotonic() + timeout
        ticker = Ticker()
        while True:
            with self._lock:
                seen = sum(1 for iid in phase.sent if iid in self.running)
                if seen == len(phase.sent):
                    phase.running = {iid: self.running[iid] for iid in phase.sent}
                    phase.commanded = {iid: self.commanded[iid] for iid in phase.sent if iid in self.commanded}
                    return
            if ticker.due():
                progress(f"  {phase.label}: {seen:,}/{len(phase.sent):,} RUNNING")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{phase.label}: only {seen}/{len(phase.sent)} RUNNING after {timeout}s")
            worker.check_alive()
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def _pace(i: int, began: float, rate: float | None) -> None:
    """With a rate, sleep until request ``i`` is due (an open-loop load, as services send)."""
    if rate:
        delay = began + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def send_triggers(producer: Producer, source: str, ids: list[str], label: str, rate: float | None = None) -> Phase:
    phase = Phase(label)
    began = time.perf_counter()
    for i, iid in enumerate(ids):
        _pace(i, began, rate)
        now = time.time()
        phase.sent[iid] = now
        while True:
            try:
                producer.produce(source, key=iid.encode(), value=b"{}", timestamp=int(now * 1000))
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    phase.send_seconds = time.perf_counter() - began
    return phase


def send_client(client: Client, ids: list[str], label: str, rate: float | None = None) -> Phase:
    phase = Phase(label)
    began = time.perf_counter()
    for i, iid in enumerate(ids):
        _pace(i, began, rate)
        phase.sent[iid] = time.time()
        client.schedule_new_orchestration("parked", instance_id=iid, wait_for_acceptance=False)
    client.flush()
    phase.send_seconds = time.perf_counter() - began
    return phase


@contextlib.contextmanager
def profiled(out: str | None, worker: ChildProcess, label: str | None):
    """With ``--profile DIR``: py-spy the worker during one phase, print a summary (label None: not this one)."""
    if not out or label is None:
        yield
        return
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"worker-{label}.collapsed"
    spy = PySpy(worker.pid, path)
    try:
        yield
    finally:
        spy.stop()
        summary = summarise_collapsed(path)
        (out_dir / f"worker-{label}.txt").write_text(summary + "\n")
        progress(f"py-spy profile of the worker during {label}: {path} (summary in {path.with_suffix('.txt')})")
        print(summary, flush=True)


@dataclass
class Variant:
    """The engine code a worker runs: this checkout, or a snapshot of another git revision."""

    label: str
    pythonpath: str | None = None  # a tree laid out as the installed package; None: this checkout
    env: dict[str, str] = field(default_factory=dict)  # more environment for its worker


def snapshot_tree(ref: str) -> Variant:
    """``git archive`` of ``ref`` laid out as the installed package (pyproject's package-dir), in /tmp."""
    repo = BENCH_DIR.parent
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=repo, check=True, capture_output=True,
                         text=True).stdout.strip()
    root = Path(tempfile.gettempdir()) / f"dk-bench-{sha}"
    tree = root / "tree"
    if not (tree / "durable_kafka" / "__init__.py").exists():
        shutil.rmtree(root, ignore_errors=True)
        (root / "src").mkdir(parents=True)
        archive = subprocess.run(["git", "archive", ref], cwd=repo, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(root / "src")], input=archive, check=True)
        package = tree / "durable_kafka"
        package.mkdir(parents=True)
        for entry in (root / "src" / "durable_kafka").iterdir():
            (package / entry.name).symlink_to(entry)
        for sub in ("streams", "processors", "connectors", "schemas"):
            (package / sub).symlink_to(root / "src" / sub)
    return Variant(f"{ref} ({sha})", str(tree))


def run_round(args: argparse.Namespace, variant: Variant, bootstrap: str, round_no: int) -> dict[str, Phase]:
    """One worker of ``variant`` on a fresh hub: warm-up, both bursts, both paced runs."""
    hub = unique_name("benchtrg")
    source = f"{hub}-source"
    topics = HubTopics(hub)
    state_dir = tempfile.mkdtemp(prefix="bench-triggers-")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(source, args.source_partitions, 1)]).values():
        fut.result(30)
    env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": bootstrap, "BENCH_HUB": hub, "BENCH_STATE_DIR": state_dir,
           "BENCH_PARTITIONS": str(args.partitions), "BENCH_SOURCE": source}
    env.update(variant.env)
    if variant.pythonpath:
        env["PYTHONPATH"] = variant.pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    phases: dict[str, Phase] = {}
    worker = client = feed = None
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "acks": "all",
                         "enable.idempotence": True, "queue.buffering.max.messages": 200000})
    tag = f"round {round_no} {variant.label}"
    try:
        worker = ChildProcess([sys.executable, "-m", "durable_kafka", "worker", "_triggers_app:make_worker"],
                              name="durable-kafka worker", cwd=BENCH_DIR, env=env)
        worker.wait_for_line("running", 120)
        progress(f"{tag}: worker pid {worker.pid} running on hub {hub} ({args.partitions} partitions), "
                 f"source {source} ({args.source_partitions} partitions); load average {load_average()}")
        client = Client(bootstrap, hub=hub)
        feed = StatusFeed(bootstrap, topics, args.partitions)
        tap = StatsTap(worker)

        def phase(label: str, send: Callable[[], Phase]) -> None:
            before = tap.latest
            cpu_before = cpu_seconds(worker.pid)
            with profiled(args.profile, worker, f"{label}-{round_no}-{variant.label.split()[0]}"
                          if label.endswith("burst") else None):
                result = send()
                feed.collect(result, worker, args.timeout)
            cpu_after = cpu_seconds(worker.pid)
            if cpu_before is not None and cpu_after is not None:
                result.worker_cpu_s = cpu_after - cpu_before
            result.processors = tap.delta(before)
            phases[label] = result
            progress(f"  {tag} {label}: {result.rate():,.0f} started/s, request→RUNNING p50 "
                     f"{percentile(result.latencies_ms(), 50):,.1f} ms, worker CPU {result.cpu_ms_per_instance():.2f} ms "
                     f"per instance; {describe_processors(result.processors)}")

        feed.collect(send_triggers(producer, source, [f"wt-{i}" for i in range(WARMUP)], "warm-up trigger"),
                     worker, args.timeout)
        feed.collect(send_client(client, [f"wc-{i}" for i in range(WARMUP)], "warm-up client"), worker, args.timeout)
        phase("trigger burst", lambda: send_triggers(producer, source, [f"t-{i}" for i in range(args.count)],
                                                     "trigger"))
        phase("client burst", lambda: send_client(client, [f"c-{i}" for i in range(args.count)], "client"))
        if args.paced_rate:
            phase("trigger paced", lambda: send_triggers(producer, source, [f"pt-{i}" for i in range(args.paced_count)],
                                                         "paced trigger", args.paced_rate))
            phase("client paced", lambda: send_client(client, [f"pc-{i}" for i in range(args.paced_count)],
                                                      "paced client", args.paced_rate))
    finally:
        if feed is not None:
            feed.close()
        if client is not None:
            client.close()
        if worker is not None:
            worker.stop()
        try:
            delete_hub(hub, bootstrap=bootstrap)
            admin.delete_topics([source])
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)
    return phases


#: (row name, phase, figure of a phase): the table's rows
FIGURES: list[tuple[str, str, Callable[[Phase], float]]] = [
    ("burst: started instances/s", "burst", lambda p: p.rate()),
    ("burst: request→RUNNING p50 (ms)", "burst", lambda p: percentile(p.latencies_ms(), 50)),
    ("burst: request→RUNNING p99 (ms)", "burst", lambda p: percentile(p.latencies_ms(), 99)),
    ("burst: send phase (records or calls/s)", "burst", lambda p: len(p.sent) / p.send_seconds),
    ("burst: worker CPU per started instance (µs)", "burst", lambda p: 1000 * p.cpu_ms_per_instance()),
    ("burst: instances/s per worker CPU core (1 / CPU per instance)", "burst", lambda p: 1000 / p.cpu_ms_per_instance()),
    ("paced: request→RUNNING p50 (ms)", "paced", lambda p: percentile(p.latencies_ms(), 50)),
    ("paced: request→RUNNING p99 (ms)", "paced", lambda p: percentile(p.latencies_ms(), 99)),
    # the trigger's two hops (for the client the first is ~0: its call produces the command)
    ("paced: request→start command produced p50 (ms)", "paced", lambda p: percentile(p.to_command_ms(), 50)),
    ("paced: start command produced→RUNNING p50 (ms)", "paced", lambda p: percentile(p.command_to_running_ms(), 50)),
]


def figure(rounds: list[dict[str, Phase]], way: str, kind: str, get: Callable[[Phase], float]) -> tuple[float, str]:
    """The median over rounds of one figure, and every round's value."""
    values = [get(r[f"{way} {kind}"]) for r in rounds if f"{way} {kind}" in r]
    if not values:
        return float("nan"), ""
    return median(values), " / ".join(fmt(v, 0 if v >= 100 else 1) for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20000, help="instances per way in (default 20000)")
    parser.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS, help="hub partitions")
    parser.add_argument("--source-partitions", type=int, default=4, help="partitions of the source topic")
    parser.add_argument("--paced-rate", type=float, default=500.0,
                        help="requests/s of the paced latency runs (default 500; 0 skips them)")
    parser.add_argument("--paced-count", type=int, default=3000, help="requests per paced run (default 3000)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds (a fresh worker and hub each); medians reported")
    parser.add_argument("--baseline", metavar="GIT_REF", default=None,
                        help="also run a worker of this revision (git archive), alternating with this checkout "
                             "round by round, and compare")
    parser.add_argument("--variant-env", metavar="NAME=VALUE", action="append", default=[],
                        help="also run this checkout with these environment variables set (e.g. the bench "
                             "app's BENCH_GC_THRESHOLD=50000,20,10), alternating with it round by round")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="py-spy the worker during each burst (needs py-spy); collapsed stacks and summaries in DIR")
    args = parser.parse_args()

    bootstrap = bootstrap_servers()
    variants = [Variant("this checkout")]
    if args.baseline:
        variants.insert(0, snapshot_tree(args.baseline))
    elif args.variant_env:
        settings = dict(item.split("=", 1) for item in args.variant_env)
        variants.append(Variant("with " + " ".join(args.variant_env), env=settings))
    loads = [load_average()]
    progress(f"load average {loads[0]}; broker {bootstrap}; {args.count:,} instances per way in; "
             f"{args.rounds} round(s) of {', '.join(v.label for v in variants)}")
    results: dict[str, list[dict[str, Phase]]] = {v.label: [] for v in variants}
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else variants[::-1]  # alternate who goes first
        for variant in order:
            results[variant.label].append(run_round(args, variant, bootstrap, r + 1))
            loads.append(load_average())

    print()
    print(f"Triggers vs client, {args.count:,} burst instances each way, paced {args.paced_count:,} at "
          f"{args.paced_rate:,.0f}/s, {args.partitions} hub partitions, {args.source_partitions} source partitions; "
          f"{args.rounds} round(s), medians (every round after the median); load average "
          f"{' -> '.join(loads)}")
    for variant in variants:
        rounds = results[variant.label]
        rows = []
        for name, kind, get in FIGURES:
            (a, a_all), (b, b_all) = figure(rounds, "trigger", kind, get), figure(rounds, "client", kind, get)
            rows.append([name, fmt(a), fmt(b), ratio(a, b), a_all, b_all])
        print()
        print(f"{variant.label}:")
        print()
        print(markdown_table(["", "trigger route", "Python client", "trigger / client", "trigger, every round",
                              "client, every round"], rows))
        for kind in ("burst", "paced"):
            for way in ("trigger", "client"):
                for r_no, rnd in enumerate(rounds, 1):
                    ph = rnd.get(f"{way} {kind}")
                    if ph is not None and ph.processors:
                        print(f"  {way} {kind}, round {r_no}: {describe_processors(ph.processors)}")
    if len(variants) == 2:
        base, this = variants
        rows = []
        for way in ("trigger", "client"):
            for name, kind, get in FIGURES:
                a, _ = figure(results[base.label], way, kind, get)
                b, _ = figure(results[this.label], way, kind, get)
                rows.append([f"{way} {name}", fmt(a), fmt(b), ratio(b, a)])
        print()
        print(markdown_table(["median", base.label, this.label, "this / baseline"], rows))


if __name__ == "__main__":
    main()
