"""The codec's generated binary writers/readers against fastavro, per record type, in one run.

Run (no broker needed)::

    .venv/bin/python bench/codec.py [--rounds 20000]

or ``make bench-codec``. For the records a HelloSequence5 writes most (history records, status
snapshots, orchestrator messages, activity requests and results), it times ``Codec.encode`` and
``Codec.decode`` with the generated functions of ``streams/avro_binary.py`` (the default) and
with ``Codec(..., native=False)`` (fastavro, what every release before this one used), in the
same process, alternating, as CPU time per call (``time.process_time``, so other processes on
the machine do not count). Nothing asserts a timing: a Markdown table with the ratios.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt, load_average, markdown_table, progress, ratio  # noqa: E402

from durable_kafka.streams import events as E  # noqa: E402
from durable_kafka.streams.codec import Codec, load_shipped_schemas  # noqa: E402
from durable_kafka.streams.status import OrchestrationStatus  # noqa: E402


def samples() -> dict[str, object]:
    """One realistic value of each record type a HelloSequence5 step writes."""
    now = datetime(2026, 12, 2, 7, 0, 0, 123000, tzinfo=timezone.utc)
    started = E.ExecutionStarted(event_id=-1, timestamp=now, name="hello_sequence", execution_id="e1c2d3",
                                 input='"Tokyo"', parent_instance_id=None, parent_execution_id=None,
                                 parent_task_id=None, scheduled_start_at=None, tags={}, version=None)
    scheduled = E.TaskScheduled(event_id=1, timestamp=now, name="say_hello", input='"Tokyo"')
    return {
        "HistoryRecord(ExecutionStarted)": E.HistoryRecord(id="order-42/e1c2d3/0", instance_id="order-42",
                                                           execution_id="e1c2d3", index=0, event=started),
        "HistoryRecord(TaskScheduled)": E.HistoryRecord(id="order-42/e1c2d3/3", instance_id="order-42",
                                                        execution_id="e1c2d3", index=3, event=scheduled),
        "InstanceStatus": E.InstanceStatus(instance_id="order-42", name="hello_sequence", execution_id="e1c2d3",
                                           runtime_status=OrchestrationStatus.RUNNING, created_at=now,
                                           last_updated_at=now, input='"Tokyo"', output=None, custom_status=None,
                                           failure_details=None, parent_instance_id=None, tags={},
                                           history_length=4),
    }


def cpu_us(fn: Callable[[], object], rounds: int) -> float:
    began = time.process_time()
    for _ in range(rounds):
        fn()
    return (time.process_time() - began) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20000, help="calls per measurement (default 20000)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating repeats; the best is kept")
    args = parser.parse_args()
    native, baseline = Codec(load_shipped_schemas()), Codec(load_shipped_schemas(), native=False)
    progress(f"load average {load_average()}; {args.rounds:,} calls x {args.repeats} repeats per cell")
    rows = []
    for label, obj in samples().items():
        data = native.encode(obj)
        if data != baseline.encode(obj) or native.decode(data) != baseline.decode(data):
            raise SystemExit(f"{label}: native and fastavro disagree")
        best: dict[str, float] = {}
        for _ in range(args.repeats):
            for key, fn in (("enc native", lambda: native.encode(obj)), ("enc fastavro", lambda: baseline.encode(obj)),
                            ("dec native", lambda: native.decode(data)), ("dec fastavro", lambda: baseline.decode(data))):
                best[key] = min(best.get(key, float("inf")), cpu_us(fn, args.rounds))
        progress(f"{label}: {len(data)} bytes")
        rows.append([label, str(len(data)), fmt(best["enc native"], 2), fmt(best["enc fastavro"], 2),
                     ratio(best["enc fastavro"], best["enc native"]), fmt(best["dec native"], 2),
                     fmt(best["dec fastavro"], 2), ratio(best["dec fastavro"], best["dec native"])])
    print()
    print(f"CPU µs per call (best of {args.repeats}); load average {load_average()}")
    print()
    print(markdown_table(["record", "bytes", "encode native", "encode fastavro", "speed-up",
                          "decode native", "decode fastavro", "speed-up"], rows))


if __name__ == "__main__":
    main()
