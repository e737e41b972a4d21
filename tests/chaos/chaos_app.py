"""The worker every chaos scenario runs in a subprocess (and kills, pauses, freezes, wipes).

Configured from the environment so that one module serves every scenario and the soak run:
``DURABLE_KAFKA_BOOTSTRAP``, ``DK_CHAOS_HUB``, ``DK_CHAOS_STATE`` (RocksDB dir),
``DK_CHAOS_PARTITIONS``, ``DK_CHAOS_WORKER_ID`` (fixed per logical worker, so a restart reuses
its transactional id and static group membership, as a supervisor would), ``DK_CHAOS_EFFECTS``
(a file every activity execution appends one line to: the side effect that counts re-runs) and
``DK_STUCK_AFTER``.

Why a side-effect file and not the history: the history records each activity *result* once
(duplicate results are dropped), so it cannot show how often the function actually ran. The
file can, and that difference is exactly the "at-least-once activities" figure.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

from durable_kafka import Worker, task
from durable_kafka.entities import EntityContext

_EFFECTS = os.environ.get("DK_CHAOS_EFFECTS")


def _record_effect(ctx, tag: str) -> None:
    """Append '<instance> <task> <tag>' to the shared effects file (one write: atomic for O_APPEND)."""
    if not _EFFECTS:
        return
    line = f"{ctx.orchestration_id} {ctx.task_id} {tag}\n".encode()
    fd = os.open(_EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def bump(ctx, x: int) -> int:
    _record_effect(ctx, "bump")
    time.sleep(0.005)  # long enough that kills land while activities are in flight
    return x + 1


def square(ctx, x: int) -> int:
    _record_effect(ctx, "square")
    return x * x


def chaos_flow(ctx, spec: dict):
    """Activities, a timer, a fan-out/fan-in: every kind of step a kill can land between."""
    n = spec["n"]
    a = yield ctx.call_activity(bump, input=n)
    b = yield ctx.call_activity(bump, input=a)
    yield ctx.create_timer(timedelta(seconds=spec.get("timer_s", 1.0)))
    squares = yield task.when_all([ctx.call_activity(square, input=b + i) for i in range(3)])
    return {"n": n, "sum": sum(squares)}


def expected_flow_output(n: int) -> dict:
    b = n + 2
    return {"n": n, "sum": sum((b + i) ** 2 for i in range(3))}


def timer_at(ctx, spec: dict):
    """One durable timer due at an absolute wall-clock time (scenario 9 bunches hundreds of them)."""
    fire_at = datetime.fromtimestamp(spec["fire_at"], timezone.utc)
    yield ctx.create_timer(fire_at)
    return spec["n"]


def gated(ctx, _):
    """Stays running until the 'go' event: racing starts all meet a live instance."""
    value = yield ctx.wait_for_external_event("go")
    return value


def tally(ctx: EntityContext, amount):
    """An entity counter for the soak's signal load."""
    if ctx.operation == "add":
        ctx.set_state(ctx.get_state(int, 0) + amount)
    elif ctx.operation == "get":
        return ctx.get_state(int, 0)
    return None


def make_worker() -> Worker:
    w = Worker(os.environ["DURABLE_KAFKA_BOOTSTRAP"], hub=os.environ["DK_CHAOS_HUB"],
               state_dir=os.environ["DK_CHAOS_STATE"], partitions=int(os.environ["DK_CHAOS_PARTITIONS"]),
               worker_id=os.environ.get("DK_CHAOS_WORKER_ID"),
               stuck_after=float(os.environ.get("DK_STUCK_AFTER", "30")))
    for orchestrator in (chaos_flow, timer_at, gated):
        w.add_orchestrator(orchestrator)
    w.add_activity(bump)
    w.add_activity(square)
    w.add_entity(tally)
    return w
