"""The worker the trigger benchmark runs (``python -m durable_kafka worker _triggers_app:make_worker``).

One orchestration, ``parked``, that waits for an event nobody sends: it reaches RUNNING and
stays there, so the benchmark measures the path from a request to a running instance and
nothing after it. One Start route turns each record of ``BENCH_SOURCE`` into a start of
``parked`` with the record key as the instance id. Configured from the environment by
``bench/triggers.py``.
"""

from __future__ import annotations

import os

from durable_kafka import Worker, triggers


def parked(ctx, _input):
    yield ctx.wait_for_external_event("never")
    return None


def make_worker() -> Worker:
    worker = Worker(os.environ["DURABLE_KAFKA_BOOTSTRAP"], hub=os.environ["BENCH_HUB"],
                    state_dir=os.environ["BENCH_STATE_DIR"], partitions=int(os.environ["BENCH_PARTITIONS"]))
    worker.add_orchestrator(parked)
    worker.add_trigger(triggers.Start(os.environ["BENCH_SOURCE"], parked, instance_id="{key}",
                                      decoder="bytes"))
    return worker
