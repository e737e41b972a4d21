"""Answers to this client's requests, read from its own partition of ``<hub>.replies``.

Replies are keyed by client id, so one client reads one partition (the one murmur2 picks for
its id) and skips the replies of clients that share it. The reader is positioned at the
partition's end offset taken *before* the first request is produced: a reply written any time
after that is read even if the thread has not polled yet, and old replies are never replayed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from durable_kafka._client_kafka import Metadata, is_partition_eof
from durable_kafka.errors import BrokerError, ClientError, CodecError
from durable_kafka.streams.codec import Codec
from durable_kafka.streams.config import partition_for
from durable_kafka.streams.events import ClientReply

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.1


class _Slot:
    __slots__ = ("event", "reply", "on_done")

    def __init__(self, on_done: Callable[[], None] | None = None) -> None:
        self.event = threading.Event()
        self.reply: ClientReply | None = None
        self.on_done = on_done  # called from the reader thread once the slot is set

    def done(self) -> None:
        self.event.set()
        if self.on_done is not None:
            self.on_done()


class ReplyListener:
    """Routes ClientReply records to the callers waiting for them, by request id."""

    def __init__(
        self, bootstrap: str, topic: str, client_id: str, codec: Codec, metadata: Metadata
    ) -> None:
        self._bootstrap = bootstrap
        self._metadata = metadata
        self._topic = topic
        self._client_id = client_id
        self._key = client_id.encode("utf-8")
        self._codec = codec
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._failure: BaseException | None = None

    def start(self) -> None:
        """Position the reader at the current end of this client's partition and start it."""
        with self._lock:
            if self._thread is not None:
                return
            if self._stopping.is_set():
                raise ClientError("the client is closed")
            partition = partition_for(self._key, self._metadata.partition_count(self._topic))
            start = self._metadata.high_watermark(self._topic, partition)
            consumer = self._metadata.consumer("replies")
            consumer.assign([TopicPartition(self._topic, partition, start)])
            self._thread = threading.Thread(
                target=self._run, args=(consumer,), name=f"replies:{self._client_id}", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        with self._lock:
            thread, self._thread = self._thread, None
            slots = list(self._slots.values())
        for slot in slots:
            slot.done()
        if thread is not None:
            thread.join()

    def expect(self, request_id: str, on_done: Callable[[], None] | None = None) -> None:
        """Register interest in a reply; call before producing the request.

        ``on_done`` (the AsyncClient's hook) is called from the reader thread when the reply
        arrives or the reader stops; ``wait(request_id, 0)`` then returns or raises at once.
        """
        self.start()
        with self._lock:
            self._slots[request_id] = _Slot(on_done)

    def forget(self, request_id: str) -> None:
        with self._lock:
            self._slots.pop(request_id, None)

    def wait(self, request_id: str, timeout: float) -> ClientReply | None:
        """The reply to ``request_id``, or None if none came within ``timeout`` seconds."""
        with self._lock:
            slot = self._slots.get(request_id)
        if slot is None:
            raise ClientError(f"no reply was expected for request {request_id!r}")
        try:
            if not slot.event.wait(timeout):
                return None
            if slot.reply is None:
                if self._failure is not None:
                    raise BrokerError(f"the reply reader failed: {self._failure!r}") from self._failure
                raise ClientError(f"the client was closed while waiting for request {request_id!r}")
            return slot.reply
        finally:
            self.forget(request_id)

    def _run(self, consumer: Consumer) -> None:
        try:
            while not self._stopping.is_set():
                message = consumer.poll(_POLL_SECONDS)
                if message is None or is_partition_eof(message.error()):
                    continue
                if message.error() is not None:
                    log.warning("replies topic %s: %s", self._topic, message.error())
                    continue
                value = message.value()
                if message.key() != self._key or value is None:
                    continue  # another client's reply on the same partition
                try:
                    reply = self._codec.decode(value, expected=ClientReply)
                except CodecError as error:
                    log.warning("skipping undecodable reply at offset %d: %s", message.offset(), error)
                    continue
                with self._lock:
                    slot = self._slots.get(reply.request_id)
                if slot is not None:
                    slot.reply = reply
                    slot.done()
        except BaseException as error:  # waiters must learn that no reply will come
            log.exception("reply reader for client %s stopped", self._client_id)
            self._failure = error
            with self._lock:
                slots = list(self._slots.values())
            for slot in slots:
                slot.done()
        finally:
            consumer.close()
