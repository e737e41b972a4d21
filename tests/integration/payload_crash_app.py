"""The worker the large-payload crash test runs in a subprocess and kills between storing and committing.

With ``DK_PAYLOAD_CRASH=1`` the process SIGKILLs itself right after the first large payload's
chunks were acknowledged inside the processor's open transaction, before that transaction
commits: the exact window the Kafka-native store must survive (docs/PAYLOADS.md).
"""

from __future__ import annotations

import os
import signal

from durable_kafka import Worker
from durable_kafka.processors import runtime


def big_output(ctx, n):
    return "o" * n


def _kill_after_storing() -> None:
    original = runtime.Transaction.produce_flushed

    def produce_then_die(self, topic, partition, records):  # type: ignore[no-untyped-def]
        offsets = original(self, topic, partition, records)
        if any(v is not None for _, v in records):  # chunks (not tombstones) are in the open transaction
            os.kill(os.getpid(), signal.SIGKILL)
        return offsets

    runtime.Transaction.produce_flushed = produce_then_die  # type: ignore[method-assign]


def make_worker() -> Worker:
    if os.environ.get("DK_PAYLOAD_CRASH") == "1":
        _kill_after_storing()
    w = Worker(os.environ["DURABLE_KAFKA_BOOTSTRAP"], hub=os.environ["DK_CRASH_HUB"],
               state_dir=os.environ["DK_CRASH_STATE"], partitions=int(os.environ["DK_CRASH_PARTITIONS"]))
    w.add_orchestrator(big_output)
    return w
