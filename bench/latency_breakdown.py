"""Where one HelloSequence5's end-to-end latency goes, step by step (docs/DECISIONS.md, D6).

Runs a worker and a client in this process on a fresh hub, warms up, then starts one
HelloSequence5 at a time and reads the orchestration processor's own per-batch timings
(processing, ``send_offsets_to_transaction``, ``commit_transaction``). What is left of the
end-to-end time is outside the processor: the activity round trips and the client's start
and status observation. Prints figures; asserts nothing.

    .venv/bin/python bench/latency_breakdown.py [--runs 60] [--partitions 4] [--only early|in-transaction]

By default it measures both ways of sending activity requests in one run, a worker for each on
its own hub, alternating run by run: early dispatch (the default: sent before the step commits)
and in-transaction (``Worker(early_dispatch=False)``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid

from durable_kafka import Client, Worker
from durable_kafka.streams.admin import delete_hub


def hello(ctx, x):
    return x


def hello_sequence5(ctx, _):
    for i in range(5):
        yield ctx.call_activity(hello, input=i)
    return "done"


def _ms(values: list[float]) -> str:
    values = sorted(values)
    return (f"median {statistics.median(values) * 1000:6.2f}  p90 {values[int(len(values) * 0.9)] * 1000:6.2f}  "
            f"max {values[-1] * 1000:7.2f}  mean {statistics.fmean(values) * 1000:6.2f} ms")


def measure(variants: dict[str, bool], runs: int, partitions: int) -> dict[str, dict[str, object]]:
    """One fresh hub and worker per variant, all up at once; ``runs`` HelloSequence5 one at a time,
    alternating between the variants run by run (so drift in the machine's speed hits all alike)."""
    systems = {}
    try:
        for label, early in variants.items():
            hub = f"lat{uuid.uuid4().hex[:8]}"
            worker = Worker(hub=hub, state_dir=tempfile.mkdtemp(prefix="dk-lat-"), partitions=partitions,
                            early_dispatch=early)
            worker.add_orchestrator(hello_sequence5)
            worker.add_activity(hello)
            worker.start()
            systems[label] = (hub, worker, Client(hub=hub))
        for label, (hub, worker, client) in systems.items():
            print(f"hub {hub} ({label}): warming up", file=sys.stderr, flush=True)
            for _ in range(5):
                client.wait_for_orchestration_completion(client.schedule_new_orchestration(hello_sequence5))
            worker._orch_processor.timings.clear()
        before = {label: w._orch_processor.stats["batches"] for label, (_, w, _) in systems.items()}
        e2e: dict[str, list[float]] = {label: [] for label in systems}
        for i in range(runs):
            for label, (_, _, client) in systems.items():
                began = time.perf_counter()
                client.wait_for_orchestration_completion(client.schedule_new_orchestration(hello_sequence5))
                e2e[label].append(time.perf_counter() - began)
            if (i + 1) % 20 == 0:
                print(f"  {i + 1}/{runs} runs of each", file=sys.stderr, flush=True)
        results = {}
        for label, (_, worker, _) in systems.items():
            proc = worker._orch_processor
            process, offsets, commit = (list(x) for x in zip(*proc.timings))
            results[label] = {"e2e": e2e[label], "process": process, "offsets": offsets, "commit": commit,
                              "steps": (proc.stats["batches"] - before[label]) / runs}
        return results
    finally:
        for hub, worker, client in systems.values():
            client.close()
            worker.stop()
            delete_hub(hub)


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--only", choices=["early", "in-transaction"], default=None,
                        help="measure one way of sending activity requests (default: both, in one run)")
    args = parser.parse_args(argv)
    variants = {"in-transaction": False, "early": True}
    if args.only:
        variants = {args.only: variants[args.only]}
    results = measure(variants, args.runs, args.partitions)
    for label, r in results.items():
        e2e, process, offsets, commit = r["e2e"], r["process"], r["offsets"], r["commit"]
        per_orchestration = r["steps"]
        inside = statistics.median(process) + statistics.median(offsets) + statistics.median(commit)
        print(f"HelloSequence5, {args.runs} runs one at a time, {args.partitions} partitions, worker in-process, "
              f"activity requests {label}")
        print(f"  end to end            {_ms(e2e)}  p99 {_p(e2e, 99):7.2f} ms")
        print(f"  processor steps per orchestration: {per_orchestration:.1f}")
        print(f"  step: processing      {_ms(process)}")
        print(f"  step: send_offsets    {_ms(offsets)}")
        print(f"  step: commit          {_ms(commit)}  (incl. waiting for early-dispatched acks)")
        inside_total = inside * per_orchestration
        print(f"  processor steps in total (medians x steps): {inside_total * 1000:.1f} ms = "
              f"{inside_total / statistics.median(e2e):.0%} of the median end to end")
        print(f"  outside the processor (activity round trips, client start and observation): "
              f"{(statistics.median(e2e) - inside_total) * 1000:.1f} ms")
    if len(results) == 2:
        a, b = results["early"]["e2e"], results["in-transaction"]["e2e"]
        print(f"early / in-transaction: p50 {statistics.median(a) / statistics.median(b):.2f}x, "
              f"p99 {_p(a, 99) / _p(b, 99):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
