"""HTTP API vs Python Client on the same workload, in one run (issue 8; docs/PERFORMANCE.md).

HelloSequence5 (five activities in sequence) started and awaited to completion, through:

* **python**: a shared :class:`durable_kafka.Client`, ``schedule_new_orchestration`` then
  ``wait_for_orchestration_completion``, one thread per concurrent caller;
* **http**: ``durable-kafka serve`` (uvicorn, separate process) driven by httpx:
  ``POST /orchestrators/hello_sequence5`` then ``GET`` its status URI with ``waitForCompletion``.

Both use the same worker process and hub, in alternating rounds (python, http, python, http)
so broker and machine drift hit both alike. Two phases: one caller at a time (the latency the
HTTP layer adds) and ``--concurrency`` callers (throughput). Prints a markdown table.

    .venv/bin/python bench/http.py [--serial 60] [--runs 300] [--concurrency 16] [--rounds 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named http.py (the name): with bench/ first on sys.path it would hide the
# standard library's http package from httpx. Import that first, then put bench/ back.
_BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(_BENCH)]
import http.client  # noqa: E402,F401  (the standard library's, cached before bench/ returns)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import httpx  # noqa: E402

sys.path.insert(0, _BENCH)

from _common import ChildProcess, fmt, free_port, load_average, markdown_table, percentile, progress, unique_name  # noqa: E402
from _ours_app import expected_hello  # noqa: E402

from durable_kafka import Client  # noqa: E402
from durable_kafka.streams.admin import delete_hub, ensure_topics  # noqa: E402
from durable_kafka.streams.config import bootstrap_servers  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
API = "/runtime/webhooks/durabletask"
NAME = "hello_sequence5"


def python_round(client: Client, runs: int, concurrency: int) -> tuple[float, list[float]]:
    """(wall seconds, per-orchestration ms) of ``runs`` start+wait calls through the Client."""
    def one(_: int) -> float:
        began = time.perf_counter()
        iid = client.schedule_new_orchestration(NAME)
        state = client.wait_for_orchestration_completion(iid, timeout=120)
        if state.get_output() != expected_hello():
            raise RuntimeError(f"unexpected output {state.get_output()!r}")
        return (time.perf_counter() - began) * 1000

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(runs)))
    return time.perf_counter() - began, latencies


async def http_round(base: str, runs: int, concurrency: int) -> tuple[float, list[float]]:
    """(wall seconds, per-orchestration ms) of ``runs`` POST + long-poll GET pairs."""
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(runs):
        queue.put_nowait(i)

    async def caller(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            queue.get_nowait()
            began = time.perf_counter()
            started = await http.post(f"{API}/orchestrators/{NAME}")
            if started.status_code != 202:
                raise RuntimeError(f"start answered {started.status_code}: {started.text}")
            done = await http.get(started.headers["location"], params={"waitForCompletion": "120s"})
            if done.status_code != 200 or done.json()["output"] != expected_hello():
                raise RuntimeError(f"status answered {done.status_code}: {done.text}")
            latencies.append((time.perf_counter() - began) * 1000)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=180, limits=limits) as http:
        began = time.perf_counter()
        await asyncio.gather(*(caller(http) for _ in range(concurrency)))
        return time.perf_counter() - began, latencies


def run_phase(client: Client, base: str, runs: int, concurrency: int, rounds: int) -> dict[str, tuple[float, list[float]]]:
    totals: dict[str, tuple[float, list[float]]] = {"python": (0.0, []), "http": (0.0, [])}
    for r in range(rounds):
        for path in ("python", "http"):
            progress(f"round {r + 1}/{rounds}: {path}, {runs} runs, {concurrency} callers")
            if path == "python":
                seconds, latencies = python_round(client, runs, concurrency)
            else:
                seconds, latencies = asyncio.run(http_round(base, runs, concurrency))
            total, all_latencies = totals[path]
            totals[path] = (total + seconds, all_latencies + latencies)
    return totals


def report(phase: str, totals: dict[str, tuple[float, list[float]]]) -> list[list[str]]:
    rows = []
    for path, (seconds, latencies) in totals.items():
        rows.append([phase, path, str(len(latencies)), fmt(len(latencies) / seconds),
                     fmt(percentile(latencies, 50)), fmt(percentile(latencies, 99))])
    (py_s, py_l), (http_s, http_l) = totals["python"], totals["http"]
    rows.append([phase, "http / python", "", f"{(len(http_l) / http_s) / (len(py_l) / py_s):.2f}x",
                 f"+{percentile(http_l, 50) - percentile(py_l, 50):.1f} ms", ""])
    return rows


def wait_ready(base: str, server: ChildProcess) -> None:
    """The "serving" line comes before uvicorn binds: wait until /healthz answers 200."""
    deadline = time.monotonic() + 60
    while True:
        server.check_alive()
        try:
            if httpx.get(f"{base}/healthz", timeout=10).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not become ready within 60s")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serial", type=int, default=60, help="runs per round with one caller")
    parser.add_argument("--runs", type=int, default=300, help="runs per round with --concurrency callers")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)

    bootstrap = bootstrap_servers()
    hub = unique_name("bhttp")
    ensure_topics(hub, partitions=args.partitions, bootstrap=bootstrap)
    env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": bootstrap, "BENCH_HUB": hub,
           "BENCH_STATE_DIR": tempfile.mkdtemp(prefix=f"{hub}-"), "BENCH_PARTITIONS": str(args.partitions)}
    env.pop("DURABLE_KAFKA_API_KEY", None)
    port = free_port()
    worker = server = None
    try:
        worker = ChildProcess([sys.executable, "-m", "durable_kafka", "worker", "_ours_app:make_worker"],
                              name="worker", cwd=BENCH_DIR, env=env)
        worker.wait_for_line("running", 120)
        server = ChildProcess([sys.executable, "-m", "durable_kafka", "serve", "--hub", hub, "--port", str(port)],
                              name="serve", env=env)
        server.wait_for_line("serving hub", 120)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, server)
        with Client(bootstrap, hub=hub) as client:
            progress("warm-up")
            run_phase(client, base, 20, 4, 1)
            serial = run_phase(client, base, args.serial, 1, args.rounds)
            concurrent = run_phase(client, base, args.runs, args.concurrency, args.rounds)
        print()
        print(f"HelloSequence5, start -> completion; {args.rounds} alternating rounds per path; "
              f"load average {load_average()}")
        print(markdown_table(["phase", "path", "orchestrations", "per second", "p50 ms", "p99 ms"],
                             report("1 caller", serial) + report(f"{args.concurrency} callers", concurrent)))
    finally:
        for process in (server, worker):
            if process is not None:
                process.stop()
        delete_hub(hub, bootstrap=bootstrap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
