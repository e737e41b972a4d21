"""Entity throughput: signals/s applied to one hot entity and spread over 100 entities.

    .venv/bin/python bench/entities.py                      # defaults: --signals 20000 --partitions 4
    .venv/bin/python bench/entities.py --signals 50000 --rounds 3

The worker runs in its own process (``python -m durable_kafka worker bench.entities:make_worker``)
so that the load generator does not share its interpreter. Each scenario: a warm-up signal is
applied first (group join and restore are not timed); then one Client produces N ``add``
signals (``wait_for_delivery=False``, flushed at the end) and the clock stops when
``get_entity`` shows all N applied. Every signal is a full durable operation: a Kafka
transaction per batch carrying the new state (changelog), two history records per operation,
the entity snapshot and the consumed offsets.

No peer runs this workload: Temporal has no durable entities (its closest shape, signals to
one long-running workflow, is a different programming model), so there is no peer column.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from durable_kafka import Client, Worker  # noqa: E402
from durable_kafka._client_entities import EntityQuery  # noqa: E402
from durable_kafka.entities import EntityContext  # noqa: E402

_T0 = time.monotonic()
GOAL = 2000.0


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", flush=True)


def counter(ctx: EntityContext, input):
    if ctx.operation == "add":
        ctx.set_state(ctx.get_state(int, 0) + input)


def make_worker() -> Worker:
    w = Worker(os.environ["DK_BENCH_BOOTSTRAP"], hub=os.environ["DK_BENCH_HUB"],
               state_dir=os.environ["DK_BENCH_STATE"], partitions=int(os.environ["DK_BENCH_PARTITIONS"]))
    w.add_entity(counter)
    return w


def spawn_worker(bootstrap: str, hub: str, state: str, partitions: int) -> subprocess.Popen:
    env = {**os.environ, "DK_BENCH_BOOTSTRAP": bootstrap, "DK_BENCH_HUB": hub, "DK_BENCH_STATE": state,
           "DK_BENCH_PARTITIONS": str(partitions)}
    proc = subprocess.Popen([sys.executable, "-m", "durable_kafka", "worker", "bench.entities:make_worker"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    if "running" not in line:
        raise SystemExit(f"worker did not start: {line}{proc.stdout.read() if proc.poll() is not None else ''}")
    return proc


def applied(client: Client, keys: list[str]) -> int:
    if len(keys) == 1:
        meta = client.get_entity(keys[0])
        return 0 if meta is None else meta.get_state(int)
    return sum(m.get_state(int) for m in client.get_all_entities(EntityQuery(instance_id_starts_with="@counter@")))


def scenario(client: Client, label: str, entities: int, n: int, round_no: int, timeout: float) -> dict:
    keys = [f"@counter@r{round_no}-{label}-{i}" for i in range(entities)]
    for k in keys:  # warm-up: the entity exists and its partition is owned before the clock starts
        client.signal_entity(k, "add", 0)
    deadline = time.monotonic() + timeout
    while any(client.get_entity(k) is None for k in keys):
        if time.monotonic() > deadline:
            raise SystemExit(f"{label}: warm-up not applied within {timeout}s")
        time.sleep(0.05)
    base = applied(client, keys) if entities == 1 else None
    started = time.monotonic()
    for i in range(n):
        client.signal_entity(keys[i % entities], "add", 1, wait_for_delivery=(i == n - 1))
    sent = time.monotonic() - started
    progress(f"{label}: produced {n} signals in {sent:.2f}s ({n / sent:,.0f}/s); waiting until applied")
    target = n if entities == 1 else None
    last = time.monotonic()
    while True:
        if entities == 1:
            done = applied(client, keys) - (base or 0)
        else:
            done = sum(m.get_state(int) for m in client.get_all_entities(EntityQuery(
                instance_id_starts_with=f"@counter@r{round_no}-{label}-")))
        if done >= (target or n):
            break
        if time.monotonic() > deadline + n / 500:
            raise SystemExit(f"{label}: only {done}/{n} applied before the timeout")
        if time.monotonic() - last > 2:
            progress(f"{label}: {done}/{n} applied")
            last = time.monotonic()
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    rate = n / elapsed
    progress(f"{label}: {n} signals applied in {elapsed:.2f}s = {rate:,.0f} ops/s")
    return {"scenario": label, "entities": entities, "signals": n, "seconds": elapsed, "ops_per_s": rate,
            "produce_per_s": n / sent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("DURABLE_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--signals", type=int, default=20000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)

    from durable_kafka.streams.admin import delete_hub, ensure_topics

    hub = f"benchent{secrets.token_hex(4)}"
    progress(f"hub {hub}, {args.partitions} partitions, {args.signals} signals per scenario, {args.rounds} rounds")
    progress("peers: none — Temporal has no durable entities, so this benchmark has no peer column")
    ensure_topics(hub, partitions=args.partitions, bootstrap=args.bootstrap)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dk-bench-ent-") as state:
        worker = spawn_worker(args.bootstrap, hub, state, args.partitions)
        try:
            with Client(args.bootstrap, hub=hub) as client:
                for r in range(args.rounds):
                    rows.append(scenario(client, "one", 1, args.signals, r, args.timeout))
                    rows.append(scenario(client, "hundred", 100, args.signals, r, args.timeout))
        finally:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
            delete_hub(hub, bootstrap=args.bootstrap)

    print()
    print("| scenario | entities | signals | round | seconds | applied ops/s | client produce/s | goal 2,000/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for i, row in enumerate(rows):
        ok = "met" if row["ops_per_s"] >= GOAL else "missed"
        print(f"| {row['scenario']} | {row['entities']} | {row['signals']} | {i // 2 + 1} | {row['seconds']:.2f} "
              f"| {row['ops_per_s']:,.0f} | {row['produce_per_s']:,.0f} | {ok} |")
    print("\npeer: none (Temporal has no durable entities)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
