"""Throughput of 5 MB payloads: the engine's large-payload path against plain Kafka in one run.

Run: ``make bench-payloads`` (or ``.venv/bin/python bench/payloads.py [--instances N]
[--size-mb S] [--partitions P]``) with the local broker up. Three measurements on one fresh hub
(its topics are deleted at the end), printed as a table for docs/PERFORMANCE.md:

  (a) plain Kafka: a confluent-kafka producer writes the same bytes the engine writes for the
      workload below, cut into records of the same chunk size, acks=all, and a read_committed
      consumer reads them back (no engine, no JSON, no hashing: the floor of the cost);
  (b) the store alone: ``KafkaPayloadStore.upload`` then ``download`` of N payloads (chunking,
      SHA-256, offsets, the read by reference);
  (c) the engine end to end: a worker (its own process, as in production) runs N ``relay``
      orchestrations, each with an S MB input that goes to an activity and comes back as the
      output, started by a client that then reads every output. Per instance the store writes
      4 x S MB (input, activity input, activity result, output) and reads as much back.

MB are 10^6 bytes. Nothing here asserts timings: it prints figures.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _common import ChildProcess, load_average, markdown_table, progress, unique_name  # noqa: E402

from durable_kafka import Client  # noqa: E402
from durable_kafka.streams.admin import delete_hub, ensure_topics  # noqa: E402
from durable_kafka.streams.config import consumer_config, producer_config  # noqa: E402
from durable_kafka.streams.payload_topic import CHUNK_BYTES, KafkaPayloadStore  # noqa: E402
from durable_kafka.streams.reading import read_to_end, watermarks  # noqa: E402

MB = 1_000_000


# ------------------------------------------------------------------ the worker's code (subprocess)
def reverse(ctx, text):
    return text[::-1]


def relay(ctx, data):
    back = yield ctx.call_activity(reverse, input=data)
    return back


def make_worker():  # python -m durable_kafka worker payloads:make_worker (cwd bench/)
    from durable_kafka import Worker

    w = Worker(os.environ["DURABLE_KAFKA_BOOTSTRAP"], hub=os.environ["DK_BENCH_HUB"],
               state_dir=os.environ["DK_BENCH_STATE"], partitions=int(os.environ["DK_BENCH_PARTITIONS"]))
    w.add_orchestrator(relay)
    w.add_activity(reverse)
    return w


# ------------------------------------------------------------------ the driver
def _payload(size: int, seed: int) -> str:
    """Hex text (what JSON payloads look like to Kafka: text that does not compress to nothing)."""
    block = "".join(hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def plain_kafka(bootstrap: str, topic: str, partitions: int, total: int, chunk: int) -> tuple[float, float]:
    """Seconds to produce ``total`` bytes in ``chunk``-sized records, and to consume them back."""
    body = os.urandom(chunk)
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 5}))
    t0 = time.monotonic()
    sent, p = 0, 0
    while sent < total:
        n = min(chunk, total - sent)
        while True:
            try:
                producer.produce(topic, key=f"k{sent}".encode(), value=body[:n], partition=p % partitions)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
        producer.poll(0)
        sent += n
        p += 1
    producer.flush(120)
    produce_s = time.monotonic() - t0
    consumer = Consumer(consumer_config(bootstrap, f"{topic}.bench-{uuid.uuid4().hex}",
                                        **{"max.partition.fetch.bytes": 16 * MB, "fetch.max.bytes": 64 * MB}))
    ranges = {q: watermarks(consumer, TopicPartition(topic, q)) for q in range(partitions)}
    t0 = time.monotonic()
    got = sum(len(m.value() or b"") for batch in read_to_end(consumer, topic, ranges) for m in batch)
    consume_s = time.monotonic() - t0
    consumer.close()
    assert got >= total, (got, total)
    return produce_s, consume_s


def store_alone(bootstrap: str, hub: str, payloads: list[bytes]) -> tuple[float, float]:
    store = KafkaPayloadStore(bootstrap, hub)
    t0 = time.monotonic()
    tokens = [store.upload(p, instance_id=f"bench-{i}") for i, p in enumerate(payloads)]
    upload_s = time.monotonic() - t0
    t0 = time.monotonic()
    for token, p in zip(tokens, payloads):
        assert store.download(token) == p
    download_s = time.monotonic() - t0
    store.close()
    return upload_s, download_s


def engine(bootstrap: str, hub: str, partitions: int, inputs: list[str]) -> tuple[float, float]:
    """(seconds from the first start to the last output read, seconds for the starts alone)."""
    state = tempfile.mkdtemp(prefix="dk-bench-payloads-")
    env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": bootstrap, "DK_BENCH_HUB": hub, "DK_BENCH_STATE": state,
           "DK_BENCH_PARTITIONS": str(partitions), "PYTHONPATH": str(ROOT / "bench")}
    worker = ChildProcess([sys.executable, "-m", "durable_kafka", "worker", "payloads:make_worker"],
                          name="worker", cwd=ROOT / "bench", env=env)
    try:
        worker.wait_for_line("running", 120)
        with Client(bootstrap, hub=hub) as client:
            t0 = time.monotonic()
            ids = [client.schedule_new_orchestration(relay, input=data, wait_for_acceptance=False) for data in inputs]
            client.flush(300)
            started_s = time.monotonic() - t0
            for iid, data in zip(ids, inputs):
                state_ = client.wait_for_orchestration_completion(iid, timeout=600)
                assert state_.serialized_output is not None and len(state_.serialized_output) == len(data) + 2
            total_s = time.monotonic() - t0
        return total_s, started_s
    finally:
        worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--size-mb", type=float, default=5.0)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    bootstrap = os.environ.get("DURABLE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    size = int(args.size_mb * MB)
    n = args.instances
    hub = unique_name("benchpl")
    ensure_topics(hub, partitions=args.partitions, bootstrap=bootstrap)
    baseline_topic = f"{hub}.orchestrator-events"  # any fresh topic of the hub: delete-policy, P partitions
    progress(f"hub {hub}: {n} payloads of {size / MB:.1f} MB, {args.partitions} partitions, load {load_average()}")
    try:
        texts = [_payload(size, i) for i in range(n)]
        raw = [(f'"{t}"').encode() for t in texts]  # the JSON text the store holds
        progress("(a) plain produce/consume of the same bytes")
        written = 4 * sum(len(r) for r in raw)  # what (c) writes through the store
        a_produce, a_consume = plain_kafka(bootstrap, baseline_topic, args.partitions, written, CHUNK_BYTES)
        progress("(b) KafkaPayloadStore upload/download")
        b_up, b_down = store_alone(bootstrap, hub, raw)
        progress("(c) engine: relay orchestrations, input -> activity -> output")
        c_total, c_starts = engine(bootstrap, hub, args.partitions, texts)
    finally:
        delete_hub(hub, bootstrap=bootstrap)
    one = sum(len(r) for r in raw) / MB
    rows = [
        ["(a) plain Kafka: produce the bytes of (c)", f"{written / MB:.0f}", f"{a_produce:.1f}",
         f"{written / MB / a_produce:.1f}", ""],
        ["(a) plain Kafka: consume them", f"{written / MB:.0f}", f"{a_consume:.1f}", f"{written / MB / a_consume:.1f}", ""],
        ["(b) store: upload", f"{one:.0f}", f"{b_up:.1f}", f"{one / b_up:.1f}", f"{n / b_up:.2f}"],
        ["(b) store: download", f"{one:.0f}", f"{b_down:.1f}", f"{one / b_down:.1f}", f"{n / b_down:.2f}"],
        ["(c) engine: client starts (uploads)", f"{one:.0f}", f"{c_starts:.1f}", f"{one / c_starts:.1f}",
         f"{n / c_starts:.2f}"],
        ["(c) engine: start to last output read", f"{4 * one:.0f} written + read", f"{c_total:.1f}",
         f"{4 * one / c_total:.1f}", f"{n / c_total:.2f}"],
    ]
    print()
    print(f"{n} payloads of {size / MB:.1f} MB, {args.partitions} partitions, load average {load_average()}")
    print(markdown_table(["measurement", "MB", "seconds", "MB/s", "payloads or instances/s"], rows))
    plain = written / MB / (a_produce + a_consume)
    print(f"\nplain produce+consume of the engine's bytes: {plain:.1f} MB/s; engine (c): "
          f"{4 * one / c_total:.1f} MB/s of payload stored and read = {4 * one / c_total / plain:.0%} of plain")


if __name__ == "__main__":
    main()
