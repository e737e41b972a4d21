"""Trigger routes against the Python client: records/s into started instances, and latency.

Run (broker up: ``make broker-up``)::

    .venv/bin/python bench/triggers.py [--count 20000] [--partitions N] [--source-partitions 4]

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
(``--paced-rate`` requests/s, open loop) measures latency below saturation.
Nothing asserts a timing: progress lines, then a Markdown table with the trigger/client ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from _common import (  # noqa: E402
    ChildProcess,
    Ticker,
    fmt,
    load_average,
    markdown_table,
    percentile,
    progress,
    ratio,
    unique_name,
)
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from durable_kafka import Client, OrchestrationStatus  # noqa: E402
from durable_kafka.streams.admin import delete_hub  # noqa: E402
from durable_kafka.streams.codec import Codec  # noqa: E402
from durable_kafka.streams.config import bootstrap_servers  # noqa: E402
from durable_kafka.streams.events import InstanceStatus  # noqa: E402
from durable_kafka.streams.topics import DEFAULT_PARTITIONS, HubTopics  # noqa: E402

WARMUP = 200


@dataclass
class Phase:
    """One way in: when each instance was requested and when it was seen RUNNING (epoch s)."""

    label: str
    sent: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    send_seconds: float = 0.0

    def rate(self) -> float:
        done = [iid for iid in self.sent if iid in self.running]
        if not done:
            return float("nan")
        span = max(self.running[i] for i in done) - min(self.sent.values())
        return len(done) / span if span > 0 else float("nan")

    def latencies_ms(self) -> list[float]:
        return [(self.running[i] - t) * 1000 for i, t in self.sent.items() if i in self.running]


class StatusFeed:
    """Follows ``<hub>.status`` (read_committed) and records each instance's first RUNNING time."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self._codec = Codec.default()
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("bench-feed"),
                                   "isolation.level": "read_committed", "enable.auto.commit": False})
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.running: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="status-feed", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(1000, 0.1):
                if msg.error() or msg.value() is None:
                    continue
                status = self._codec.decode(msg.value())
                if not isinstance(status, InstanceStatus):
                    continue
                if status.runtime_status == OrchestrationStatus.RUNNING:
                    with self._lock:
                        self.running.setdefault(status.instance_id, status.last_updated_at.timestamp())

    def collect(self, phase: Phase, worker: ChildProcess, timeout: float) -> None:
        """Wait until every instance of ``phase`` is RUNNING, then copy their times into it."""
        deadline = time.monotonic() + timeout
        ticker = Ticker()
        while True:
            with self._lock:
                seen = sum(1 for iid in phase.sent if iid in self.running)
                if seen == len(phase.sent):
                    phase.running = {iid: self.running[iid] for iid in phase.sent}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20000, help="instances per way in (default 20000)")
    parser.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS, help="hub partitions")
    parser.add_argument("--source-partitions", type=int, default=4, help="partitions of the source topic")
    parser.add_argument("--paced-rate", type=float, default=500.0,
                        help="requests/s of the paced latency runs (default 500; 0 skips them)")
    parser.add_argument("--paced-count", type=int, default=3000, help="requests per paced run (default 3000)")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    bootstrap = bootstrap_servers()
    hub = unique_name("benchtrg")
    source = f"{hub}-source"
    topics = HubTopics(hub)
    state_dir = tempfile.mkdtemp(prefix="bench-triggers-")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(source, args.source_partitions, 1)]).values():
        fut.result(30)
    progress(f"load average {load_average()}; broker {bootstrap}; {args.count:,} instances per way in")
    env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": bootstrap, "BENCH_HUB": hub, "BENCH_STATE_DIR": state_dir,
           "BENCH_PARTITIONS": str(args.partitions), "BENCH_SOURCE": source}
    worker = client = feed = None
    paced_trig = paced_cli = None
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "acks": "all",
                         "enable.idempotence": True, "queue.buffering.max.messages": 200000})
    try:
        worker = ChildProcess([sys.executable, "-m", "durable_kafka", "worker", "_triggers_app:make_worker"],
                              name="durable-kafka worker", cwd=BENCH_DIR, env=env)
        worker.wait_for_line("running", 120)
        progress(f"worker pid {worker.pid} running on hub {hub} ({args.partitions} partitions), "
                 f"source {source} ({args.source_partitions} partitions)")
        client = Client(bootstrap, hub=hub)
        feed = StatusFeed(bootstrap, topics.status, args.partitions)

        progress(f"warm-up: {WARMUP} starts each way")
        feed.collect(send_triggers(producer, source, [f"wt-{i}" for i in range(WARMUP)], "warm-up trigger"),
                     worker, args.timeout)
        feed.collect(send_client(client, [f"wc-{i}" for i in range(WARMUP)], "warm-up client"), worker, args.timeout)

        progress(f"trigger: producing {args.count:,} records to {source}")
        trig = send_triggers(producer, source, [f"t-{i}" for i in range(args.count)], "trigger")
        progress(f"  sent in {trig.send_seconds:.2f}s ({args.count / trig.send_seconds:,.0f}/s)")
        feed.collect(trig, worker, args.timeout)
        progress(f"client: {args.count:,} schedule_new_orchestration(wait_for_acceptance=False) calls")
        cli = send_client(client, [f"c-{i}" for i in range(args.count)], "client")
        progress(f"  sent in {cli.send_seconds:.2f}s ({args.count / cli.send_seconds:,.0f}/s)")
        feed.collect(cli, worker, args.timeout)
        if args.paced_rate:
            progress(f"paced: {args.paced_count:,} requests at {args.paced_rate:,.0f}/s each way")
            paced_trig = send_triggers(producer, source, [f"pt-{i}" for i in range(args.paced_count)],
                                       "paced trigger", args.paced_rate)
            feed.collect(paced_trig, worker, args.timeout)
            paced_cli = send_client(client, [f"pc-{i}" for i in range(args.paced_count)], "paced client",
                                    args.paced_rate)
            feed.collect(paced_cli, worker, args.timeout)
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

    rows = []
    for name, get in (("started instances/s", lambda p: p.rate()),
                      ("request→RUNNING p50 (ms)", lambda p: percentile(p.latencies_ms(), 50)),
                      ("request→RUNNING p99 (ms)", lambda p: percentile(p.latencies_ms(), 99)),
                      ("send phase (records or calls/s)", lambda p: args.count / p.send_seconds)):
        a, b = get(trig), get(cli)
        rows.append([f"burst: {name}", fmt(a), fmt(b), ratio(a, b)])
    if paced_trig is not None and paced_cli is not None:
        for q in (50, 99):
            a, b = percentile(paced_trig.latencies_ms(), q), percentile(paced_cli.latencies_ms(), q)
            rows.append([f"paced {args.paced_rate:,.0f}/s: request→RUNNING p{q} (ms)", fmt(a), fmt(b), ratio(a, b)])
    print()
    print(f"Triggers vs client, {args.count:,} instances each, {args.partitions} hub partitions, "
          f"{args.source_partitions} source partitions; load average {load_average()}")
    print()
    print(markdown_table(["", "trigger route", "Python client", "trigger / client"], rows))


if __name__ == "__main__":
    main()
