"""Reading one instance's history from ``<hub>.history``.

The history topic is keyed by instance id, so an instance's records all sit in one partition.
A fresh assigned consumer reads that partition from the beginning up to its end offset taken at
call time: everything committed before the call, nothing half-written (read_committed).
Records of older executions (before continue-as-new or a restart) and redelivered duplicates
are dropped; what remains is ordered by its index in the execution.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import TopicPartition

from durable_kafka._client_kafka import Metadata, is_partition_eof
from durable_kafka.errors import CodecError, TimeoutError
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.events import HistoryBatch, HistoryEvent, HistoryRecord, history_records

log = logging.getLogger(__name__)

_BATCH = 1000


def read_history(
    bootstrap: str,
    metadata: Metadata,
    topic: str,
    partition: int,
    instance_id: str,
    execution_id: str,
    codec: Codec,
    *,
    timeout: float,
    settle: float,
) -> list[HistoryEvent]:
    """The events of ``instance_id``'s execution ``execution_id``, in history order.

    Reads up to the high watermark taken now. When the committed end stops short of it (a
    transaction still open, or its commit markers not yet written) the reader waits ``settle``
    seconds more at most, then answers with what is committed.
    """
    low, end = metadata.watermarks(topic, partition)
    if end == 0:
        return []
    key = instance_id.encode("utf-8")
    records: dict[str, HistoryRecord] = {}
    consumer = metadata.consumer("history")
    try:
        # an explicit offset: the logical OFFSET_BEGINNING costs librdkafka ~0.5 s of offset query
        consumer.assign([TopicPartition(topic, partition, low)])
        position = 0
        deadline = time.monotonic() + timeout
        settle_deadline: float | None = None
        while position < end:
            now = time.monotonic()
            if settle_deadline is not None and now >= settle_deadline:
                log.debug("history of %s: answering at committed offset %d of %d",
                          instance_id, position, end)
                break
            if now >= deadline:
                raise TimeoutError(
                    f"reading the history of {instance_id!r} took longer than {timeout}s "
                    f"(at offset {position} of {end} in {topic}[{partition}])"
                )
            for message in consumer.consume(_BATCH, 0.1):
                error = message.error()
                offset = message.offset()
                if is_partition_eof(error):
                    if offset is not None:  # the end offset the event reports
                        position = max(position, offset)
                    if position < end and settle_deadline is None:
                        settle_deadline = time.monotonic() + settle
                    continue
                if error is not None:
                    log.warning("history topic %s: %s", topic, error)
                    continue
                assert offset is not None  # set on every consumed record (typed Optional by confluent-kafka)
                position = max(position, offset + 1)
                value = message.value()
                if message.key() != key or value is None:
                    continue
                try:
                    decoded = codec.decode(value, expected=(HistoryRecord, HistoryBatch))
                except CodecError as error:
                    log.warning("skipping undecodable history record at offset %d: %s",
                                message.offset(), error)
                    continue
                for record in history_records(decoded):  # a batch per step (D20) or one event
                    if record.instance_id == instance_id and record.execution_id == execution_id:
                        records.setdefault(record.id, record)
    finally:
        consumer.close()
    return [record.event for record in sorted(records.values(), key=lambda r: r.index)]
