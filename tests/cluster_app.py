"""The worker the cluster tests run as subprocesses (``tests.cluster_app:make_worker``).

Configured from the environment. Every activity execution appends one line to
``DK_CHAOS_EXEC_LOG`` so the test can compare executions with the history's task completions
(activities are at-least-once: a re-execution is allowed, a missing one is not).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

from durable_kafka import Worker, task

_LOG = os.environ.get("DK_CHAOS_EXEC_LOG")


def _record(ctx) -> None:
    if _LOG:
        with open(_LOG, "a") as log:  # O_APPEND: one short line per write, never interleaved
            log.write(f"{ctx.orchestration_id} {ctx.task_id}\n")


def step(ctx, x):
    _record(ctx)
    time.sleep(0.005)
    return x + 1


def square(ctx, x):
    _record(ctx)
    return x * x


def chaos_orchestration(ctx, n):
    a = yield ctx.call_activity(step, input=n)
    b = yield ctx.call_activity(step, input=a)
    yield ctx.create_timer(timedelta(milliseconds=200))
    squares = yield task.when_all([ctx.call_activity(square, input=b + i) for i in range(3)])
    return {"n": n, "sum": sum(squares)}


def expected_output(n: int) -> dict:
    b = n + 2
    return {"n": n, "sum": sum((b + i) ** 2 for i in range(3))}


ACTIVITIES_PER_ORCHESTRATION = 5


def make_worker() -> Worker:
    w = Worker(os.environ["DURABLE_KAFKA_BOOTSTRAP"], hub=os.environ["DK_CHAOS_HUB"],
               state_dir=os.environ["DK_CHAOS_STATE"], partitions=int(os.environ["DK_CHAOS_PARTITIONS"]),
               stuck_after=float(os.environ.get("DK_STUCK_AFTER", "60")), max_activity_workers=4)
    w.add_orchestrator(chaos_orchestration)
    w.add_activity(step)
    w.add_activity(square)
    return w
