"""Bad bytes always give a typed CodecError, never another exception and never a garbage object."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from durable_kafka.errors import CodecError, CorruptRecordError, UnknownSchemaError
from durable_kafka.streams import events as ev
from durable_kafka.streams.codec import HEADER_LENGTH, MARKER, Codec

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)

SAMPLES = [
    ev.HistoryRecord("i/e/3", "i", "e", 3, ev.TaskFailed(-1, T0, 2, ev.FailureDetails("boom", "ValueError", "tb"))),
    ev.HistoryRecord("i/e/0", "i", "e", 0, ev.ExecutionStarted(-1, T0, "flow", "e", '{"a": 1}', tags={"k": "v"})),
    ev.OrchestratorMessage("m-1", "i", T0, ev.ActivityResult("e", 4, '"ok"'), "client-1"),
    ev.EntityMessage("m-2", "@c@a", T0, ev.LockEntities("cs", ["@c@a", "@c@b"], 0, "i", "e")),
    ev.InstanceStatus("i", "flow", "e", "RUNNING", T0, T0, tags={"k": "v"}, history_length=7),
    ev.DeadLetter("d", "t", 0, 5, b"\x00\x01", "why", "CorruptRecordError", T0, b"k", "i"),
    ev.ClientReply("r", "i", True),
    ev.TimerRecord("i", "e", 2, T0),
]


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.default()


def _outcome(codec: Codec, data: bytes, expected: type | None = None) -> object:
    """Decode, returning the CodecError raised; any other exception fails the test."""
    try:
        return codec.decode(data, expected)
    except CodecError as exc:
        return exc


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_every_strict_prefix_is_corrupt(codec: Codec, record: object) -> None:
    data = codec.encode(record)
    for n in range(len(data)):
        with pytest.raises(CorruptRecordError) as info:
            codec.decode(data[:n])
        if n < HEADER_LENGTH:
            assert "shorter than the 10-byte" in str(info.value)
        elif n > HEADER_LENGTH:
            assert "truncated body" in str(info.value)


def test_wrong_marker(codec: Codec) -> None:
    data = codec.encode(SAMPLES[0])
    for marker in (b"\x00\x00", b"\xc3\x00", b"\x01\xc3", b"{\""):
        with pytest.raises(CorruptRecordError, match="wrong marker"):
            codec.decode(marker + data[2:])


def test_unknown_fingerprint_names_it_in_hex(codec: Codec) -> None:
    data = codec.encode(SAMPLES[0])
    fp = 0x0123456789ABCDEF
    with pytest.raises(UnknownSchemaError, match="0x0123456789abcdef"):
        codec.decode(MARKER + fp.to_bytes(8, "little") + data[HEADER_LENGTH:])


def test_trailing_bytes_are_corrupt(codec: Codec) -> None:
    data = codec.encode(SAMPLES[2])
    with pytest.raises(CorruptRecordError, match="1 bytes left after the body"):
        codec.decode(data + b"\x00")


def test_unexpected_type(codec: Codec) -> None:
    data = codec.encode(SAMPLES[0])
    with pytest.raises(CorruptRecordError, match="is a HistoryRecord, expected OrchestratorMessage or EntityMessage"):
        codec.decode(data, (ev.OrchestratorMessage, ev.EntityMessage))
    assert codec.decode(data, ev.HistoryRecord) == SAMPLES[0]


def test_body_that_does_not_decode(codec: Codec) -> None:
    header = codec.encode(SAMPLES[6])[:HEADER_LENGTH]  # ClientReply: string, string, boolean, ...
    bad_utf8 = b"\x02\xff" + b"\x02i" + b"\x01" + b"\x00\x00"
    with pytest.raises(CorruptRecordError, match="body does not decode: UnicodeDecodeError"):
        codec.decode(header + bad_utf8)
    bad_union = b"\x02r" + b"\x02i" + b"\x01" + b"\x08" + b"\x00"  # union branch 4 of ["null","string"]
    with pytest.raises(CorruptRecordError, match="body does not decode"):
        codec.decode(header + bad_union)


def test_random_bytes_always_give_a_codec_error(codec: Codec) -> None:
    for seed in range(3000):
        rng = random.Random(seed)
        data = rng.randbytes(rng.randrange(0, 300))
        if seed % 3 == 0 and len(data) >= 2:
            data = MARKER + data[2:]  # get past the marker check
        assert isinstance(_outcome(codec, data), CodecError), seed


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_random_bodies_behind_a_valid_header(codec: Codec, record: object) -> None:
    """A body can be garbage that still parses; then it must be a whole record of the header's type."""
    header = codec.encode(record)[:HEADER_LENGTH]
    for seed in range(400):
        rng = random.Random(seed)
        result = _outcome(codec, header + rng.randbytes(rng.randrange(0, 120)), type(record))
        assert isinstance(result, (CodecError, type(record))), (seed, result)


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_flipped_bytes_in_a_valid_record(codec: Codec, record: object) -> None:
    data = codec.encode(record)
    for seed in range(300):
        rng = random.Random(seed)
        mutated = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            mutated[rng.randrange(HEADER_LENGTH, len(data))] = rng.randrange(256)
        result = _outcome(codec, bytes(mutated), type(record))
        assert isinstance(result, (CodecError, type(record))), (seed, result)


def test_codec_errors_chain_the_underlying_cause(codec: Codec) -> None:
    data = codec.encode(SAMPLES[1])
    with pytest.raises(CorruptRecordError) as info:
        codec.decode(data[:-3])
    assert info.value.__cause__ is not None
