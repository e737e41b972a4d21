"""Payloads larger than a Kafka record: stored outside the event, a small reference in its place.

The model and its names are durabletask's (``durabletask.payload``): a :class:`PayloadStore`
uploads bytes and returns a token, downloads a token's bytes back and recognises its own
tokens; :class:`LargePayloadStorageOptions` says above which size a payload leaves its event.

Where references are made and resolved (docs/PAYLOADS.md): only at the edges where JSON text
becomes a user value or a user value becomes JSON text — the client's inputs and the states it
reads, the orchestrator context's ``dumps``/``loads``, an activity's input and result, an
entity's operation input, result and state. Everything in between (history, status snapshots,
changelogs, the audit) carries the small token, so no record of the engine grows with the
payload. The edges inside a worker find the store through :func:`bind`, a context variable the
processors set around each instance (with the open transaction, so the Kafka-native store can
write its chunks inside it).

Ownership: every stored payload belongs to one instance (or entity) id, carried in its token,
so that purging an instance deletes exactly the payloads it owns. A payload sent to another
instance (a sub-orchestration's input, an event, an entity operation's input) is owned by its
receiver, which is the one that keeps it in its history.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import gzip
import hashlib
import os
import threading
import urllib.parse
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from durable_kafka.errors import ConfigurationError, PayloadTooLargeError, PayloadUnavailableError

__all__ = ["LargePayloadStorageOptions", "PayloadStore", "FileSystemPayloadStore", "PayloadCodec",
           "TransactionSink", "bind", "externalize", "resolve", "discard_owned", "looks_like_reference"]


@dataclass
class LargePayloadStorageOptions:
    """When a payload leaves its event, and how it is kept (durabletask's fields).

    ``threshold_bytes``: JSON texts longer than this (UTF-8 bytes) are stored in the payload
    store and a reference travels instead. The default is lower than durabletask's 900,000
    because one status snapshot of ours carries input, output and custom status together and
    must stay under Kafka's 1 MB record limit. ``max_stored_payload_bytes``: larger payloads are
    refused with :class:`~durable_kafka.errors.PayloadTooLargeError` (default 256 MiB; durabletask:
    10 MiB, but with no configuration at all a 50 MB input must just work here).
    ``enable_compression``: gzip the payload before storing it.
    """

    threshold_bytes: int = 256 * 1024
    max_stored_payload_bytes: int = 256 * 1024 * 1024
    enable_compression: bool = True

    def __post_init__(self) -> None:
        for name in ("threshold_bytes", "max_stored_payload_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"LargePayloadStorageOptions.{name} must be a positive int, got {value!r}")


class PayloadStore(abc.ABC):
    """Where payloads above the threshold live (the abstract class of durabletask).

    Subclasses implement ``options``, ``upload``/``upload_async``, ``download``/``download_async``
    and ``is_known_token``. Two optional hooks make purge clean up: :meth:`owner_of` (the
    instance id a token was uploaded for) and :meth:`delete`; without them a purge leaves the
    stored payloads in place.
    """

    @property
    @abc.abstractmethod
    def options(self) -> LargePayloadStorageOptions:
        """The threshold, size cap and compression this store applies."""

    @abc.abstractmethod
    def upload(self, data: bytes, *, instance_id: str | None = None) -> str:
        """Store ``data`` (for ``instance_id``) and return a token :meth:`is_known_token` accepts."""

    @abc.abstractmethod
    async def upload_async(self, data: bytes, *, instance_id: str | None = None) -> str:
        """Async :meth:`upload`."""

    @abc.abstractmethod
    def download(self, token: str) -> bytes:
        """The bytes a previous :meth:`upload` stored under ``token``."""

    @abc.abstractmethod
    async def download_async(self, token: str) -> bytes:
        """Async :meth:`download`."""

    @abc.abstractmethod
    def is_known_token(self, value: str) -> bool:
        """Whether ``value`` is a token of this store (never true for JSON text)."""

    def owner_of(self, token: str) -> str | None:
        """The instance id ``token`` was uploaded for, if the token says (None: unknown)."""
        return None

    def delete(self, token: str) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Remove a stored payload (called when its owner is purged); default: keep it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or files the store holds."""


#: How a reference looks, whatever the store: ``<scheme>:v<digit>:...`` is never JSON text.
def looks_like_reference(text: str) -> bool:
    head = text[:16]
    colon = head.find(":")
    return 0 < colon < 10 and head[:colon].isalpha() and head[colon + 1: colon + 2] == "v" and \
        head[colon + 2: colon + 3].isdigit()


class TransactionSink(Protocol):
    """The open transaction of a processor, as the Kafka-native store writes into it."""

    def produce_flushed(self, topic: str, partition: int,
                        records: list[tuple[bytes, bytes | None]]) -> list[int]: ...


@dataclass
class _Scope:
    codec: PayloadCodec | None
    instance_id: str | None
    sink: TransactionSink | None


_SCOPE: ContextVar[_Scope | None] = ContextVar("durable_kafka_payload_scope", default=None)


@contextlib.contextmanager
def bind(codec: PayloadCodec | None, instance_id: str | None, sink: TransactionSink | None = None) -> Iterator[None]:
    """Within this block, :func:`externalize`/:func:`resolve` use ``codec`` for ``instance_id``."""
    token = _SCOPE.set(_Scope(codec, instance_id, sink))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def current_sink() -> TransactionSink | None:
    """The transaction bound by the processor running this code, if any."""
    scope = _SCOPE.get()
    return scope.sink if scope is not None else None


def externalize(text: str | None, owner: str | None = None, *, transactional: bool = True) -> str | None:
    """``text``, or a reference to it if it is above the bound store's threshold.

    ``transactional=False`` stores the payload outside the bound transaction (acknowledged at
    once): for records that leave before the transaction commits (early-dispatched activity
    requests), whose reference must stay valid even if the transaction aborts.
    """
    scope = _SCOPE.get()
    if text is None or scope is None or scope.codec is None:
        return text
    if transactional or scope.sink is None:
        return scope.codec.externalize(text, owner or scope.instance_id)
    reset = _SCOPE.set(_Scope(scope.codec, scope.instance_id, None))
    try:
        return scope.codec.externalize(text, owner or scope.instance_id)
    finally:
        _SCOPE.reset(reset)


def resolve(text: str | None) -> str | None:
    """The JSON text a reference stands for (other text unchanged)."""
    scope = _SCOPE.get()
    if text is None or scope is None or scope.codec is None:
        return text
    return scope.codec.resolve(text, scope.instance_id)


def discard_owned(owner: str, objects: Iterable[Any]) -> int:
    """Delete the stored payloads owned by ``owner`` that ``objects`` (records, strings) refer to."""
    scope = _SCOPE.get()
    if scope is None or scope.codec is None:
        return 0
    return scope.codec.discard_owned(owner, objects)


class PayloadCodec:
    """A store plus the policy around it: threshold, size cap, caches, typed errors.

    ``store`` None means large payloads are switched off: texts are left as they are and the
    record size checks (``streams/limits.py``) refuse what cannot fit with
    :class:`PayloadTooLargeError`.
    """

    def __init__(self, store: PayloadStore | None, *, cache_bytes: int = 128 * 1024 * 1024,
                 owns_store: bool = False, read_only: bool = False) -> None:
        self.store = store
        self._owns_store = owns_store
        #: resolve references but never store (the audit replays code that returns large values)
        self.read_only = read_only
        self._cache_bytes = cache_bytes
        self._resolved: OrderedDict[str, str] = OrderedDict()  # token -> text (downloads)
        self._cached = 0
        self._uploaded: OrderedDict[tuple[str | None, bytes], str] = OrderedDict()  # (owner, sha) -> token
        self._lock = threading.Lock()
        self.uploads = 0
        self.downloads = 0

    def close(self) -> None:
        """Close the store if this codec made it (a store the user passed is theirs to close)."""
        if self._owns_store and self.store is not None:
            self.store.close()

    def externalize(self, text: str, owner: str | None) -> str:
        store = self.store
        if store is None or self.read_only:
            return text
        options = store.options
        # cheap test first: a UTF-8 character is at most 4 bytes
        if len(text) <= options.threshold_bytes // 4:
            return text
        data = text.encode("utf-8")
        if len(data) <= options.threshold_bytes:
            return text
        if len(data) > options.max_stored_payload_bytes:
            raise PayloadTooLargeError(f"a payload of {owner or 'a client'}", len(data), options.max_stored_payload_bytes,
                                       topic="(the payload store's max_stored_payload_bytes)")
        # the same text again for the same owner reuses the reference instead of storing the
        # payload twice, but only for payloads stored outside a transaction: one stored inside a
        # processor's transaction may be aborted with it, and its reference must then die too
        in_transaction = current_sink() is not None
        key = (owner, hashlib.sha256(data).digest())
        if not in_transaction:
            with self._lock:
                known = self._uploaded.get(key)
            if known is not None:
                return known
        token = store.upload(data, instance_id=owner)
        self.uploads += 1
        with self._lock:
            if not in_transaction:
                self._uploaded[key] = token
                while len(self._uploaded) > 1024:
                    self._uploaded.popitem(last=False)
            self._remember(token, text)
        return token

    def resolve(self, text: str, instance_id: str | None) -> str:
        store = self.store
        if len(text) > 4096 or not looks_like_reference(text):
            return text
        if store is None or not store.is_known_token(text):
            raise PayloadUnavailableError(instance_id, text, "a large-payload reference that this worker's or "
                                          "client's payload store does not know (configure the same payload_store "
                                          "on every worker and client of the hub)")
        with self._lock:
            hit = self._resolved.get(text)
            if hit is not None:
                self._resolved.move_to_end(text)
                return hit
        try:
            data = store.download(text)
        except PayloadUnavailableError as exc:
            if instance_id is not None and exc.instance_id != instance_id:  # name the one that needed it
                raise PayloadUnavailableError(instance_id, text, exc.reason) from None
            raise
        except (OSError, KeyError, ValueError) as exc:
            raise PayloadUnavailableError(instance_id, text, f"{type(exc).__name__}: {exc}") from exc
        self.downloads += 1
        try:
            out = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadUnavailableError(instance_id, text, "the stored bytes are not UTF-8 text") from exc
        with self._lock:
            self._remember(text, out)
        return out

    def _remember(self, token: str, text: str) -> None:
        size = len(text)
        if size > self._cache_bytes:
            return
        self._resolved[token] = text
        self._cached += size
        while self._cached > self._cache_bytes and self._resolved:
            _, old = self._resolved.popitem(last=False)
            self._cached -= len(old)

    def discard_owned(self, owner: str, objects: Iterable[Any]) -> int:
        """Delete every payload owned by ``owner`` among the references in ``objects``."""
        store = self.store
        if store is None:
            return 0
        done: set[str] = set()
        for text in _strings(objects):
            if text in done or not looks_like_reference(text) or not store.is_known_token(text):
                continue
            if store.owner_of(text) != owner:
                continue
            done.add(text)
            store.delete(text)
            with self._lock:
                old = self._resolved.pop(text, None)
                if old is not None:
                    self._cached -= len(old)
        with self._lock:
            for key in [k for k, v in self._uploaded.items() if v in done]:
                del self._uploaded[key]
        return len(done)


def resolve_fields(records: list[Any], codec: PayloadCodec | None, instance_id: str) -> list[Any]:
    """``records`` (dataclasses, e.g. history events) with every reference field resolved."""
    if codec is None or codec.store is None:
        return records
    out = []
    for rec in records:
        changes = {f.name: codec.resolve(v, instance_id) for f in dataclasses.fields(rec)
                   if isinstance(v := getattr(rec, f.name), str) and looks_like_reference(v)}
        out.append(dataclasses.replace(rec, **changes) if changes else rec)
    return out


def _strings(objects: Iterable[Any]) -> Iterator[str]:
    """Every short string field inside records, lists and dicts (references are short)."""
    stack = list(objects)
    while stack:
        obj = stack.pop()
        if isinstance(obj, str):
            if len(obj) <= 4096:
                yield obj
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            stack.extend(getattr(obj, f.name) for f in dataclasses.fields(obj))
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())


# --------------------------------------------------------------------------- filesystem store

_FILE_PREFIX = "file:v1:"


class FileSystemPayloadStore(PayloadStore):
    """Payloads as files under one directory (a shared volume, or a test's tmp dir).

    Layout: ``<directory>/<quoted owner id>/<uuid>``. Token: ``file:v1:<sha256>:<enc>:<relative
    path>``; the digest makes a damaged file a :class:`PayloadUnavailableError`, not wrong data.
    A file is written to a temporary name and renamed, so a reader never sees half of one, and
    a crash before the referencing event commits leaves only an unreferenced file.
    """

    def __init__(self, directory: str | os.PathLike[str], options: LargePayloadStorageOptions | None = None) -> None:
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._options = options or LargePayloadStorageOptions()

    @property
    def options(self) -> LargePayloadStorageOptions:
        return self._options

    def upload(self, data: bytes, *, instance_id: str | None = None) -> str:
        digest = hashlib.sha256(data).hexdigest()
        enc = "gz" if self._options.enable_compression else "raw"
        body = gzip.compress(data, compresslevel=1) if enc == "gz" else data
        owner = urllib.parse.quote(instance_id or "_", safe="")
        rel = f"{owner}/{uuid.uuid4().hex}"
        path = self.directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return f"{_FILE_PREFIX}{digest}:{enc}:{rel}"

    async def upload_async(self, data: bytes, *, instance_id: str | None = None) -> str:
        return self.upload(data, instance_id=instance_id)

    def _parse(self, token: str) -> tuple[str, str, Path]:
        if not token.startswith(_FILE_PREFIX):
            raise ValueError(f"not a filesystem payload token: {token[:80]!r}")
        digest, enc, rel = token[len(_FILE_PREFIX):].split(":", 2)
        path = (self.directory / rel).resolve()
        if self.directory not in path.parents:
            raise ValueError(f"payload token points outside {self.directory}: {token[:80]!r}")
        return digest, enc, path

    def download(self, token: str) -> bytes:
        digest, enc, path = self._parse(token)
        owner = self.owner_of(token)
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            raise PayloadUnavailableError(owner, token, f"the file {path} does not exist") from None
        try:
            data = gzip.decompress(body) if enc == "gz" else body
        except (OSError, EOFError) as exc:
            raise PayloadUnavailableError(owner, token, f"the file {path} is corrupt ({exc})") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise PayloadUnavailableError(owner, token, f"the file {path} does not match its SHA-256")
        return data

    async def download_async(self, token: str) -> bytes:
        return self.download(token)

    def is_known_token(self, value: str) -> bool:
        if not value.startswith(_FILE_PREFIX) or value.count(":") < 4:
            return False
        try:
            self._parse(value)
        except ValueError:
            return False
        return True

    def owner_of(self, token: str) -> str | None:
        rel = token[len(_FILE_PREFIX):].split(":", 2)[-1]
        owner = urllib.parse.unquote(rel.split("/", 1)[0])
        return None if owner == "_" else owner

    def delete(self, token: str) -> None:
        _, _, path = self._parse(token)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
