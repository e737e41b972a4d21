"""The worker bench/recovery_pause.py kills and restarts (configured from the environment)."""

from __future__ import annotations

import os

from durable_kafka import Worker


def pause_activity(ctx, x):
    return x + 1


def pause_orchestration(ctx, x):
    return (yield ctx.call_activity(pause_activity, input=x))


def make_worker() -> Worker:
    w = Worker(os.environ["DURABLE_KAFKA_BOOTSTRAP"], hub=os.environ["DK_PAUSE_HUB"],
               state_dir=os.environ["DK_PAUSE_STATE"], partitions=int(os.environ["DK_PAUSE_PARTITIONS"]),
               worker_id="pause-worker", static_membership=os.environ.get("DK_PAUSE_STATIC") == "1")
    w.add_orchestrator(pause_orchestration)
    w.add_activity(pause_activity)
    return w
