"""How long a hub pauses when its worker is killed with kill -9 and restarted at once.

Measured both ways in the same run, on the same broker: with static group membership
(``group.instance.id``, the default) and without it (the classic dynamic member, the baseline).
A driver starts short orchestrations (one activity each) at a steady rate; each round kills the
worker process with SIGKILL, restarts it immediately with the same worker id and state, and
records

* ``pause``: the longest gap between consecutive completions around the kill, and
* ``restart->first``: from the restart to the first completion after it.

    python bench/recovery_pause.py [--rounds 3] [--rate 40]

Prints one line per round and a summary with the ratio (baseline / static).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from durable_kafka import Client, OrchestrationStatus  # noqa: E402
from durable_kafka.streams.admin import delete_hub, ensure_topics  # noqa: E402
from durable_kafka.streams.config import bootstrap_servers  # noqa: E402

PARTITIONS = 4


def _spawn(bootstrap: str, hub: str, state: str, static: bool) -> subprocess.Popen:
    env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": bootstrap, "DK_PAUSE_HUB": hub, "DK_PAUSE_STATE": state,
           "DK_PAUSE_PARTITIONS": str(PARTITIONS), "DK_PAUSE_STATIC": "1" if static else "0"}
    proc = subprocess.Popen([sys.executable, "-m", "durable_kafka", "worker", "bench._pause_app:make_worker"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "running" in line:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # drain
            return proc
    raise RuntimeError("worker did not start")


class Driver:
    """Starts instances at ``rate`` per second and records when each one completed."""

    def __init__(self, client: Client, rate: float) -> None:
        self.client, self.rate = client, rate
        self.started: list[str] = []
        self.completions: list[float] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        pending: list[str] = []
        next_start = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_start:
                iid = self.client.schedule_new_orchestration("pause_orchestration", input=1,
                                                             wait_for_acceptance=False)
                self.started.append(iid)
                pending.append(iid)
                next_start += 1 / self.rate
            still = []
            for iid in pending:
                s = self.client.get_orchestration_state(iid)
                if s is not None and s.runtime_status == OrchestrationStatus.COMPLETED:
                    with self._lock:
                        self.completions.append(time.monotonic())
                else:
                    still.append(iid)
            pending = still
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()


def measure(bootstrap: str, static: bool, rounds: int, rate: float) -> list[tuple[float, float]]:
    hub = f"pause{uuid.uuid4().hex[:8]}"
    ensure_topics(hub, PARTITIONS, bootstrap=bootstrap)
    out: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as state, Client(bootstrap, hub=hub) as client:
        worker = _spawn(bootstrap, hub, state, static)
        driver = Driver(client, rate)
        thread = threading.Thread(target=driver.run, daemon=True)
        thread.start()
        try:
            time.sleep(8)  # warm: the worker serves the load steadily
            for n in range(rounds):
                killed = time.monotonic()
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                worker = _spawn(bootstrap, hub, state, static)
                restarted = time.monotonic()
                deadline = restarted + 60
                while time.monotonic() < deadline:
                    with driver._lock:
                        after = [t for t in driver.completions if t > restarted]
                    if after:
                        break
                    time.sleep(0.02)
                first = min(after) if after else deadline
                time.sleep(6)  # let the load settle before the next kill
                with driver._lock:
                    times = sorted(t for t in driver.completions if killed - 2 <= t <= time.monotonic())
                pause = max((b - a for a, b in zip(times, times[1:])), default=float("nan"))
                out.append((pause, first - restarted))
                print(f"  {'static ' if static else 'dynamic'} round {n + 1}: pause {pause:.2f}s, "
                      f"restart->first completion {first - restarted:.2f}s (restart took {restarted - killed:.2f}s)",
                      flush=True)
        finally:
            driver.stop()
            thread.join(5)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            delete_hub(hub, bootstrap=bootstrap)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=40.0, help="orchestrations started per second")
    parser.add_argument("--bootstrap", default=bootstrap_servers())
    args = parser.parse_args()
    print(f"recovery pause after kill -9 + immediate restart, {args.rounds} rounds, {args.rate:g} starts/s")
    dynamic = measure(args.bootstrap, False, args.rounds, args.rate)
    static = measure(args.bootstrap, True, args.rounds, args.rate)
    d_pause = statistics.median(p for p, _ in dynamic)
    s_pause = statistics.median(p for p, _ in static)
    d_first = statistics.median(f for _, f in dynamic)
    s_first = statistics.median(f for _, f in static)
    print(f"median pause: dynamic membership {d_pause:.2f}s, static membership {s_pause:.2f}s "
          f"({d_pause / s_pause:.1f}x shorter)")
    print(f"median restart->first completion: dynamic {d_first:.2f}s, static {s_first:.2f}s")


if __name__ == "__main__":
    main()
