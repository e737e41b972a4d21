"""The worker the schedule durability test runs in a subprocess (and kills with -9)."""

from __future__ import annotations

import os

from durable_kafka import Worker


def tick(ctx, input):
    """What every schedule runs: returns at once (the test counts starts in the history topic)."""
    return input


def make_worker() -> Worker:
    w = Worker(os.environ["DURABLE_KAFKA_BOOTSTRAP"], hub=os.environ["DK_CRASH_HUB"],
               state_dir=os.environ["DK_CRASH_STATE"], partitions=int(os.environ["DK_CRASH_PARTITIONS"]))
    w.configure_scheduled_tasks()
    w.add_orchestrator(tick)
    return w
