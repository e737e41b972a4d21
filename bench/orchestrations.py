"""Orchestration benchmarks of durable-kafka, with the Temporal dev server as a peer.

Run (broker up: ``.venv/bin/python -m durable_kafka.connectors.broker up``; Temporal from
``pip install -e '.[bench]'``)::

    .venv/bin/python bench/orchestrations.py [--instances 1000] [--fanout 1000] [--timers 10000]
        [--latency-runs 60] [--partitions N] [--skip-peer] [--only hello,latency,fanout,timers]

Workloads, each run on durable-kafka and then on Temporal in the same invocation:

  hello    HelloSequence5 (five trivial activities in sequence, Netherite's workload): N
           instances started together; completed orchestrations/s from the first start to the
           last completion observed by the client.
  latency  one HelloSequence5 at a time on an idle system: p50/p99 from schedule to the
           client observing completion.
  fanout   one orchestration fanning out N activities and fanning in: activities/s.
  timers   N instances each waiting on a one-hour durable timer, in a fresh worker: the worker
           process's resident memory (VmRSS) once all are started and waiting.

Each engine's worker runs in its own process (no shared GIL with the client; its VmRSS is read
from /proc). For durable-kafka the Kafka records written per orchestration are counted from the
topics' end offsets before and after the hello run (and by reading the committed records), and
turned into a ceiling with the physical-limit probe's rate. Nothing here asserts a timing: it
prints progress lines, then one table per workload.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import shutil
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from _common import (  # noqa: E402
    ChildProcess,
    ProbeRate,
    PySpy,
    Ticker,
    count_committed_records,
    cpu_seconds,
    end_offsets,
    fmt,
    free_port,
    load_average,
    markdown_table,
    measure_probe_rate,
    median,
    offset_deltas,
    percentile,
    probe_rate_from_doc,
    progress,
    ratio,
    rss_mib,
    summarise_collapsed,
    unique_name,
)

from durable_kafka import Client, OrchestrationStatus  # noqa: E402
from durable_kafka.client import OrchestrationQuery  # noqa: E402
from durable_kafka.streams.admin import delete_hub  # noqa: E402
from durable_kafka.streams.config import bootstrap_servers  # noqa: E402
from durable_kafka.streams.topics import DEFAULT_PARTITIONS, HubTopics  # noqa: E402

WORKLOADS = ("hello", "latency", "fanout", "timers")
TERMINAL = [OrchestrationStatus.COMPLETED, OrchestrationStatus.FAILED, OrchestrationStatus.TERMINATED]
TIMER_SECONDS = 3600.0
START_THREADS = 8  # client threads scheduling instances in bulk (each produce waits for its ack)
LATENCY_WARMUP = 5
LATENCY_PAUSE = 0.02  # seconds between latency runs, so each one meets an idle system
SETTLE = 3.0  # seconds between "all timers waiting" and reading resident memory
EXPECTED_HELLO = [f"Hello {c}!" for c in ("Tokyo", "Seattle", "London", "Amsterdam", "Tampa")]


@dataclass
class Figures:
    """What one engine measured; None where a workload did not run."""

    hello_rate: float | None = None
    hello_seconds: float | None = None
    hello_start_seconds: float | None = None
    hello_engine_rate: float | None = None
    hello_failures: int = 0
    hello_worker_cores: float | None = None  # CPU seconds used per wall second during the run
    hello_server_cores: float | None = None
    latency_ms: list[float] = field(default_factory=list)
    accept_ms: list[float] = field(default_factory=list)
    fanout_rate: float | None = None
    fanout_seconds: float | None = None
    fanout_runs: list[float] = field(default_factory=list)
    timers_rss: float | None = None
    timers_hwm: float | None = None
    timers_idle_rss: float | None = None
    timers_start_rate: float | None = None
    server_rss: float | None = None
    server_idle_rss: float | None = None
    hello_records: dict[str, tuple[int, int]] = field(default_factory=dict)  # topic -> (offsets, records)
    fanout_records: dict[str, tuple[int, int]] = field(default_factory=dict)


# =========================================================================== durable-kafka


class OursSystem:
    """A fresh hub, a worker subprocess (``python -m durable_kafka worker``) and a client."""

    def __init__(self, bootstrap: str, partitions: int, observe: str = "off") -> None:
        self.bootstrap = bootstrap
        self.hub = unique_name("bench")
        self.topics = HubTopics(self.hub)
        self.state_dir = tempfile.mkdtemp(prefix="bench-ours-")
        env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": bootstrap, "BENCH_HUB": self.hub,
               "BENCH_STATE_DIR": self.state_dir, "BENCH_PARTITIONS": str(partitions)}
        #: --observability: the worker serves metrics here and/or traces into a no-op exporter
        self.metrics_port = free_port() if observe in ("metrics", "both") else None
        #: "tracing-sampled": the worker traces, the callers' contexts are sampled 1 in 10
        self.sample_every: int | None = 10 if observe == "tracing-sampled" else None
        env["BENCH_OBSERVE"] = "tracing" if observe == "tracing-sampled" else observe
        if self.metrics_port is not None:
            env["BENCH_METRICS_PORT"] = str(self.metrics_port)
        self.worker: ChildProcess | None = None
        self.client: Client | None = None
        try:
            self.worker = ChildProcess([sys.executable, "-m", "durable_kafka", "worker", "_ours_app:make_worker"],
                                       name="durable-kafka worker", cwd=BENCH_DIR, env=env)
            self.worker.wait_for_line("running", 120)
            self.client = Client(bootstrap, hub=self.hub)
        except BaseException:
            self.close()
            raise
        progress(f"durable-kafka worker pid {self.worker.pid} running on hub {self.hub} ({partitions} partitions)")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.worker is not None:
            self.worker.stop()
        try:
            delete_hub(self.hub, bootstrap=self.bootstrap)
        finally:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def start_many(self, name: str, ids: list[str], input_value: object) -> float:
        """Schedule every id (bulk mode: no acceptance wait) from a few threads; seconds taken."""
        began = time.perf_counter()

        def start(n_iid: tuple[int, str]) -> None:
            n, iid = n_iid
            if self.sample_every is None:
                self.client.schedule_new_orchestration(name, input=input_value, instance_id=iid,
                                                       wait_for_acceptance=False)
                return
            # the caller's span context: sampled for one start in sample_every, as a ratio sampler would
            from opentelemetry import context, trace

            caller = trace.SpanContext(random.getrandbits(128) or 1, random.getrandbits(64) or 1, is_remote=False,
                                       trace_flags=trace.TraceFlags(1 if n % self.sample_every == 0 else 0))
            token = context.attach(trace.set_span_in_context(trace.NonRecordingSpan(caller)))
            try:
                self.client.schedule_new_orchestration(name, input=input_value, instance_id=iid,
                                                       wait_for_acceptance=False)
            finally:
                context.detach(token)

        with ThreadPoolExecutor(START_THREADS) as pool:
            list(pool.map(start, enumerate(ids)))
        return time.perf_counter() - began

    def wait_statuses(self, prefix: str, count: int, statuses: list[OrchestrationStatus], label: str,
                      timeout: float, fetch: bool = False) -> list:
        """Poll the client's status cache until ``count`` instances of ``prefix`` are in ``statuses``."""
        query = OrchestrationQuery(runtime_status=statuses, instance_id_prefix=prefix, max_instance_count=1000)
        deadline = time.monotonic() + timeout
        ticker = Ticker()
        while True:
            states = self.client.get_all_orchestration_states(query)
            if len(states) >= count:
                if fetch:
                    query.fetch_inputs_and_outputs = True
                    states = self.client.get_all_orchestration_states(query)
                return states
            if ticker.due():
                progress(f"  durable-kafka {label}: {len(states):,}/{count:,}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"durable-kafka {label}: only {len(states)}/{count} after {timeout}s")
            self.worker.check_alive()
            time.sleep(0.1)

    def all_topics(self) -> list[str]:
        from durable_kafka.streams.admin import _admin, activity_topics_of

        # activity requests travel on one topic per activity (docs/ROUTING.md)
        return self.topics.all() + activity_topics_of(_admin(self.bootstrap), self.hub, 30)


@contextlib.contextmanager
def profiled(args: argparse.Namespace, system: OursSystem, workload: str):
    """With ``--profile DIR``: py-spy the worker subprocess during the workload, print a summary."""
    if not args.profile:
        yield
        return
    out_dir = Path(args.profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"worker-{workload}.collapsed"
    spy = PySpy(system.worker.pid, path, gil=args.profile_gil)
    try:
        yield
    finally:
        spy.stop()
        summary = summarise_collapsed(path)
        (out_dir / f"worker-{workload}.txt").write_text(summary + "\n")
        progress(f"py-spy profile of the worker during {workload}: {path} (summary in {path.with_suffix('.txt')})")
        print(summary, flush=True)


def _records(system: OursSystem, before: dict, after: dict) -> dict[str, tuple[int, int]]:
    offsets = offset_deltas(before, after)
    records = count_committed_records(system.bootstrap, before, after)
    return {topic.split(".", 1)[1]: (offsets[topic], records.get(topic, 0))
            for topic in offsets if offsets[topic]}


def ours_warmup(system: OursSystem) -> None:
    prefix = unique_name("warm-")
    ids = [f"{prefix}-{i}" for i in range(20)]
    system.start_many("hello_sequence5", ids, None)
    system.client.schedule_new_orchestration("fan_out_fan_in", input=50, instance_id=f"{prefix}-fan")
    system.wait_statuses(prefix, 21, TERMINAL, "warm-up", 120)
    progress("durable-kafka warm-up done (20 HelloSequence5 + a fan-out of 50)")


def ours_hello(system: OursSystem, n: int, figures: Figures, count_records: bool = True) -> None:
    prefix = unique_name("hello-")
    ids = [f"{prefix}-{i}" for i in range(n)]
    before = end_offsets(system.bootstrap, system.all_topics())
    progress(f"durable-kafka hello: starting {n:,} HelloSequence5 instances (load average {load_average()})")
    wall_began = datetime.now(timezone.utc)
    cpu_began = cpu_seconds(system.worker.pid)
    began = time.perf_counter()
    figures.hello_start_seconds = system.start_many("hello_sequence5", ids, None)
    progress(f"  durable-kafka hello: all {n:,} scheduled in {figures.hello_start_seconds:.2f}s")
    states = system.wait_statuses(prefix, n, TERMINAL, "hello completed", 600, fetch=True)
    figures.hello_seconds = time.perf_counter() - began
    figures.hello_worker_cores = (cpu_seconds(system.worker.pid) - cpu_began) / figures.hello_seconds
    figures.hello_rate = n / figures.hello_seconds
    figures.hello_failures = sum(s.runtime_status != OrchestrationStatus.COMPLETED
                                 or s.get_output() != EXPECTED_HELLO for s in states)
    engine_last = max(s.last_updated_at for s in states)
    figures.hello_engine_rate = n / max(1e-6, (engine_last - wall_began).total_seconds())
    progress(f"durable-kafka hello: {n:,} in {figures.hello_seconds:.2f}s = {figures.hello_rate:,.1f}/s "
             f"({figures.hello_failures} failed); counting Kafka records")
    if not count_records:
        return
    time.sleep(1.0)  # let trailing commits (markers) land before reading end offsets
    figures.hello_records = _records(system, before, end_offsets(system.bootstrap, system.all_topics()))


def ours_latency(system: OursSystem, runs: int, figures: Figures) -> None:
    prefix = unique_name("lat-")
    progress(f"durable-kafka latency: {LATENCY_WARMUP} warm-up + {runs} runs, one at a time "
             f"(load average {load_average()})")
    ticker = Ticker()
    for i in range(LATENCY_WARMUP + runs):
        iid = f"{prefix}-{i}"
        began = time.perf_counter()
        system.client.schedule_new_orchestration("hello_sequence5", instance_id=iid)  # waits for acceptance
        accepted = time.perf_counter()
        state = system.client.wait_for_orchestration_completion(iid, timeout=60)
        ended = time.perf_counter()
        if state.get_output() != EXPECTED_HELLO:
            raise RuntimeError(f"unexpected HelloSequence5 output: {state.serialized_output}")
        if i >= LATENCY_WARMUP:
            figures.latency_ms.append((ended - began) * 1000)
            figures.accept_ms.append((accepted - began) * 1000)
        if ticker.due():
            progress(f"  durable-kafka latency: {i + 1}/{LATENCY_WARMUP + runs}")
        time.sleep(LATENCY_PAUSE)
    progress(f"durable-kafka latency: p50 {median(figures.latency_ms):.1f} ms")


def ours_fanout(system: OursSystem, count: int, runs: int, figures: Figures) -> None:
    before = end_offsets(system.bootstrap, system.all_topics())
    progress(f"durable-kafka fanout: {runs} x one orchestration with {count:,} activities "
             f"(load average {load_average()})")
    for run in range(runs):
        iid = unique_name("fan-")
        began = time.perf_counter()
        system.client.schedule_new_orchestration("fan_out_fan_in", input=count, instance_id=iid,
                                                 wait_for_acceptance=False)
        state = system.client.wait_for_orchestration_completion(iid, timeout=600)
        seconds = time.perf_counter() - began
        if state.get_output() != sum(i * i for i in range(count)):
            raise RuntimeError(f"unexpected fan-out output: {state.serialized_output} ({state.failure_details})")
        figures.fanout_runs.append(seconds)
        progress(f"  durable-kafka fanout run {run + 1}: {count:,} activities in {seconds:.2f}s = {count / seconds:,.0f}/s")
    figures.fanout_seconds = median(figures.fanout_runs)
    figures.fanout_rate = count / figures.fanout_seconds
    progress("durable-kafka fanout: counting Kafka records")
    time.sleep(1.0)
    figures.fanout_records = _records(system, before, end_offsets(system.bootstrap, system.all_topics()))
    runs_done = len(figures.fanout_runs)
    figures.fanout_records = {t: (o / runs_done, r / runs_done) for t, (o, r) in figures.fanout_records.items()}


def ours_timers(bootstrap: str, partitions: int, count: int, figures: Figures) -> None:
    progress(f"durable-kafka timers: fresh worker, {count:,} instances on a {TIMER_SECONDS:.0f}s timer")
    system = OursSystem(bootstrap, partitions)
    try:
        warm = unique_name("warm-")
        system.start_many("hello_sequence5", [f"{warm}-{i}" for i in range(5)], None)
        system.wait_statuses(warm, 5, TERMINAL, "warm-up", 120)
        figures.timers_idle_rss = rss_mib(system.worker.pid)
        prefix = unique_name("tmr-")
        ids = [f"{prefix}-{i}" for i in range(count)]
        began = time.perf_counter()
        for lo in range(0, count, 2000):
            system.start_many("timer_wait", ids[lo:lo + 2000], TIMER_SECONDS)
            progress(f"  durable-kafka timers: {min(count, lo + 2000):,}/{count:,} scheduled")
        system.wait_statuses(prefix, count, [OrchestrationStatus.RUNNING], "timers waiting", 600)
        figures.timers_start_rate = count / (time.perf_counter() - began)
        time.sleep(SETTLE)
        figures.timers_rss = rss_mib(system.worker.pid)
        figures.timers_hwm = rss_mib(system.worker.pid, "VmHWM")
        progress(f"durable-kafka timers: all {count:,} waiting; worker VmRSS {figures.timers_rss:,.0f} MiB "
                 f"(idle before: {figures.timers_idle_rss:,.0f} MiB, peak {figures.timers_hwm:,.0f} MiB)")
    finally:
        system.close()


#: --observability-modes: what the worker turns on (BENCH_OBSERVE in _ours_app.py)
OBSERVE_MODES = {"off": "off", "both": "metrics endpoint + tracer (no-op exporter)", "metrics": "metrics only",
                 "tracing": "tracer only (no-op exporter)",
                 # not the goal's configuration (full sampling): what sampling at the caller buys
                 "tracing-sampled": "tracer only, callers sampled 1 in 10"}


def ours_observability(args: argparse.Namespace) -> dict[str, list[Figures]]:
    """hello in each observability mode, the modes alternating in fresh systems; runs per mode.

    Alternating (not all of one mode, then the next) spreads the machine's drift over every mode.
    """
    runs: dict[str, list[Figures]] = {mode: [] for mode in args.modes}
    for round_ in range(args.observability_rounds):
        for mode in args.modes:
            progress(f"observability round {round_ + 1}/{args.observability_rounds}: {OBSERVE_MODES[mode]}")
            system = OursSystem(args.bootstrap, args.partitions, observe=mode)
            try:
                ours_warmup(system)
                figures = Figures()
                with profiled(args, system, f"hello-{mode}-{round_ + 1}"):
                    ours_hello(system, args.instances, figures, count_records=False)
                if system.metrics_port is not None:  # proof that it was on: the endpoint counts what just ran
                    text = _http_get("127.0.0.1", system.metrics_port, "/metrics")
                    line = next(x for x in text.splitlines() if x.startswith(
                        'durable_kafka_orchestrations_ended_total{orchestrator="hello_sequence5",status="completed"}'))
                    progress(f"  scraped: {line}")
                runs[mode].append(figures)
            finally:
                system.close()
    return runs


def _http_get(host: str, port: int, path: str) -> str:
    """A bare HTTP/1.0 GET (bench/http.py shadows the standard library's http package here)."""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def observability_report(args: argparse.Namespace, runs: dict[str, list[Figures]]) -> str:
    def cpu_per_1000(f: Figures) -> float:
        return (f.hello_worker_cores or 0) * (f.hello_seconds or 0) * 1000 / args.instances

    modes = list(runs)
    rate = {m: median([f.hello_rate for f in runs[m] if f.hello_rate]) for m in modes}
    cpu = {m: median([cpu_per_1000(f) for f in runs[m]]) for m in modes}
    base = "off" if "off" in runs else modes[0]

    def versus(m: str) -> tuple[str, str]:
        if m == base or not rate[base] or not cpu[base]:
            return "", ""
        cost = (1 - rate[m] / rate[base]) * 100
        return (f"{cost:+.1f} % throughput; {'met' if cost < 5 else 'missed'} (< 5 %)",
                f"{(cpu[m] / cpu[base] - 1) * 100:+.1f} % CPU")

    rows = [
        ["completed orchestrations/s, median (higher is better)", *(fmt(rate[m]) for m in modes)],
        [f"cost against {base}", *(versus(m)[0] for m in modes)],
        ["every run, orchestrations/s", *(" / ".join(f"{f.hello_rate:.0f}" for f in runs[m]) for m in modes)],
        ["worker CPU s per 1,000 orchestrations, median (lower is better)", *(fmt(cpu[m], 2) for m in modes)],
        [f"CPU against {base}", *(versus(m)[1] for m in modes)],
        ["every run, worker CPU s per 1,000", *(" / ".join(f"{cpu_per_1000(f):.2f}" for f in runs[m]) for m in modes)],
        ["failed or wrong output", *(fmt(sum(f.hello_failures for f in runs[m])) for m in modes)],
    ]
    return (f"### HelloSequence5 with metrics and tracing on vs off ({args.instances:,} instances, "
            f"{args.observability_rounds} alternating rounds)\n\n"
            + markdown_table(["metric", *(OBSERVE_MODES[m] for m in modes)], rows))


def run_ours(args: argparse.Namespace, selected: set[str]) -> Figures:
    figures = Figures()
    if selected & {"hello", "latency", "fanout"}:
        system = OursSystem(args.bootstrap, args.partitions)
        try:
            ours_warmup(system)
            if "latency" in selected:  # first: the idle system, before any bulk load
                ours_latency(system, args.latency_runs, figures)
            if "hello" in selected:
                with profiled(args, system, "hello"):
                    ours_hello(system, args.instances, figures)
            if "fanout" in selected:
                with profiled(args, system, "fanout"):
                    ours_fanout(system, args.fanout, args.fanout_runs, figures)
        finally:
            system.close()
    if "timers" in selected:
        ours_timers(args.bootstrap, args.partitions, args.timers, figures)
    return figures


# =========================================================================== Temporal


async def _peer_main(args: argparse.Namespace, selected: set[str], figures: Figures) -> None:
    import _temporal_peer as tp

    if selected & {"hello", "latency", "fanout"}:
        server = tp.TemporalServer(persistent=not args.temporal_in_memory)
        worker = None
        try:
            client = await server.wait_ready()
            worker = tp.spawn_worker(server.address)
            progress(f"temporal server pid {server.pid} on {server.address} ({server.persistence}), "
                     f"worker pid {worker.pid}")
            warm = unique_name("warm-")
            await tp.run_many(client, "HelloSequence5", [f"{warm}-{i}" for i in range(20)], "x",
                              lambda r: r == EXPECTED_HELLO, "warm-up")
            await tp.fan_out(client, f"{warm}-fan", 50)
            progress("temporal warm-up done (20 HelloSequence5 + a fan-out of 50)")
            if "latency" in selected:  # first: the idle system, before any bulk load
                await _peer_latency(tp, client, args.latency_runs, figures)
            if "hello" in selected:
                cpu = cpu_seconds(worker.pid), cpu_seconds(server.pid)
                await _peer_hello(tp, client, args.instances, figures)
                figures.hello_worker_cores = (cpu_seconds(worker.pid) - cpu[0]) / figures.hello_seconds
                figures.hello_server_cores = (cpu_seconds(server.pid) - cpu[1]) / figures.hello_seconds
            if "fanout" in selected:
                progress(f"temporal fanout: {args.fanout_runs} x one workflow with {args.fanout:,} activities "
                         f"(load average {load_average()})")
                for run in range(args.fanout_runs):
                    seconds = await tp.fan_out(client, unique_name("fan-"), args.fanout)
                    figures.fanout_runs.append(seconds)
                    progress(f"  temporal fanout run {run + 1}: {args.fanout:,} activities in {seconds:.2f}s "
                             f"= {args.fanout / seconds:,.0f}/s")
                figures.fanout_seconds = median(figures.fanout_runs)
                figures.fanout_rate = args.fanout / figures.fanout_seconds
        finally:
            if worker is not None:
                worker.stop()
            server.stop()
    if "timers" in selected:
        await _peer_timers(tp, args, figures)


async def _peer_hello(tp, client, n: int, figures: Figures) -> None:
    prefix = unique_name("hello-")
    progress(f"temporal hello: starting {n:,} HelloSequence5 workflows (load average {load_average()})")
    seconds, failures = await tp.run_many(client, "HelloSequence5", [f"{prefix}-{i}" for i in range(n)], "x",
                                          lambda r: r == EXPECTED_HELLO, "hello")
    figures.hello_seconds, figures.hello_failures = seconds, failures
    figures.hello_rate = n / seconds
    progress(f"temporal hello: {n:,} in {seconds:.2f}s = {figures.hello_rate:,.1f}/s ({failures} failed)")


async def _peer_latency(tp, client, runs: int, figures: Figures) -> None:
    progress(f"temporal latency: {LATENCY_WARMUP} warm-up + {runs} runs, one at a time "
             f"(load average {load_average()})")
    prefix = unique_name("lat-")
    await tp.latency_runs(client, f"{prefix}w", LATENCY_WARMUP, LATENCY_PAUSE)
    samples = await tp.latency_runs(client, prefix, runs, LATENCY_PAUSE)
    figures.latency_ms = [total for total, _accept in samples]
    figures.accept_ms = [accept for _total, accept in samples]
    progress(f"temporal latency: p50 {median(figures.latency_ms):.1f} ms")


async def _peer_timers(tp, args: argparse.Namespace, figures: Figures) -> None:
    count = args.timers
    progress(f"temporal timers: fresh server and worker, {count:,} workflows on a {TIMER_SECONDS:.0f}s timer")
    server = tp.TemporalServer(persistent=not args.temporal_in_memory)
    worker = None
    try:
        client = await server.wait_ready()
        worker = tp.spawn_worker(server.address)
        warm = unique_name("warm-")
        await tp.run_many(client, "HelloSequence5", [f"{warm}-{i}" for i in range(5)], "x",
                          lambda r: r == EXPECTED_HELLO, "warm-up")
        figures.timers_idle_rss = rss_mib(worker.pid)
        figures.server_idle_rss = rss_mib(server.pid)
        waiting = TimersWaiting(worker)
        began = time.perf_counter()
        await tp.start_timers(client, unique_name("tmr-"), count, TIMER_SECONDS)
        progress(f"  temporal timers: all {count:,} started; waiting for the worker to reach the timers")
        await waiting.wait(count, 600)
        figures.timers_start_rate = count / (time.perf_counter() - began)
        await asyncio.sleep(SETTLE)
        figures.timers_rss = rss_mib(worker.pid)
        figures.timers_hwm = rss_mib(worker.pid, "VmHWM")
        figures.server_rss = rss_mib(server.pid)
        progress(f"temporal timers: all {count:,} waiting; worker VmRSS {figures.timers_rss:,.0f} MiB, "
                 f"server VmRSS {figures.server_rss:,.0f} MiB")
    finally:
        if worker is not None:
            worker.stop()
        server.stop()


class TimersWaiting:
    """Follows the Temporal worker's "timers-waiting N" lines (attach before starting timers)."""

    def __init__(self, worker: ChildProcess) -> None:
        self.worker = worker
        self.reached = 0
        worker.listeners.append(self._listen)

    def _listen(self, line: str) -> None:
        if line.startswith("timers-waiting "):
            self.reached = max(self.reached, int(line.split()[1]))

    async def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        ticker = Ticker()
        while self.reached < count:
            self.worker.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"temporal worker reached only {self.reached}/{count} timers in {timeout}s")
            if ticker.due():
                progress(f"  temporal timers waiting: {self.reached:,}/{count:,}")
            await asyncio.sleep(0.1)


def run_peer(args: argparse.Namespace, selected: set[str]) -> Figures:
    figures = Figures()
    asyncio.run(_peer_main(args, selected, figures))
    return figures


# =========================================================================== report


def _records_per(records: dict[str, tuple[int, int]], units: int) -> tuple[float, float]:
    offsets = sum(o for o, _r in records.values())
    data = sum(r for _o, r in records.values())
    return offsets / units, data / units


def records_table(records: dict[str, tuple[int, int]], units: int, unit: str) -> str:
    rows = [[topic, fmt(o / units, 2), fmt(r / units, 2)] for topic, (o, r) in sorted(records.items())]
    per_offsets, per_data = _records_per(records, units)
    rows.append(["**total**", f"**{per_offsets:.2f}**", f"**{per_data:.2f}**"])
    return markdown_table(["topic", f"end-offset advance per {unit}", f"committed records per {unit}"], rows)


def _ceiling_cell(value: float | None, records: dict, units: int, probe: ProbeRate | None) -> str:
    if value is None or not records or probe is None:
        return "–"
    _offsets, per_unit = _records_per(records, units)
    ceiling = probe.rate / per_unit
    return f"{value / ceiling:.1%} of {ceiling:,.0f}/s"


def report(args: argparse.Namespace, selected: set[str], ours: Figures, peer: Figures | None,
           probe: ProbeRate | None) -> str:
    p = peer or Figures()
    goal_ok = lambda ok: "met" if ok else "missed"  # noqa: E731
    out: list[str] = []
    head = ["metric", "durable-kafka", "Temporal", "ratio ours/peer", "goal", "ours vs probe ceiling"]
    if "hello" in selected:
        out.append(f"### HelloSequence5 throughput ({args.instances:,} instances started together)\n")
        out.append(markdown_table(head, [
            ["completed orchestrations/s (higher is better)", fmt(ours.hello_rate), fmt(p.hello_rate),
             ratio(ours.hello_rate, p.hello_rate), f">= 200/s: {goal_ok((ours.hello_rate or 0) >= 200)}",
             _ceiling_cell(ours.hello_rate, ours.hello_records, args.instances, probe)],
            ["first start -> last completion observed, s", fmt(ours.hello_seconds, 2), fmt(p.hello_seconds, 2),
             ratio(ours.hello_seconds, p.hello_seconds), "", ""],
            ["time to schedule all (client), s", fmt(ours.hello_start_seconds, 2), "(interleaved)", "", "", ""],
            ["same rate, to the engine's last status timestamp", fmt(ours.hello_engine_rate), "–", "", "", ""],
            ["worker CPU during the run, cores", fmt(ours.hello_worker_cores, 2), fmt(p.hello_worker_cores, 2), "", "", ""],
            ["server CPU during the run, cores", "(Kafka broker, not measured)", fmt(p.hello_server_cores, 2), "", "", ""],
            ["failed or wrong output", fmt(ours.hello_failures), fmt(p.hello_failures) if peer else "–", "", "", ""],
        ]))
        if ours.hello_records:
            out.append("\nKafka records per HelloSequence5 orchestration (durable-kafka):\n")
            out.append(records_table(ours.hello_records, args.instances, "orchestration"))
    if "latency" in selected:
        out.append(f"\n### HelloSequence5 latency (one at a time, {args.latency_runs} runs after "
                   f"{LATENCY_WARMUP} warm-up runs)\n")
        rows = []
        for label, q in (("min", 0), ("p50", 50), ("p90", 90), ("p99", 99)):
            a = percentile(ours.latency_ms, q) if ours.latency_ms else None
            b = percentile(p.latency_ms, q) if p.latency_ms else None
            goal = f"< 25 ms: {goal_ok(a is not None and a < 25)}" if q == 50 else ""
            rows.append([f"end to end {label}, ms (lower is better)", fmt(a), fmt(b), ratio(a, b), goal, ""])
        a = median(ours.accept_ms) if ours.accept_ms else None
        b = median(p.accept_ms) if p.accept_ms else None
        rows.append(["start call returned (accepted), p50 ms", fmt(a), fmt(b), ratio(a, b), "", ""])
        out.append(markdown_table(head, rows))
    if "fanout" in selected:
        out.append(f"\n### Fan-out/fan-in of {args.fanout:,} activities in one orchestration "
                   f"(median of {args.fanout_runs} runs)\n")
        out.append(markdown_table(head, [
            ["activities/s (higher is better)", fmt(ours.fanout_rate, 0), fmt(p.fanout_rate, 0),
             ratio(ours.fanout_rate, p.fanout_rate), f">= 2,000/s: {goal_ok((ours.fanout_rate or 0) >= 2000)}",
             _ceiling_cell(ours.fanout_rate, ours.fanout_records, args.fanout, probe)],
            ["schedule -> completion observed, s", fmt(ours.fanout_seconds, 2), fmt(p.fanout_seconds, 2),
             ratio(ours.fanout_seconds, p.fanout_seconds), "", ""],
            ["every run, s", " / ".join(f"{x:.2f}" for x in ours.fanout_runs) or "–",
             " / ".join(f"{x:.2f}" for x in p.fanout_runs) or "–", "", "", ""],
        ]))
        if ours.fanout_records:
            out.append("\nKafka records per fanned-out activity (durable-kafka):\n")
            out.append(records_table(ours.fanout_records, args.fanout, "activity"))
    if "timers" in selected:
        out.append(f"\n### {args.timers:,} instances waiting on a durable timer (fresh worker)\n")
        out.append(markdown_table(head, [
            ["worker VmRSS, MiB (lower is better)", fmt(ours.timers_rss, 0), fmt(p.timers_rss, 0),
             ratio(ours.timers_rss, p.timers_rss), f"< 600 MiB: {goal_ok(ours.timers_rss is not None and ours.timers_rss < 600)}", ""],
            ["worker peak VmHWM, MiB", fmt(ours.timers_hwm, 0), fmt(p.timers_hwm, 0), ratio(ours.timers_hwm, p.timers_hwm), "", ""],
            ["worker VmRSS before the timers (warm, idle), MiB", fmt(ours.timers_idle_rss, 0), fmt(p.timers_idle_rss, 0), "", "", ""],
            ["server VmRSS, MiB", "n/a (Kafka broker, shared)", fmt(p.server_rss, 0), "", "", ""],
            ["instances started and waiting per s", fmt(ours.timers_start_rate, 0), fmt(p.timers_start_rate, 0),
             ratio(ours.timers_start_rate, p.timers_start_rate), "", ""],
        ]))
    if probe is not None:
        out.append(f"\nProbe rate for the ceilings: {probe.rate:,.0f} records/s ({probe.source})."
                   + (f" The same probe inside transactions (c2): {probe.transactional_rate:,.0f}/s."
                      if probe.transactional_rate else ""))
        out.append("Ceiling = probe rate / committed records per unit of work.")
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000, help="HelloSequence5 instances started together")
    parser.add_argument("--fanout", type=int, default=1000, help="activities in the fan-out orchestration")
    parser.add_argument("--fanout-runs", type=int, default=3, help="fan-out runs (the median is reported)")
    parser.add_argument("--timers", type=int, default=10000, help="instances waiting on a durable timer")
    parser.add_argument("--latency-runs", type=int, default=60, help="measured latency runs (after warm-up)")
    parser.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS,
                        help=f"hub partition count for durable-kafka (engine default {DEFAULT_PARTITIONS})")
    parser.add_argument("--skip-peer", action="store_true", help="do not run the Temporal peer")
    parser.add_argument("--temporal-in-memory", action="store_true",
                        help="run the Temporal dev server without its SQLite file (default: a file, durable)")
    parser.add_argument("--only", default=",".join(WORKLOADS), help=f"comma-separated subset of {','.join(WORKLOADS)}")
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="py-spy the durable-kafka worker during hello and fanout; stacks and summaries go to DIR")
    parser.add_argument("--profile-gil", action="store_true",
                        help="with --profile: sample only the thread holding the GIL (py-spy --gil)")
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default: the local broker)")
    parser.add_argument("--observability", action="store_true",
                        help="hello only, with metrics and tracing off and on in alternating fresh systems "
                             "(the observability cost; docs/PERFORMANCE.md); no peer")
    parser.add_argument("--observability-rounds", type=int, default=3, help="rounds of every mode for --observability")
    parser.add_argument("--observability-modes", default="off,both",
                        help=f"comma-separated modes for --observability, of {','.join(OBSERVE_MODES)} "
                             "(default off,both: metrics and tracing both off, both on)")
    args = parser.parse_args(argv)
    args.modes = args.observability_modes.split(",")
    if set(args.modes) - set(OBSERVE_MODES):
        parser.error(f"unknown observability mode(s) {sorted(set(args.modes) - set(OBSERVE_MODES))}")
    args.bootstrap = bootstrap_servers(args.bootstrap)
    unknown = set(args.only.split(",")) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s) {sorted(unknown)}; choose from {', '.join(WORKLOADS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selected = set(args.only.split(","))
    began = time.monotonic()
    probe = probe_rate_from_doc()
    if probe is None and selected & {"hello", "fanout"}:
        progress("no probe figure in docs/PERFORMANCE.md; measuring produce->consume now")
        probe = measure_probe_rate(args.bootstrap)
    progress(f"probe rate {probe.rate:,.0f} records/s ({probe.source})" if probe else "no probe rate")
    if args.observability:
        runs = ours_observability(args)
        command = "python bench/orchestrations.py " + " ".join(sys.argv[1:] if argv is None else argv)
        print(f"\n## Results ({datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}; {time.monotonic() - began:.0f}s total; load average {load_average()})")
        print(f"command: {command.strip()}\n")
        print(observability_report(args, runs))
        return 0
    ours = run_ours(args, selected)
    peer = None if args.skip_peer else run_peer(args, selected)
    command = "python bench/orchestrations.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print()
    print(f"## Results ({datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, broker on the same machine; {time.monotonic() - began:.0f}s total; "
          f"load average at the end {load_average()})")
    print(f"command: {command.strip()}\n")
    print(report(args, selected, ours, peer, probe))
    return 0


if __name__ == "__main__":
    sys.exit(main())
