"""The worker the trigger benchmark runs (``python -m durable_kafka worker _triggers_app:make_worker``).

One orchestration, ``parked``, that waits for an event nobody sends: it reaches RUNNING and
stays there, so the benchmark measures the path from a request to a running instance and
nothing after it. One Start route turns each record of ``BENCH_SOURCE`` into a start of
``parked`` with the record key as the instance id. Configured from the environment by
``bench/triggers.py``.

Once its processors run, a thread prints one ``bench-stats {json}`` line a second: each
processor's counters (transactions, records, seconds processing and committing), which the
benchmark turns into records per transaction and milliseconds per commit for each phase.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import threading
import time

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
    threading.Thread(target=_report, args=(worker,), name="bench-stats", daemon=True).start()
    gc.callbacks.append(_gc_timer)
    if os.environ.get("BENCH_GC_THRESHOLD"):  # an A/B knob of the benchmark (--variant-env)
        gc.set_threshold(*(int(x) for x in os.environ["BENCH_GC_THRESHOLD"].split(",")))
    if os.environ.get("BENCH_GC_FREEZE"):
        gc.freeze()
    if os.environ.get("BENCH_SWITCH_INTERVAL"):  # seconds a thread may hold the GIL when others wait
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    return worker


_gc = {"collections": 0, "gc_s": 0.0, "began": 0.0}


def _gc_timer(phase: str, info: dict) -> None:
    """Time the cyclic garbage collector spends (it holds the GIL: every thread waits)."""
    if phase == "start":
        _gc["began"] = time.perf_counter()
    else:
        _gc["collections"] += 1
        _gc["gc_s"] += time.perf_counter() - _gc["began"]


def _report(worker: Worker) -> None:
    """Print the processors' counters once a second (the worker's private attributes: a benchmark's view)."""
    while True:
        time.sleep(1.0)
        out = {}
        for name, proc in (("orchestrations", worker._orch_processor), ("triggers", worker._trigger_processor)):
            if proc is not None:
                out[name] = {k: proc.stats.get(k, 0) for k in ("batches", "records", "process_s", "commit_s")}
                # seconds of every transaction's three parts so far (process, send_offsets, commit)
                out[name]["parts_s"] = [sum(t[i] for t in list(proc.timings)) for i in range(3)]
        if out:
            out["gc"] = {"collections": _gc["collections"], "gc_s": _gc["gc_s"],
                         "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
            print("bench-stats " + json.dumps(out), flush=True)
