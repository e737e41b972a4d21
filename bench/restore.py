"""Restore of a wiped worker: history written per event (before D20) against one batch per step.

Issue 13 asks that writing each history event once does not make the restore of a worker that
lost its disk slower. This benchmark builds two hubs in the same run, one per history format
(``InstanceStep.per_event_history``), each with ``--completed`` HelloSequence5 instances that
ran to completion and ``--running`` ones that ran their five activities and wait for an event.
Then, rounds alternating between the hubs, a worker with an empty state directory takes all
partitions and restores the orchestrations changelog; the engine's own log line gives the
records applied and the seconds spent, and the wall time from ``Worker.start()`` to the end of
the restore is measured around it.

    .venv/bin/python bench/restore.py [--completed 10000] [--running 1000] [--rounds 3]

Prints the changelog size of each hub, one line per restore, and the medians with the ratio
(batched / per-event). No assertion on any time.
"""

from __future__ import annotations

import argparse
import logging
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import load_average, markdown_table, progress  # noqa: E402
from durable_kafka import Client, OrchestrationQuery, OrchestrationStatus, Worker, task  # noqa: E402
from durable_kafka.processors.instance import InstanceStep  # noqa: E402
from durable_kafka.streams.admin import delete_hub, ensure_topics  # noqa: E402
from durable_kafka.streams.config import bootstrap_servers  # noqa: E402

CITIES = ("Tokyo", "Seattle", "London", "Amsterdam", "Tampa")
PARTITIONS = 12
_RESTORED = re.compile(r"restored (\S+) \[[^\]]*\]: (\d+) records in ([\d.]+)s")


def say_hello(ctx: task.ActivityContext, name: str) -> str:
    return f"Hello {name}!"


def hello_sequence5(ctx: task.OrchestrationContext, _: object) -> object:
    results = []
    for city in CITIES:
        results.append((yield ctx.call_activity(say_hello, input=city)))
    return results


def hello_then_wait(ctx: task.OrchestrationContext, _: object) -> object:
    results = []
    for city in CITIES:
        results.append((yield ctx.call_activity(say_hello, input=city)))
    ctx.set_custom_status("waiting")
    results.append((yield ctx.wait_for_external_event("go")))
    return results


def _worker(bootstrap: str, hub: str, state: str) -> Worker:
    w = Worker(bootstrap, hub=hub, state_dir=state, worker_id=f"restore-{secrets.token_hex(3)}",
               partitions=PARTITIONS)
    w.add_orchestrator(hello_sequence5)
    w.add_orchestrator(hello_then_wait)
    w.add_activity(say_hello)
    return w


def _wait(client: Client, prefix: str, count: int, statuses: list[OrchestrationStatus], label: str,
          custom_status: str | None = None) -> None:
    query = OrchestrationQuery(runtime_status=statuses, instance_id_prefix=prefix, max_instance_count=count + 10,
                               fetch_inputs_and_outputs=custom_status is not None)
    deadline, last = time.monotonic() + 1800, 0.0
    while True:
        states = client.get_all_orchestration_states(query)
        if custom_status is not None:
            states = [s for s in states if s.serialized_custom_status == custom_status]
        if len(states) >= count:
            return
        if time.monotonic() - last > 5:
            progress(f"  {label}: {len(states):,}/{count:,}")
            last = time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{label}: only {len(states)}/{count}")
        time.sleep(0.5)


def populate(bootstrap: str, hub: str, per_event: bool, completed: int, running: int) -> None:
    InstanceStep.per_event_history = per_event
    state = tempfile.mkdtemp(prefix="dk-restore-fill-")
    try:
        with _worker(bootstrap, hub, state), Client(bootstrap, hub=hub) as client:
            for i in range(completed):
                client.schedule_new_orchestration(hello_sequence5, instance_id=f"done-{i}", wait_for_acceptance=False)
            for i in range(running):
                client.schedule_new_orchestration(hello_then_wait, instance_id=f"run-{i}", wait_for_acceptance=False)
            _wait(client, "done-", completed, [OrchestrationStatus.COMPLETED], f"{hub} completed")
            _wait(client, "run-", running, [OrchestrationStatus.RUNNING], f"{hub} waiting", '"waiting"')
    finally:
        InstanceStep.per_event_history = False
        shutil.rmtree(state, ignore_errors=True)


class _RestoreLog(logging.Handler):
    """Catches the processor's "restored <topic> [...]: N records in S s" line."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[str, int, float]] = []
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        m = _RESTORED.search(record.getMessage())
        if m and m.group(1).endswith("orchestrations-changelog"):
            self.seen.append((m.group(1), int(m.group(2)), float(m.group(3))))
            self.event.set()


def restore_once(bootstrap: str, hub: str) -> tuple[int, float, float]:
    """(records applied, restore seconds from the engine's log, wall seconds from start())."""
    handler = _RestoreLog()
    logger = logging.getLogger("durable_kafka.processors.runtime")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    state = tempfile.mkdtemp(prefix="dk-restore-")
    try:
        w = _worker(bootstrap, hub, state)
        began = time.perf_counter()
        w.start()
        try:
            if not handler.event.wait(600):
                raise RuntimeError(f"{hub}: no restore line within 600 s")
            wall = time.perf_counter() - began
        finally:
            w.stop()
        _topic, records, seconds = handler.seen[0]
        return records, seconds, wall
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        shutil.rmtree(state, ignore_errors=True)


def changelog_size(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"restore-size-{secrets.token_hex(4)}"})
    try:
        total = 0
        for p in range(PARTITIONS):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            total += hi - lo
        return total
    finally:
        c.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--completed", type=int, default=10_000)
    parser.add_argument("--running", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args()
    bootstrap = bootstrap_servers(args.bootstrap)
    logging.basicConfig(level=logging.WARNING)
    tag = secrets.token_hex(3)
    hubs = {"per-event": f"restore-e-{tag}", "batched": f"restore-b-{tag}"}
    try:
        for fmt, hub in hubs.items():
            ensure_topics(hub, PARTITIONS, bootstrap)
            progress(f"filling {hub} ({fmt}): {args.completed:,} completed + {args.running:,} waiting "
                     f"HelloSequence5 (load average {load_average()})")
            began = time.perf_counter()
            populate(bootstrap, hub, fmt == "per-event", args.completed, args.running)
            progress(f"  filled in {time.perf_counter() - began:.1f}s")
        time.sleep(2)
        sizes = {fmt: changelog_size(bootstrap, f"{hub}.orchestrations-changelog") for fmt, hub in hubs.items()}
        results: dict[str, list[tuple[int, float, float]]] = {fmt: [] for fmt in hubs}
        order = list(hubs)
        for r in range(args.rounds):
            for fmt in (order if r % 2 == 0 else order[::-1]):
                records, seconds, wall = restore_once(bootstrap, hubs[fmt])
                results[fmt].append((records, seconds, wall))
                progress(f"round {r + 1} {fmt}: {records:,} records restored in {seconds:.2f}s "
                         f"(start -> restored {wall:.2f}s; load average {load_average()})")
        rows = []
        med = {fmt: (statistics.median(x[1] for x in v), statistics.median(x[2] for x in v))
               for fmt, v in results.items()}
        for fmt in hubs:
            rows.append([fmt, f"{sizes[fmt]:,}", f"{results[fmt][0][0]:,}", f"{med[fmt][0]:.2f}", f"{med[fmt][1]:.2f}",
                         " / ".join(f"{x[1]:.2f}" for x in results[fmt])])
        print()
        print(markdown_table(["history format", "changelog records (end - start)", "records restored",
                              "restore s (median)", "start -> restored s (median)", "every run, restore s"], rows))
        print(f"\nbatched / per-event: changelog records {sizes['batched'] / max(1, sizes['per-event']):.2f}, "
              f"restore time {med['batched'][0] / max(1e-9, med['per-event'][0]):.2f}, "
              f"start -> restored {med['batched'][1] / max(1e-9, med['per-event'][1]):.2f}")
    finally:
        for hub in hubs.values():
            delete_hub(hub, bootstrap)


if __name__ == "__main__":
    main()
