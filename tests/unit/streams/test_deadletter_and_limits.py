"""Dead letters always fit a record, sizes are checked before anything is written."""

from __future__ import annotations

import hashlib
import os

import pytest

from durable_kafka.errors import CorruptRecordError, PayloadTooLargeError
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.deadletter import MAX_KEY_BYTES, MAX_ORIGINAL_BYTES, build_dead_letter
from durable_kafka.streams.events import DeadLetter
from durable_kafka.streams.limits import (
    MAX_PAYLOAD_BYTES,
    MAX_RECORD_BYTES,
    PRODUCER_MESSAGE_MAX_BYTES,
    check_payload_size,
    check_record_size,
)


@pytest.mark.parametrize("value", [None, "text", 42, ["c3", "01"]])
def test_decode_of_anything_but_bytes_is_a_corrupt_record(value) -> None:
    with pytest.raises(CorruptRecordError, match="expected the bytes of a record"):
        Codec.default().decode(value)


def test_a_dead_letter_of_an_oversized_record_fits_and_identifies_it() -> None:
    codec = Codec.default()
    value = b"\xc3\x01" + os.urandom(1_040_000)
    key = b"k" * 5000
    letter = build_dead_letter(topic="h.orchestrator-events", partition=3, offset=77, key=key, value=value,
                               reason="r" * 100_000, error_type="CorruptRecordError", instance_id="i" * 5000)
    data = codec.encode(letter)
    assert len(data) + len(letter.key) < MAX_RECORD_BYTES
    back = codec.decode(data, expected=DeadLetter)
    assert back.original == value[:MAX_ORIGINAL_BYTES] and back.original_truncated
    assert back.original_size == len(value) and back.original_sha256 == hashlib.sha256(value).hexdigest()
    assert back.key == key[:MAX_KEY_BYTES] and back.key_truncated
    assert (back.topic, back.partition, back.offset) == ("h.orchestrator-events", 3, 77)
    assert back.id == "h.orchestrator-events/3/77"  # the same record dead-lettered twice has one id
    assert len(back.reason) < 10_000 and back.reason.endswith("[truncated]")


def test_a_dead_letter_of_a_null_value_says_so() -> None:
    letter = build_dead_letter(topic="t", partition=0, offset=1, key=None, value=None, reason="null",
                               error_type="CorruptRecordError")
    assert letter.original == b"" and letter.original_size is None and letter.original_sha256 is None
    assert not letter.original_truncated and letter.key is None and not letter.key_truncated


def test_record_and_payload_limits_name_what_is_too_large() -> None:
    assert MAX_PAYLOAD_BYTES < MAX_RECORD_BYTES < PRODUCER_MESSAGE_MAX_BYTES
    check_record_size("t", b"k", b"v" * (MAX_RECORD_BYTES - 1))
    with pytest.raises(PayloadTooLargeError) as info:
        check_record_size("topic-x", b"k", b"v" * MAX_RECORD_BYTES, "the status of i-1")
    err = info.value
    assert err.size == MAX_RECORD_BYTES + 1 and err.limit == MAX_RECORD_BYTES and err.topic == "topic-x"
    assert "the status of i-1" in str(err) and f"{MAX_RECORD_BYTES:,}" in str(err)
    check_payload_size("input", None)
    check_payload_size("input", "x" * MAX_PAYLOAD_BYTES)
    with pytest.raises(PayloadTooLargeError, match="input"):
        check_payload_size("input", "x" * (MAX_PAYLOAD_BYTES + 1))
    # multi-byte characters are counted in bytes, as Kafka counts them
    with pytest.raises(PayloadTooLargeError):
        check_payload_size("input", "\u00e9" * (MAX_PAYLOAD_BYTES // 2 + 1))
