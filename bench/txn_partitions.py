"""What one Kafka transaction costs per partition it writes: the floor under every step.

Run (broker up: ``make broker-up``)::

    .venv/bin/python bench/txn_partitions.py [--partitions 1,2,4,8,12,24,48] [--transactions 200]

or ``make bench-txn``. A transactional producer with the processor's settings
(``processors/runtime.py``: linger 1 ms, 2 ms retry backoff) runs the processor's step shape
back to back: begin, one 100-byte record to each of N partitions, ``send_offsets_to_transaction``
for one consumed partition, commit. N goes over ``--partitions`` in blocks of 20 transactions of one
size, round-robin, so load on the machine falls on every size alike; the first two of each block
are not counted (a transaction begun right after a commit waits for that commit's markers, so it
pays for the previous size's partitions). It prints, per N, the median
and p90 of the whole transaction and of its two blocking calls, and the ratio to N=1 measured in
the same run.

Why it matters: librdkafka sends one ProduceRequest per partition (confluentinc/librdkafka#1700;
the Java client puts every partition of a broker in one request), and a broker handles one
request per connection at a time, so a transaction's produce phase grows with the partitions it
writes; each of them also needs a commit marker. An orchestration step writes its instance's
partition of history, changelog and status, plus activity requests; a batch of instances spread
over a worker's partitions writes three or four records per partition it holds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from durable_kafka.streams.config import admin_config, consumer_config, producer_config


#: transactions of one size in a row (steady state: each pays for the previous one's markers)
BLOCK = 20


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", default="1,2,4,8,12,24,48",
                        help="comma-separated partition counts written per transaction")
    parser.add_argument("--transactions", type=int, default=200, help="transactions per partition count")
    args = parser.parse_args()
    try:
        sizes = sorted({int(n) for n in args.partitions.split(",")})
    except ValueError:
        parser.error(f"--partitions takes comma-separated whole numbers, not {args.partitions!r}")
    if not sizes or sizes[0] < 1 or args.transactions < 1:
        parser.error("--partitions needs counts of at least 1 and --transactions at least 1")
    bootstrap = os.environ.get("DURABLE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    run = uuid.uuid4().hex[:8]
    topic, source, group = f"bench-txn-{run}", f"bench-txn-{run}-source", f"bench-txn-{run}"
    admin = AdminClient(admin_config(bootstrap))
    for future in admin.create_topics([NewTopic(topic, max(sizes), 1), NewTopic(source, 1, 1)]).values():
        future.result()
    time.sleep(1.0)  # leaders elected
    producer = Producer(producer_config(bootstrap, **{
        "transactional.id": f"bench-txn-{run}", "transaction.timeout.ms": 10_000, "linger.ms": 1,
        "retry.backoff.ms": 2, "retry.backoff.max.ms": 50, "compression.type": "lz4"}))
    producer.init_transactions(30)
    consumer = Consumer(consumer_config(bootstrap, group))  # its group metadata, as a processor sends it
    metadata = consumer.consumer_group_metadata()
    value = b"x" * 100
    timings: dict[int, list[tuple[float, float, float]]] = {n: [] for n in sizes}
    load_before = os.getloadavg()
    try:
        offset = 0
        rounds = -(-args.transactions // BLOCK)
        for r in range(rounds + 1):  # round 0 warms up
            for n in sizes:
                for b in range(BLOCK + 2):  # the first two of a block pay for the previous size's markers
                    offset += 1
                    began = time.perf_counter()
                    producer.begin_transaction()
                    for p in range(n):
                        producer.produce(topic, value=value, key=b"k", partition=p)
                    producer.send_offsets_to_transaction([TopicPartition(source, 0, offset)], metadata, 10)
                    offsets_sent = time.perf_counter()
                    producer.commit_transaction(10)
                    done = time.perf_counter()
                    if r and b >= 2:
                        timings[n].append((done - began, offsets_sent - began, done - offsets_sent))
            print(f"  round {r}/{rounds}", flush=True)
    finally:
        consumer.close()
        admin.delete_topics([topic, source])
    base = statistics.median(t[0] for t in timings[sizes[0]])
    print(f"\nOne transaction writing one record to each of N partitions, plus send_offsets; "
          f"{len(timings[sizes[0]])} each, in interleaved blocks of {BLOCK}; load average {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f}\n")
    print("| partitions written | transaction p50 ms | p90 ms | produce + send_offsets p50 ms | commit p50 ms "
          f"| p50 / N={sizes[0]} |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        total = [t[0] * 1000 for t in timings[n]]
        first = [t[1] * 1000 for t in timings[n]]
        commit = [t[2] * 1000 for t in timings[n]]
        print(f"| {n} | {statistics.median(total):.2f} | {_percentile(total, 0.9):.2f} | "
              f"{statistics.median(first):.2f} | {statistics.median(commit):.2f} | "
              f"{statistics.median(total) / 1000 / base:.2f} |")
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        slope = (statistics.median(t[0] for t in timings[hi]) - base) / (hi - lo) * 1000
        print(f"\nper added partition: {slope:.2f} ms (from N={lo} to N={hi})")


if __name__ == "__main__":
    main()
