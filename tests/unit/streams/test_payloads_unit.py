"""The large-payload model without a broker: options, codec, filesystem store, executor edges."""

from __future__ import annotations

import json
import pytest

from durable_kafka import FileSystemPayloadStore, LargePayloadStorageOptions, PayloadStore
from durable_kafka.errors import ConfigurationError, PayloadTooLargeError, PayloadUnavailableError
from durable_kafka.streams import events as ev
from durable_kafka.streams.payload_topic import KafkaPayloadStore, _parse
from durable_kafka.streams.payloads import PayloadCodec, bind, externalize, looks_like_reference, resolve


class FakePayloadStore(PayloadStore):
    """A user's own store, as durabletask's tests write one: only the abstract methods."""

    def __init__(self, threshold_bytes: int = 100) -> None:
        self._options = LargePayloadStorageOptions(threshold_bytes=threshold_bytes, enable_compression=False)
        self.blobs: dict[str, bytes] = {}

    @property
    def options(self) -> LargePayloadStorageOptions:
        return self._options

    def upload(self, data: bytes, *, instance_id: str | None = None) -> str:
        token = f"blob:v1:test:{len(self.blobs)}"
        self.blobs[token] = data
        return token

    async def upload_async(self, data: bytes, *, instance_id: str | None = None) -> str:
        return self.upload(data, instance_id=instance_id)

    def download(self, token: str) -> bytes:
        return self.blobs[token]

    async def download_async(self, token: str) -> bytes:
        return self.download(token)

    def is_known_token(self, value: str) -> bool:
        return value.startswith("blob:v1:test:")


def test_options_keep_durabletasks_field_names_and_check_them() -> None:
    o = LargePayloadStorageOptions(1000)
    assert (o.threshold_bytes, o.enable_compression) == (1000, True)
    assert o.max_stored_payload_bytes >= 50 * 1024 * 1024  # a 50 MB input works with the defaults
    with pytest.raises(ConfigurationError):
        LargePayloadStorageOptions(threshold_bytes=0)


def test_references_never_look_like_json() -> None:
    for text in ('"kafka:v1:x"', "123", "{}", "[1]", "null", '"a"', "true"):
        assert not looks_like_reference(text)
    assert looks_like_reference("kafka:v1:0:1:2") and looks_like_reference("blob:v1:c:b")


def test_codec_stores_only_above_the_threshold_and_resolves_back() -> None:
    store = FakePayloadStore(threshold_bytes=100)
    codec = PayloadCodec(store)
    small, large = json.dumps("x" * 10), json.dumps("y" * 500)
    assert codec.externalize(small, "i") == small
    token = codec.externalize(large, "i")
    assert store.is_known_token(token) and store.blobs[token] == large.encode()
    assert codec.resolve(token, "i") == large and codec.resolve(small, "i") == small
    # the same text again for the same owner outside a transaction: stored once
    assert codec.externalize(large, "i") == token and len(store.blobs) == 1


class _Sink:
    def produce_flushed(self, topic: str, partition: int, records: list) -> list[int]:
        return list(range(len(records)))


def test_payloads_stored_inside_a_transaction_are_never_reused() -> None:
    # a payload stored in a transaction that aborts dies with it: a later identical text (an
    # activity echoing its input, outside any transaction) must not get its reference
    store = FakePayloadStore(threshold_bytes=100)
    codec = PayloadCodec(store)
    large = json.dumps("e" * 500)
    with bind(codec, "i", _Sink()):
        in_txn = codec.externalize(large, "i")
    outside = codec.externalize(large, "i")
    assert outside != in_txn and len(store.blobs) == 2


def test_codec_refuses_above_the_cap_and_unknown_references() -> None:
    codec = PayloadCodec(FileSystemPayloadStore.__new__(FileSystemPayloadStore))  # never touched below
    codec.store._options = LargePayloadStorageOptions(threshold_bytes=10, max_stored_payload_bytes=100)  # type: ignore[union-attr]
    with pytest.raises(PayloadTooLargeError):
        codec.externalize(json.dumps("z" * 200), "i")
    with pytest.raises(PayloadUnavailableError, match="'inst-9'.*does not know"):
        PayloadCodec(FakePayloadStore()).resolve("file:v1:abc", "inst-9")
    with pytest.raises(PayloadUnavailableError, match="does not know"):
        PayloadCodec(None).resolve("kafka:v1:0:0:1:1:raw:" + "0" * 64 + ":" + "0" * 32 + ":x", "inst-9")


def test_switched_off_leaves_text_as_it_is() -> None:
    codec = PayloadCodec(None)
    big = json.dumps("q" * 2_000_000)
    assert codec.externalize(big, "i") is big
    with bind(codec, "i"):
        assert externalize(big) is big and resolve(big) is big
    assert externalize(big) is big  # nothing bound (executor unit tests): plain JSON


def test_filesystem_store_round_trip_corruption_and_delete(tmp_path) -> None:
    store = FileSystemPayloadStore(tmp_path, LargePayloadStorageOptions(threshold_bytes=10))
    token = store.upload(b"hello world" * 100, instance_id="a/b:c")
    assert store.is_known_token(token) and store.owner_of(token) == "a/b:c"
    assert store.download(token) == b"hello world" * 100
    [path] = [p for p in tmp_path.rglob("*") if p.is_file()]
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.raises(PayloadUnavailableError, match="'a/b:c'"):
        store.download(token)
    store.delete(token)
    with pytest.raises(PayloadUnavailableError, match="does not exist"):
        store.download(token)
    assert not store.is_known_token("file:v1:00:raw:../../etc/passwd")


def test_purge_discards_only_what_the_instance_owns(tmp_path) -> None:
    store = FileSystemPayloadStore(tmp_path, LargePayloadStorageOptions(threshold_bytes=10))
    codec = PayloadCodec(store)
    mine, child = codec.externalize(json.dumps("m" * 100), "me"), codec.externalize(json.dumps("c" * 100), "child")
    history = [ev.ExecutionStarted(-1, None, name="o", execution_id="e", input=mine),  # type: ignore[arg-type]
               ev.TaskScheduled(1, None, name="a", input=child)]  # type: ignore[arg-type]
    with bind(codec, "me"):
        from durable_kafka.streams.payloads import discard_owned

        assert discard_owned("me", history) == 1
    assert store.download(child)
    assert [p.parent.name for p in tmp_path.rglob("*") if p.is_file()] == ["child"]


def test_kafka_tokens_parse_and_carry_owner() -> None:
    store = KafkaPayloadStore("127.0.0.1:1", "h")
    token = "kafka:v1:3:42:2:1000:raw:" + "a" * 64 + ":" + "b" * 32 + ":inst:with:colons"
    assert store.is_known_token(token) and store.owner_of(token) == "inst:with:colons"
    assert _parse(token)[:4] == (3, 42, 2, 1000)
    assert not store.is_known_token("kafka:v1:nope") and not store.is_known_token('"kafka:v1:3"')


def test_activity_inputs_are_stored_outside_the_transaction() -> None:
    # an early-dispatched activity request must not point at chunks of a transaction that may abort
    from durable_kafka.streams.payloads import current_sink

    seen: list[object] = []

    class Watching(FakePayloadStore):
        def upload(self, data: bytes, *, instance_id: str | None = None) -> str:
            seen.append(current_sink())
            return super().upload(data, instance_id=instance_id)

    codec = PayloadCodec(Watching(threshold_bytes=100))
    sink = _Sink()
    with bind(codec, "i", sink):
        externalize(json.dumps("a" * 500))
        externalize(json.dumps("b" * 500), transactional=False)
        assert current_sink() is sink  # restored afterwards
    assert seen == [sink, None]
