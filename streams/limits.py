"""How large a record the engine may write, and the check every writer makes before writing.

Why a limit of our own: Kafka refuses a record larger than the producer's ``message.max.bytes``
(librdkafka's default: 1,000,000 bytes) and the topic's ``max.message.bytes`` (1 MiB by
default). A refused record inside a transaction aborts the whole batch, and a batch that is
retried unchanged is refused again, forever. So every record is sized *before* it is handed to
the producer: what cannot be carried is turned into a clear failure of the one instance (or
operation) it belongs to, never into a stalled partition.

The limit leaves headroom under ``message.max.bytes`` for what librdkafka adds to the key and
value (record framing, headers).
"""

from __future__ import annotations

from durable_kafka.errors import PayloadTooLargeError

__all__ = ["PRODUCER_MESSAGE_MAX_BYTES", "MAX_RECORD_BYTES", "MAX_PAYLOAD_BYTES", "record_size", "check_record_size",
           "check_payload_size"]

#: ``message.max.bytes`` every producer of the engine is configured with (librdkafka's default).
PRODUCER_MESSAGE_MAX_BYTES = 1_000_000
#: The most bytes of key + value one record written by the engine may hold.
MAX_RECORD_BYTES = PRODUCER_MESSAGE_MAX_BYTES - 16 * 1024


def record_size(key: bytes | None, value: bytes | None) -> int:
    """Bytes of key and value: what Kafka counts against its record size limits."""
    return (len(key) if key is not None else 0) + (len(value) if value is not None else 0)


def check_record_size(topic: str, key: bytes | None, value: bytes | None, what: str = "record",
                      limit: int = MAX_RECORD_BYTES) -> None:
    """Raise :class:`PayloadTooLargeError` naming ``what`` if the record would exceed ``limit``."""
    size = record_size(key, value)
    if size > limit:
        raise PayloadTooLargeError(what, size, limit, topic=topic)


#: The most bytes of one user payload (JSON text of an input, output, event, custom status or
#: entity state). A payload travels inside records that also carry ids, names and timestamps,
#: and the status snapshot carries input and output together: what exceeds this can never fit.
MAX_PAYLOAD_BYTES = MAX_RECORD_BYTES - 64 * 1024


def check_payload_size(what: str, payload: str | None, limit: int = MAX_PAYLOAD_BYTES) -> None:
    """Raise :class:`PayloadTooLargeError` if the JSON text ``payload`` can never fit a record."""
    if payload is None:
        return
    # UTF-8 is at most 4 bytes a character: only long strings need the exact (encoding) count
    if len(payload) * 4 > limit:
        size = len(payload.encode("utf-8"))
        if size > limit:
            raise PayloadTooLargeError(what, size, limit)
