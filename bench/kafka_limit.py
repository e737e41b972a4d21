"""Physical-limit probe: how fast can this machine move engine-like records through Kafka?

Run: ``.venv/bin/python bench/kafka_limit.py [--messages N] [--partitions P]`` with the local
broker up. Every probe uses fresh, uniquely named topics (deleted at the end):

  (a)  confluent-kafka produce -> consume, Avro-encoding and decoding an OrchestratorMessage
       carrying an ActivityResult (the ceiling: no processing at all);
  (b)  a faust-streaming agent (kafka:// = aiokafka, rocksdb store via rocksdict with small
       options, bytes keys, concurrency=1) that decodes each record, bumps a per-key counter
       in a table (faust writes the changelog) and writes the re-encoded record to a sink;
  (c)  the same work in a plain confluent-kafka consume-process-produce loop with rocksdict,
       producing one changelog record per update, flushing then committing offsets per batch;
  (c2) (c) inside Kafka transactions: one transaction per polled batch carrying the outputs,
       the changelog records and the consumed offsets; RocksDB written after the commit;
  (d)  single-record round trip latency (send one, wait for its output, repeat) for b, c, c2.

The processors of (b), (c), (c2) run as subprocesses of this script (``--worker``), so the
driver (load generator + output reader) and the processor each have their own interpreter,
as they would in production. Throughput is measured from the first produce to the last output
read. Nothing here asserts timings: it prints figures for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

# bench/ is sys.path[0] when run as a script, and bench/http.py (issue 8's name) would shadow the
# standard library's http package, which faust's worker (aiohttp) imports
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != os.path.dirname(os.path.abspath(__file__))]

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from durable_kafka.streams import events  # noqa: E402
from durable_kafka.streams.codec import Codec  # noqa: E402
from durable_kafka.streams.config import admin_config, bootstrap_servers, consumer_config, producer_config  # noqa: E402

INSTANCES = 1000  # distinct keys (instance ids) the load is spread over
WARMUP_TIMEOUT_S = 60
# faust's RocksDB defaults are ~2 GiB block cache and 3 x 64 MiB memtables per partition.
SMALL_ROCKS = {
    "write_buffer_size": 1 << 20,
    "max_write_buffer_number": 2,
    "target_file_size_base": 4 << 20,
    "block_cache_size": 4 << 20,
    "block_cache_compressed_size": 1 << 20,
    "max_open_files": 64,
}


def say(text: str) -> None:
    print(text, flush=True)


def sample_message(i: int, instance: str) -> events.OrchestratorMessage:
    """A realistic record: an activity result of ~120 bytes JSON for an instance."""
    result = json.dumps({"order": i, "status": "shipped", "items": [1, 2, 3], "note": "x" * 48})
    return events.OrchestratorMessage(
        id=f"{instance}/e1/{i}/result",
        instance_id=instance,
        sent_at=datetime.now(timezone.utc),
        body=events.ActivityResult(execution_id="e1", task_id=i, result=result),
    )


# --------------------------------------------------------------------------- topics


class Topics:
    """Creates uniquely named probe topics and deletes every one of them at the end."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.admin = AdminClient(admin_config(bootstrap))
        self.prefix = prefix

    def create(self, name: str, partitions: int, compact: bool = False) -> str:
        full = f"{self.prefix}-{name}"
        config = {"cleanup.policy": "compact"} if compact else {}
        self.admin.create_topics([NewTopic(full, num_partitions=partitions, config=config)])[full].result()
        deadline = time.monotonic() + 30
        while full not in self.admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
            time.sleep(0.05)
        return full

    def delete_all(self) -> None:
        """Delete every topic starting with the prefix (faust's own topics included)."""
        names = [t for t in self.admin.list_topics(timeout=10).topics if t.startswith(self.prefix)]
        if names:
            for future in self.admin.delete_topics(names, operation_timeout=30).values():
                try:
                    future.result()
                except KafkaException as exc:
                    say(f"  (cleanup: {exc})")


def all_partitions(topic: str, partitions: int, offsets: list[int] | None = None) -> list[TopicPartition]:
    return [TopicPartition(topic, p, OFFSET_BEGINNING if offsets is None else offsets[p]) for p in range(partitions)]


def end_offsets(consumer: Consumer, topic: str, partitions: int) -> list[int]:
    return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]


def poll_batch(consumer: Consumer, timeout: float, limit: int = 500) -> list:
    """Wait up to ``timeout`` for one record, then take what is already there (up to ``limit``).

    ``Consumer.consume(n, timeout)`` waits for all n records or the whole timeout, which would
    add the timeout to every lone record's latency.
    """
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(limit - 1, timeout=0)]


def produce_all(producer: Producer, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    label: str
    description: str
    messages: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def p(self, q: int) -> float | None:
        if len(self.latencies_ms) < 2:
            return None
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]


# --------------------------------------------------------------------------- (a)


def probe_produce_consume(bootstrap: str, topics: Topics, n: int, partitions: int) -> Result:
    """(a): encode -> produce -> consume -> decode, with the consumer in its own thread."""
    result = Result("a", "confluent-kafka produce->consume + Avro encode/decode")
    codec = Codec.default()
    topic = topics.create("a", partitions)
    consumer = Consumer(consumer_config(bootstrap, f"{topics.prefix}-a"))
    consumer.assign(all_partitions(topic, partitions))
    producer = Producer(producer_config(bootstrap))
    # warm-up: connections, metadata and the first fetch are not part of the rate
    produce_all(producer, topic, [(b"warmup", codec.encode(sample_message(0, "warmup")))])
    while not any(m.error() is None for m in poll_batch(consumer, 1.0)):
        pass
    done = threading.Event()
    seen = [0, 0.0]

    def consume() -> None:
        deadline = time.monotonic() + 300
        while seen[0] < n and time.monotonic() < deadline:
            for msg in poll_batch(consumer, 0.1, 1000):
                if msg.error() is None:
                    codec.decode(msg.value())
                    seen[0] += 1
                    seen[1] = time.perf_counter()
        done.set()

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    start = time.perf_counter()
    for i in range(n):
        instance = f"inst-{i % INSTANCES}"
        value = codec.encode(sample_message(i, instance))
        while True:
            try:
                producer.produce(topic, key=instance.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    done.wait()
    consumer.close()
    result.messages, result.seconds = seen[0], seen[1] - start
    if seen[0] < n:
        result.error = f"only {seen[0]} of {n} consumed"
    return result


# --------------------------------------------------------------------------- driver for b, c, c2


class Pipeline:
    """Starts a processor subprocess between a source and a sink topic and measures it."""

    def __init__(self, bootstrap: str, topics: Topics, label: str, kind: str, partitions: int, workdir: Path):
        self.bootstrap, self.label, self.kind, self.partitions = bootstrap, label, kind, partitions
        self.group = f"{topics.prefix}-{label}"
        self.source = topics.create(f"{label}-in", partitions)
        self.sink = topics.create(f"{label}-out", partitions)
        if kind == "faust":
            # faust would create its table changelog itself, but its co-partitioning check can
            # race that creation (PartitionsMismatch "... has 0 partitions"); create it first.
            topics.create(f"{label}-counts-changelog", partitions, compact=True)
            self.changelog = ""
        else:
            self.changelog = topics.create(f"{label}-changelog", partitions, compact=True)
        self.datadir = workdir / label
        self.log_path = workdir / f"{label}.log"
        self.process: subprocess.Popen | None = None
        self.codec = Codec.default()
        self.producer = Producer(producer_config(bootstrap, linger_ms=0))
        self.reader = Consumer(consumer_config(bootstrap, f"{self.group}-reader"))

    def start(self) -> None:
        command = [
            sys.executable, __file__, "--worker", self.kind, "--bootstrap", self.bootstrap,
            "--source", self.source, "--sink", self.sink, "--changelog", self.changelog,
            "--group", self.group, "--datadir", str(self.datadir), "--partitions", str(self.partitions),
        ]
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        self.reader.close()

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])

    def _record(self, i: int, key: str) -> tuple[bytes, bytes]:
        return key.encode(), self.codec.encode(sample_message(i, key))

    def _wait_for(self, key: bytes, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.reader.poll(0.2)
            if msg is not None and msg.error() is None and msg.key() == key:
                return True
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
        return False

    def warm_up(self) -> float:
        """Wait until the worker has joined, restored and processed a first record."""
        started = time.monotonic()
        self.reader.assign(all_partitions(self.sink, self.partitions))
        produce_all(self.producer, self.source, [self._record(0, "warmup")])
        if not self._wait_for(b"warmup", WARMUP_TIMEOUT_S):
            raise RuntimeError(f"no warm-up output within {WARMUP_TIMEOUT_S}s:\n{self.log_tail()}")
        return time.monotonic() - started

    def throughput(self, n: int) -> tuple[int, float]:
        offsets = end_offsets(self.reader, self.sink, self.partitions)
        self.reader.assign(all_partitions(self.sink, self.partitions, offsets))
        records = [self._record(i, f"inst-{i % INSTANCES}") for i in range(n)]
        seen = [0, 0.0]

        def read() -> None:
            deadline = time.monotonic() + max(120.0, n / 200)
            while seen[0] < n and time.monotonic() < deadline:
                batch = poll_batch(self.reader, 0.1, 1000)
                if batch:
                    seen[0] += sum(1 for m in batch if m.error() is None)
                    seen[1] = time.perf_counter()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        start = time.perf_counter()
        produce_all(self.producer, self.source, records)
        reader.join()
        return seen[0], seen[1] - start

    def latency(self, rounds: int) -> list[float]:
        samples = []
        for i in range(rounds):
            key = f"lat-{i}"
            record = self._record(i, key)
            start = time.perf_counter()
            self.producer.produce(self.source, key=record[0], value=record[1])
            self.producer.poll(0)
            if not self._wait_for(record[0], 10):
                raise RuntimeError(f"round {i}: no output within 10s")
            samples.append((time.perf_counter() - start) * 1000)
        return samples


def probe_pipeline(bootstrap: str, topics: Topics, workdir: Path, label: str, kind: str,
                   description: str, n: int, rounds: int, partitions: int) -> Result:
    result = Result(label, description)
    pipeline = Pipeline(bootstrap, topics, label, kind, partitions, workdir)
    pipeline.start()
    try:
        say(f"  ({label}) warm-up took {pipeline.warm_up():.1f}s")
        result.messages, result.seconds = pipeline.throughput(n)
        if result.messages < n:
            result.error = f"only {result.messages} of {n} outputs"
        say(f"  ({label}) {result.messages} msgs in {result.seconds:.2f}s = {result.rate:,.0f} msg/s")
        result.latencies_ms = pipeline.latency(rounds)
        say(f"  ({label}) latency p50 {result.p(50):.1f} ms, p99 {result.p(99):.1f} ms")
    except RuntimeError as exc:
        result.error = str(exc).splitlines()[0]
        say(f"  ({label}) FAILED: {exc}")
    finally:
        pipeline.stop()
    return result


# --------------------------------------------------------------------------- workers (subprocesses)


def run_faust_worker(args: argparse.Namespace) -> None:
    import faust

    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="rocksdb://",
        datadir=args.datadir,
        topic_partitions=args.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
    )
    codec = Codec.default()
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    source = app.topic(args.source, partitions=args.partitions, **raw)
    sink = app.topic(args.sink, partitions=args.partitions, **raw)
    counts = app.Table(
        "counts", default=int, key_type=bytes, partitions=args.partitions,
        options=SMALL_ROCKS,
    )

    @app.agent(source, concurrency=1)
    async def process(stream):  # noqa: ANN001, ANN202 - faust agent signature
        async for event in stream.events():
            message = codec.decode(event.value)
            counts[event.key] += 1
            await sink.send(key=event.key, value=codec.encode(message))

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


def _open_rocks(path: str):  # noqa: ANN202 - rocksdict types
    from rocksdict import BlockBasedOptions, Cache, Options, Rdict

    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(SMALL_ROCKS["write_buffer_size"])
    options.set_max_write_buffer_number(SMALL_ROCKS["max_write_buffer_number"])
    options.set_max_open_files(SMALL_ROCKS["max_open_files"])
    table = BlockBasedOptions()
    table.set_block_cache(Cache(SMALL_ROCKS["block_cache_size"]))
    options.set_block_based_table_factory(table)
    return Rdict(path, options)


def run_plain_worker(args: argparse.Namespace, transactional: bool) -> None:
    from rocksdict import WriteBatch

    codec = Codec.default()
    os.makedirs(args.datadir, exist_ok=True)
    db = _open_rocks(args.datadir)
    consumer = Consumer(consumer_config(args.bootstrap, args.group))
    extra = {"transactional.id": f"{args.group}-0"} if transactional else {}
    producer = Producer(producer_config(args.bootstrap, **extra))
    if transactional:
        producer.init_transactions(30)
    consumer.subscribe([args.source])
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    while not stopping.is_set():
        batch = [m for m in poll_batch(consumer, 0.1) if m.error() is None]
        if not batch:
            producer.poll(0)
            continue
        if transactional:
            producer.begin_transaction()
        counters: dict[bytes, int] = {}
        positions: dict[int, int] = {}
        for msg in batch:
            key = msg.key()
            message = codec.decode(msg.value())
            count = counters.get(key)
            if count is None:
                stored = db.get(key)
                count = int.from_bytes(stored, "big") if stored else 0
            counters[key] = count = count + 1
            producer.produce(args.sink, key=key, value=codec.encode(message))
            producer.produce(args.changelog, key=key, value=count.to_bytes(8, "big"), partition=msg.partition())
            positions[msg.partition()] = msg.offset() + 1
        if transactional:
            offsets = [TopicPartition(args.source, p, o) for p, o in positions.items()]
            producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
        else:
            producer.flush(30)
            consumer.commit(offsets=[TopicPartition(args.source, p, o) for p, o in positions.items()],
                            asynchronous=True)
        writes = WriteBatch(raw_mode=True)
        for key, count in counters.items():
            writes.put(key, count.to_bytes(8, "big"))
        db.write(writes)
    consumer.close()
    db.close()


# --------------------------------------------------------------------------- main


def print_table(results: list[Result]) -> None:
    base = next((r.rate for r in results if r.label == "a" and not r.error), 0.0)
    say("")
    say(f"{'probe':<5} {'what':<62} {'msgs':>7} {'msg/s':>9} {'vs (a)':>7} {'p50 ms':>7} {'p99 ms':>7}")
    for r in results:
        ratio = f"{r.rate / base:.2f}" if base else "-"
        p50 = f"{r.p(50):.1f}" if r.p(50) is not None else "-"
        p99 = f"{r.p(99):.1f}" if r.p(99) is not None else "-"
        line = f"{r.label:<5} {r.description:<62} {r.messages:>7} {r.rate:>9,.0f} {ratio:>7} {p50:>7} {p99:>7}"
        say(line + (f"  ERROR: {r.error}" if r.error else ""))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30000, help="records per throughput probe")
    parser.add_argument("--rounds", type=int, default=200, help="round trips per latency probe")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of every probe topic")
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--only", default="a,b,c,c2", help="comma-separated probes to run")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    # internal: run a processor (used by the driver as a subprocess)
    parser.add_argument("--worker", choices=["faust", "plain", "txn"], help=argparse.SUPPRESS)
    for name in ("source", "sink", "changelog", "group", "datadir"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bootstrap = bootstrap_servers(args.bootstrap)
    if args.worker:
        args.bootstrap = bootstrap
        if args.worker == "faust":
            sys.argv = [sys.argv[0], "worker"]  # faust's Worker reads its options from argv
            run_faust_worker(args)
        else:
            run_plain_worker(args, transactional=args.worker == "txn")
        return 0
    wanted = set(args.only.split(","))
    topics = Topics(bootstrap, f"bench-{secrets.token_hex(4)}")
    workdir = Path(tempfile.mkdtemp(prefix="dk-limit-"))
    say(f"kafka_limit: {args.messages} msgs/probe, {args.rounds} latency rounds, "
        f"{args.partitions} partitions, broker {bootstrap}, cpus {os.cpu_count()}")
    results: list[Result] = []
    pipelines = [
        ("b", "faust", "faust agent: decode, table counter (+changelog), produce"),
        ("c", "plain", "confluent loop: decode, rocksdict counter, changelog, produce"),
        ("c2", "txn", "(c) inside Kafka transactions, one per polled batch"),
    ]
    try:
        if "a" in wanted:
            say("(a) produce -> consume ...")
            results.append(probe_produce_consume(bootstrap, topics, args.messages, args.partitions))
            say(f"  (a) {results[-1].rate:,.0f} msg/s")
        for label, kind, description in pipelines:
            if label in wanted:
                say(f"({label}) {description} ...")
                results.append(probe_pipeline(bootstrap, topics, workdir, label, kind, description,
                                              args.messages, args.rounds, args.partitions))
    finally:
        topics.delete_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(results)
    if args.json:
        rows = [{"probe": r.label, "what": r.description, "messages": r.messages, "seconds": r.seconds,
                 "msg_per_s": r.rate, "p50_ms": r.p(50), "p99_ms": r.p(99), "error": r.error} for r in results]
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
