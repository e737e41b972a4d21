"""The Kafka-native payload store: large payloads as chunks of the compacted ``<hub>.payloads`` topic.

Why Kafka and not a blob store by default: a hub then needs nothing but its brokers, and the
payload shares the fate of the event that refers to it. Inside a worker the chunks are written
by the processor's transactional producer in the *same transaction* as the history event,
status snapshot or result that carries the reference (see :func:`streams.payloads.bind`): a
kill -9 before the commit aborts both, a read_committed reader never sees the chunks, and the
log cleaner drops aborted records. Clients and activity workers write the chunks first, wait
for the broker's acknowledgement, and only then send the referencing command or result, so a
reference never points at chunks that are not there (a crash in between leaves chunks nobody
refers to; see docs/PAYLOADS.md).

Layout: one payload = chunks of at most :data:`CHUNK_BYTES` on one partition, keys
``<payload id>:<index>``, values the raw (optionally gzip-compressed) bytes. The reference
``kafka:v1:<partition>:<first offset>:<chunks>:<size>:<enc>:<sha256>:<payload id>:<owner>``
says where to start reading and how to check what was read, so a download is one seek and a
short sequential read, and a missing or damaged chunk is a typed error, never a hang.
Purging the owner writes tombstones for every chunk key (compaction then removes the data).
"""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from durable_kafka.errors import PayloadUnavailableError
from durable_kafka.streams.config import consumer_config, partition_for, producer_config, resolve_kafka_config
from durable_kafka.streams.limits import MAX_RECORD_BYTES
from durable_kafka.streams.payloads import LargePayloadStorageOptions, PayloadStore, current_sink
from durable_kafka.streams.reading import watermarks

__all__ = ["KafkaPayloadStore", "CHUNK_BYTES", "PREFIX"]

#: Bytes of payload per chunk record (key and framing stay well under the record limit).
CHUNK_BYTES = MAX_RECORD_BYTES - 64 * 1024
PREFIX = "kafka:v1:"
#: How long a download may wait for chunks (an open transaction ahead of them is the only
#: legitimate reason to wait; it ends within the transaction timeout).
READ_TIMEOUT = 90.0


class KafkaPayloadStore(PayloadStore):
    """Chunks in ``<hub>.payloads`` (the store used when no ``payload_store`` is given)."""

    def __init__(self, bootstrap_servers: str, hub: str = "default", options: LargePayloadStorageOptions | None = None,
                 *, kafka_config: Mapping[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap_servers
        self.topic = f"{hub}.payloads"
        self.hub = hub
        # no gzip by default: on a local or data-centre network, Python's gzip (about 6 MB/s at
        # level 1 on our loaded test machine) costs more than sending the bytes (docs/PAYLOADS.md)
        self._options = options or LargePayloadStorageOptions(enable_compression=False)
        self._kafka_config = resolve_kafka_config(kafka_config)
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._watermark_reader: Consumer | None = None
        self._partitions: int | None = None
        self._lock = threading.Lock()

    @property
    def options(self) -> LargePayloadStorageOptions:
        return self._options

    # ------------------------------------------------------------------ writing
    def upload(self, data: bytes, *, instance_id: str | None = None) -> str:
        digest = hashlib.sha256(data).hexdigest()
        enc = "gz" if self._options.enable_compression else "raw"
        body = gzip.compress(data, compresslevel=1) if enc == "gz" else data
        pid = uuid.uuid4().hex
        partition = partition_for(pid.encode(), self._partition_count())
        records: list[tuple[bytes, bytes | None]] = [
            (f"{pid}:{i}".encode(), body[at: at + CHUNK_BYTES])
            for i, at in enumerate(range(0, max(len(body), 1), CHUNK_BYTES))]
        offsets = self._write(partition, records)
        return f"{PREFIX}{partition}:{offsets[0]}:{len(records)}:{len(data)}:{enc}:{digest}:{pid}:{instance_id or ''}"

    async def upload_async(self, data: bytes, *, instance_id: str | None = None) -> str:
        import asyncio

        return await asyncio.to_thread(self.upload, data, instance_id=instance_id)

    def delete(self, token: str) -> None:
        partition, _, count, _, _, _, pid, _ = _parse(token)
        self._write(partition, [(f"{pid}:{i}".encode(), None) for i in range(count)])

    def _write(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> list[int]:
        sink = current_sink()
        if sink is not None:  # inside a processor: the chunks join its transaction
            return sink.produce_flushed(self.topic, partition, records)
        with self._lock:
            if self._producer is None:
                self._producer = Producer(producer_config(self.bootstrap, kafka_config=self._kafka_config,
                                                          **{"linger.ms": 5}))
            producer = self._producer
        return produce_and_wait(producer, self.topic, partition, records)

    def _partition_count(self) -> int:
        if self._partitions is None:
            with self._lock:
                consumer = self._reader()
                meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
                if meta is None or meta.error is not None or not meta.partitions:
                    raise PayloadUnavailableError(None, self.topic, f"the topic {self.topic!r} does not exist "
                                                  "(start a worker of the hub, or `topics create`, first)")
                self._partitions = len(meta.partitions)
        return self._partitions

    # ------------------------------------------------------------------ reading
    def download(self, token: str) -> bytes:
        partition, offset, count, size, enc, digest, pid, owner = _parse(token)
        with self._lock:
            chunks = self._read(partition, offset, count, pid, token, owner)
        body = b"".join(chunks[i] for i in range(count))
        try:
            data = gzip.decompress(body) if enc == "gz" else body
        except (OSError, EOFError) as exc:
            raise PayloadUnavailableError(owner, token, f"its chunks do not decompress ({exc})") from None
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise PayloadUnavailableError(owner, token, f"its chunks hold {len(data):,} bytes that do not match "
                                          f"the recorded size ({size:,}) and SHA-256")
        return data

    async def download_async(self, token: str) -> bytes:
        import asyncio

        return await asyncio.to_thread(self.download, token)

    def _reader(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(consumer_config(
                self.bootstrap, f"{self.hub}.payload-reader", kafka_config=self._kafka_config,
                **{"enable.partition.eof": True, "max.partition.fetch.bytes": 16 * 1024 * 1024, "fetch.wait.max.ms": 10,
                   "fetch.max.bytes": 64 * 1024 * 1024}))
        return self._consumer

    def _end(self, partition: int) -> int:
        """The partition's high watermark: with read_committed, a consumer's watermark query
        answers the last stable offset, which lags while a commit marker is being written."""
        if self._watermark_reader is None:
            self._watermark_reader = Consumer(consumer_config(
                self.bootstrap, f"{self.hub}.payload-reader", kafka_config=self._kafka_config,
                **{"isolation.level": "read_uncommitted"}))
        return watermarks(self._watermark_reader, TopicPartition(self.topic, partition))[1]

    def _read(self, partition: int, offset: int, count: int, pid: str, token: str,
              owner: str | None) -> dict[int, bytes]:
        consumer = self._reader()
        tp = TopicPartition(self.topic, partition, offset)
        high = self._end(partition)
        if offset >= high or count <= 0:
            raise PayloadUnavailableError(owner, token, f"its first chunk (offset {offset}) is past the end of "
                                          f"{self.topic}[{partition}] (never committed?)")
        consumer.assign([tp])
        prefix = f"{pid}:".encode()
        chunks: dict[int, bytes] = {}
        deadline = time.monotonic() + READ_TIMEOUT
        try:
            while len(chunks) < count:
                if time.monotonic() > deadline:
                    raise PayloadUnavailableError(owner, token, f"only {len(chunks)} of {count} chunks were read "
                                                  f"within {READ_TIMEOUT:.0f} s")
                # ask for exactly what is missing: consume() returns as soon as it has that many
                for m in consumer.consume(max(1, count - len(chunks)), 0.2):
                    err = m.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            raise KafkaException(err)
                        # at the end of what read_committed may read: the end of the partition
                        # (the chunks are not there), or short of it: an open transaction ahead
                        # of the chunks, or the commit marker of theirs not written on this
                        # partition yet (markers land partition by partition): wait
                        if m.offset() >= self._end(partition):
                            raise PayloadUnavailableError(
                                owner, token, f"{count - len(chunks)} of its {count} chunks are missing from "
                                f"{self.topic}[{partition}] (purged, compacted away or never committed)")
                        time.sleep(0.02)
                        continue
                    key, value = m.key(), m.value()
                    if key is None or not key.startswith(prefix) or value is None:
                        continue
                    index = int(key[len(prefix):])
                    chunks.setdefault(index, value)
                    if len(chunks) >= count:
                        break
        finally:
            consumer.unassign()
        return chunks

    # ------------------------------------------------------------------ tokens
    def is_known_token(self, value: str) -> bool:
        if not value.startswith(PREFIX):
            return False
        try:
            _parse(value)
        except ValueError:
            return False
        return True

    def owner_of(self, token: str) -> str | None:
        return _parse(token)[7]

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(10)
                self._producer = None
            for consumer in (self._consumer, self._watermark_reader):
                if consumer is not None:
                    consumer.close()
            self._consumer = self._watermark_reader = None


def _parse(token: str) -> tuple[int, int, int, int, str, str, str, str | None]:
    """(partition, first offset, chunks, size, encoding, sha256, payload id, owner) of a token."""
    if not token.startswith(PREFIX):
        raise ValueError(f"not a Kafka payload token: {token[:80]!r}")
    parts = token[len(PREFIX):].split(":", 7)
    if len(parts) != 8 or parts[4] not in ("gz", "raw") or len(parts[5]) != 64 or len(parts[6]) != 32:
        raise ValueError(f"malformed Kafka payload token: {token[:80]!r}")
    partition, offset, count, size = (int(p) for p in parts[:4])
    return partition, offset, count, size, parts[4], parts[5], parts[6], parts[7] or None


def produce_and_wait(producer: Producer, topic: str, partition: int,
                     records: list[tuple[bytes, bytes | None]], timeout: float = 60.0) -> list[int]:
    """Produce ``records`` to one partition and return their offsets once the broker has them all."""
    offsets = [-1] * len(records)
    errors: list[Any] = []

    def delivered(index: int) -> Any:
        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(err)
            else:
                offsets[index] = msg.offset()
        return on_delivery

    for i, (key, value) in enumerate(records):
        while True:
            try:
                producer.produce(topic, key=key, value=value, partition=partition, on_delivery=delivered(i))
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
    left = producer.flush(timeout)
    if errors:
        raise KafkaException(errors[0])
    if left or min(offsets) < 0:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"{left} payload chunks not acknowledged"))
    return offsets
