"""The Durable Functions "aggregator" pattern: an entity folds a stream of events into a summary.

Run with ``python -m examples.aggregator`` (local broker up: ``make broker-up``). It starts a
worker in this process, then a client signals ``add`` to one aggregator entity per sensor from
several threads at once (no locks, no read-modify-write races: the entity runs its operations
one at a time), an orchestration asks an aggregator for its summary with ``call_entity``, and
the client reads every summary back with ``get_entity`` / ``get_all_entities``.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time

from durable_kafka import Client, OrchestrationContext, Worker
from durable_kafka._client_entities import EntityQuery
from durable_kafka.entities import DurableEntity, EntityInstanceId


class Aggregator(DurableEntity):
    """Count, sum, min and max of the readings of one sensor."""

    def add(self, value: float) -> None:
        s = self.get_state(dict, None) or {"count": 0, "sum": 0.0, "min": value, "max": value}
        s["count"] += 1
        s["sum"] += value
        s["min"] = min(s["min"], value)
        s["max"] = max(s["max"], value)
        self.set_state(s)

    def summary(self) -> dict:
        s = self.get_state(dict, {"count": 0, "sum": 0.0})
        return {**s, "mean": s["sum"] / s["count"] if s["count"] else None}

    def reset(self) -> None:
        self.delete_state()


def report(ctx: OrchestrationContext, sensor: str):
    """An orchestration reading an aggregate through a call (request/response)."""
    summary = yield ctx.call_entity(EntityInstanceId("aggregator", sensor), "summary")
    return f"{sensor}: {summary['count']} readings, mean {summary['mean']:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hub", default="examples")
    parser.add_argument("--sensors", type=int, default=3)
    parser.add_argument("--readings", type=int, default=200, help="readings per sensor")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)

    worker = Worker(hub=args.hub)
    worker.add_entity(Aggregator)
    worker.add_orchestrator(report)
    sensors = [f"sensor-{i}-{random.randrange(1 << 16):04x}" for i in range(args.sensors)]
    with worker, Client(hub=args.hub) as client:
        began = time.monotonic()
        expected = {s: 0.0 for s in sensors}

        def feed(sensor: str, seed: int) -> None:
            rnd = random.Random(seed)
            for i in range(args.readings):
                value = round(rnd.uniform(10, 30), 2)
                expected[sensor] += value
                client.signal_entity(EntityInstanceId("aggregator", sensor), "add", value,
                                     wait_for_delivery=(i == args.readings - 1))

        threads = [threading.Thread(target=feed, args=(s, n)) for n, s in enumerate(sensors)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(f"sent {args.sensors * args.readings} signals in {time.monotonic() - began:.2f}s")

        while True:
            counts = {s: (m.get_state(dict) or {}).get("count", 0) if (m := client.get_entity(
                EntityInstanceId("aggregator", s))) else 0 for s in sensors}
            print(f"{time.monotonic() - began:6.2f}s  applied: {counts}")
            if all(c == args.readings for c in counts.values()):
                break
            if time.monotonic() - began > args.timeout:
                print("timed out waiting for the aggregates", file=sys.stderr)
                return 1
            time.sleep(0.25)

        print("\naggregates (get_all_entities):")
        for meta in client.get_all_entities(EntityQuery(instance_id_starts_with="@aggregator@")):
            if str(meta.id.key) not in expected:
                continue
            s = meta.get_state(dict)
            ok = abs(s["sum"] - expected[meta.id.key]) < 1e-6
            print(f"  {meta.id}  count={s['count']} sum={s['sum']:.2f} min={s['min']} max={s['max']}"
                  f"  last_modified={meta.last_modified:%H:%M:%S.%f}  {'OK' if ok else 'MISMATCH'}")
            if not ok:
                return 1
        iid = client.schedule_new_orchestration(report, input=sensors[0])
        state = client.wait_for_orchestration_completion(iid, timeout=30)
        print(f"\norchestration {iid}: {state.get_output()}")
        for s in sensors:  # tidy up: delete the state, then let clean-up drop the records
            client.signal_entity(EntityInstanceId("aggregator", s), "reset")
        return 0


if __name__ == "__main__":
    sys.exit(main())
