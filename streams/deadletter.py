"""Dead letters that always fit: the one place that turns a rejected record into a ``DeadLetter``.

Why truncation: the record that could not be handled may itself be near Kafka's record size
limit (or over it), and a dead-letter copy that does not fit aborts the very transaction that
was meant to move past it. So the copy keeps at most :data:`MAX_ORIGINAL_BYTES` of the value and
:data:`MAX_KEY_BYTES` of the key, plus what identifies the whole original: its size, its SHA-256
and its coordinates (topic, partition, offset, timestamp). An auditor can then find the full
record in the source topic while it is retained, and match it byte for byte.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

from durable_kafka.streams.config import partition_for
from durable_kafka.streams.events import DeadLetter

__all__ = ["MAX_ORIGINAL_BYTES", "MAX_KEY_BYTES", "MAX_REASON_CHARS", "build_dead_letter", "dead_letter_for",
           "misrouted_reason"]

MAX_ORIGINAL_BYTES = 256 * 1024
MAX_KEY_BYTES = 1024
MAX_REASON_CHARS = 8 * 1024


def build_dead_letter(*, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                      reason: str, error_type: str, instance_id: str | None = None,
                      timestamp: datetime | None = None, letter_id: str | None = None) -> DeadLetter:
    """A ``DeadLetter`` for the record at ``topic[partition]@offset``, sized to always fit.

    ``letter_id`` defaults to the coordinates, so a batch that is processed twice (an aborted
    transaction retried) writes a dead letter with the same id, and readers can drop the copy.
    """
    original = bytes(value) if value is not None else b""
    keep_key = bytes(key[:MAX_KEY_BYTES]) if key is not None else None
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 20] + " ...[truncated]"
    if instance_id is not None and len(instance_id) > MAX_KEY_BYTES:
        instance_id = instance_id[:MAX_KEY_BYTES]
    return DeadLetter(
        id=letter_id or f"{topic}/{partition}/{offset}",
        topic=topic, partition=partition, offset=offset,
        original=original[:MAX_ORIGINAL_BYTES],
        reason=reason, error_type=error_type,
        failed_at=datetime.now(timezone.utc),
        key=keep_key, instance_id=instance_id,
        original_size=len(value) if value is not None else None,
        original_sha256=hashlib.sha256(original).hexdigest() if value is not None else None,
        original_truncated=len(original) > MAX_ORIGINAL_BYTES,
        key_truncated=key is not None and len(key) > MAX_KEY_BYTES,
        timestamp=timestamp,
    )


def dead_letter_for(message: Any, reason: str, error_type: str, instance_id: str | None = None) -> DeadLetter:
    """:func:`build_dead_letter` for a consumed ``confluent_kafka.Message``."""
    ts_type, ts = message.timestamp()
    timestamp = datetime.fromtimestamp(ts / 1000, timezone.utc) if ts_type and ts and ts > 0 else None
    return build_dead_letter(topic=message.topic(), partition=message.partition(), offset=message.offset(),
                             key=message.key(), value=message.value(), reason=reason, error_type=error_type,
                             instance_id=instance_id, timestamp=timestamp)


def misrouted_reason(message: Any, owner_id: str, partitions: int) -> str:
    """Why a valid record on the wrong partition is refused (see the processors' routing check)."""
    expected = partition_for(owner_id.encode("utf-8"), partitions)
    key = message.key()
    key = key[:80] if key is not None else None
    return (f"misrouted: the record for {owner_id!r} sits on partition {message.partition()}, but that id "
            f"belongs to partition {expected} of {partitions} (key {key!r}; ids are hashed with murmur2, as the "
            "Java client does): produce it keyed by the id, with a murmur2 partitioner")
