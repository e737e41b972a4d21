"""How fast the broker-free test harness runs orchestrations (durable_kafka.testing.InMemoryBackend).

    .venv/bin/python -m bench.in_memory [--n 1000]

Starts N instances of an orchestration that calls an activity, waits on a 7-day durable timer
and calls another activity, and waits for each to complete: the timers are skipped in virtual
time. Prints the wall time and the rate. No broker is involved.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

from durable_kafka import task
from durable_kafka.testing import InMemoryBackend


def add_one(ctx: task.ActivityContext, n: int) -> int:
    return n + 1


def week(ctx: task.OrchestrationContext, n: int):  # type: ignore[no-untyped-def]
    a = yield ctx.call_activity(add_one, input=n)
    yield ctx.create_timer(timedelta(days=7))
    return (yield ctx.call_activity(add_one, input=a))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    with InMemoryBackend() as backend:
        worker, client = backend.worker(), backend.client()
        worker.add_orchestrator(week)
        worker.add_activity(add_one)
        with worker:
            began = time.perf_counter()
            ids = [client.schedule_new_orchestration(week, input=i) for i in range(args.n)]
            for iid in ids:
                client.wait_for_orchestration_completion(iid)
            elapsed = time.perf_counter() - began
    print(f"{args.n} orchestrations (2 activities + a 7-day timer each) in {elapsed:.2f} s: "
          f"{args.n / elapsed:.0f}/s, {1000 * elapsed / args.n:.1f} ms each")


if __name__ == "__main__":
    main()
