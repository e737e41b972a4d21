"""The worker the crash tests run in a subprocess (and kill -9): configured from the environment."""

from __future__ import annotations

import os
import time
from datetime import timedelta

from durable_kafka import Worker, task


def step(ctx, x):
    time.sleep(0.01)  # long enough that a kill lands while activities are in flight
    return x + 1


def square(ctx, x):
    return x * x


def crash_orchestration(ctx, n):
    a = yield ctx.call_activity(step, input=n)
    b = yield ctx.call_activity(step, input=a)
    yield ctx.create_timer(timedelta(seconds=1 + n * 0.02))  # completions spread over ~4 s
    squares = yield task.when_all([ctx.call_activity(square, input=b + i) for i in range(5)])
    return {"n": n, "b": b, "sum": sum(squares)}


def expected_output(n: int) -> dict:
    b = n + 2
    return {"n": n, "b": b, "sum": sum((b + i) ** 2 for i in range(5))}


def make_worker() -> Worker:
    w = Worker(os.environ["DURABLE_KAFKA_BOOTSTRAP"], hub=os.environ["DK_CRASH_HUB"],
               state_dir=os.environ["DK_CRASH_STATE"], partitions=int(os.environ["DK_CRASH_PARTITIONS"]),
               stuck_after=float(os.environ.get("DK_STUCK_AFTER", "60")),
               early_dispatch=os.environ.get("DK_CRASH_EARLY_DISPATCH") == "1")
    w.add_orchestrator(crash_orchestration)
    w.add_activity(step)
    w.add_activity(square)
    if os.environ.get("DK_CRASH_VERSION"):  # tests/integration/test_versioning_crash.py
        from durable_kafka import VersionFailureStrategy, VersioningOptions, VersionMatchStrategy

        w.use_versioning(VersioningOptions(version=os.environ["DK_CRASH_VERSION"],
                                           match_strategy=VersionMatchStrategy.STRICT,
                                           failure_strategy=VersionFailureStrategy.REJECT))
    return w
