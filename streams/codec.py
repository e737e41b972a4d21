"""The Avro codec: event dataclasses <-> single-object encoded Avro bytes.

Every Kafka value of a hub is one record of ``streams/events.py`` written in Avro's
single-object encoding::

    C3 01 | CRC-64-AVRO fingerprint of the writer schema (8 bytes, little-endian) | Avro binary body

The fingerprint names the writer schema, so a consumer can read bytes written by an older
version of the engine (or by another language) as long as that writer schema is known: the
body is resolved against the current (reader) schema of the same record name and fields added
since get their defaults (see docs/SCHEMAS.md for the evolution rules).

This is the engine's hot path, so the work is done once per type, not once per record:
schemas are parsed by fastavro at load time, every (writer, reader) pair is prepared when the
writer is registered, and each record type gets a generated pair of converter functions
(dataclass -> dict and dict -> dataclass) that know the exact shape of the schema; nothing
walks type hints or deep-copies per call. The official ``avro`` package stays the reference
implementation: the tests check our fingerprints and bodies against it, and it checks writer
schemas for compatibility when they are registered.

Decoding never raises anything but a :class:`~durable_kafka.errors.CodecError` subclass and
never returns a partial object: whatever fastavro raises on a bad body is wrapped.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import keyword
import logging
import threading
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from importlib import resources
from typing import Any

import fastavro
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from durable_kafka.errors import (
    CodecError,
    CorruptRecordError,
    IncompatibleSchemaError,
    RecordEncodeError,
    UnknownSchemaError,
)
from durable_kafka.streams import events
from durable_kafka.streams.avro_binary import BinarySource

__all__ = ["HEADER_LENGTH", "MARKER", "NAMESPACE", "Codec", "load_shipped_schemas", "schema_fingerprint"]

log = logging.getLogger(__name__)

MARKER = b"\xc3\x01"
"""The two bytes that open every single-object encoded Avro value (Avro spec)."""

HEADER_LENGTH = 10
"""Marker (2 bytes) plus the little-endian CRC-64-AVRO fingerprint (8 bytes)."""

NAMESPACE = "durable_kafka"
"""The Avro namespace of every record in ``schemas/``."""

_SCHEMA_PACKAGE = "durable_kafka.schemas"
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED_KINDS = ("record", "error", "enum", "fixed")  # a tuple: "type" may be an unhashable dict
_BUILTIN_KINDS = _PRIMITIVES | set(_NAMED_KINDS) | {"array", "map"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_ONE_MS = timedelta(milliseconds=1)

Schema = dict[str, Any]


def _to_millis(value: datetime) -> int:
    """A datetime as epoch milliseconds; a naive datetime is taken as UTC (never local time)."""
    if value.tzinfo is None:
        return (value - _EPOCH_NAIVE) // _ONE_MS
    return (value - _EPOCH) // _ONE_MS


def _full_name(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _defined_names(schema: Any, namespace: str | None = None, out: set[str] | None = None) -> set[str]:
    """Full names of the named types defined (not merely referenced) anywhere in ``schema``."""
    out = set() if out is None else out
    if isinstance(schema, list):
        for member in schema:
            _defined_names(member, namespace, out)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in _NAMED_KINDS:
            full = _full_name(schema["name"], schema.get("namespace", namespace))
            out.add(full)
            namespace = full.rpartition(".")[0] or None
        for f in schema.get("fields", ()):
            _defined_names(f["type"], namespace, out)
        for key in ("items", "values"):
            if key in schema:
                _defined_names(schema[key], namespace, out)
        if isinstance(kind, (dict, list)):
            _defined_names(kind, namespace, out)
    return out


def _expand(schema: Any, named: Mapping[str, Schema], local: set[str], seen: set[str],
            namespace: str | None = None) -> Any:
    """Inline, at first use, every named reference not defined inside ``schema`` itself.

    The result is a standalone schema (what a writer really used, and what the Parsing
    Canonical Form and so the fingerprint are computed from); later uses stay names.
    """
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return schema
        full = _full_name(schema, namespace)
        if full in local or full in seen:
            return full
        if full not in named:
            raise CodecError(f"schema references unknown named type {full!r}")
        seen.add(full)
        return _expand(named[full], named, local, seen, namespace)
    if isinstance(schema, list):
        return [_expand(m, named, local, seen, namespace) for m in schema]
    if not isinstance(schema, dict):
        raise CodecError(f"not an Avro schema: {schema!r}")
    out = dict(schema)
    kind = schema.get("type")
    if kind in _NAMED_KINDS:
        full = _full_name(schema["name"], schema.get("namespace", namespace))
        seen.add(full)
        namespace = full.rpartition(".")[0] or None
        out["name"], out["namespace"] = full.rpartition(".")[2], namespace
        if out["namespace"] is None:
            del out["namespace"]
    if "fields" in schema:
        out["fields"] = [{**f, "type": _expand(f["type"], named, local, seen, namespace)}
                         for f in schema["fields"]]
    for key in ("items", "values"):
        if key in schema:
            out[key] = _expand(schema[key], named, local, seen, namespace)
    if isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in _BUILTIN_KINDS):
        out["type"] = _expand(kind, named, local, seen, namespace)
    return out


def schema_fingerprint(standalone: Mapping[str, Any] | str) -> int:
    """CRC-64-AVRO of a standalone schema's Parsing Canonical Form (what Java's
    ``SchemaNormalization.parsingFingerprint64`` returns, as unsigned): the int whose 8
    little-endian bytes follow the marker of every single-object encoded value.
    """
    if isinstance(standalone, str):
        standalone = json.loads(standalone)
    hex_le = _fastavro_fingerprint(to_parsing_canonical_form(standalone), "CRC-64-AVRO")
    return int.from_bytes(bytes.fromhex(hex_le), "little")


# --------------------------------------------------------------------------- converters


class _ConverterSource:
    """Generates Python source for per-record converter functions from the reader schemas.

    Only the shipped (current) schemas are compiled, never a registered writer schema, so no
    outside input becomes code; generated straight-line code is what makes the converters
    cheap (no per-field loop, no type inspection per call).

    Encoders turn a dataclass into what fastavro's writer takes (dicts, epoch-millis ints,
    ``(full name, dict)`` tuples for union branches, so fastavro never has to guess a branch).
    Decoders turn fastavro's output (read with ``return_record_name=True`` and the override,
    so only unions of several records come back as ``(name, dict)``) into dataclasses.
    """

    def __init__(self, named: Mapping[str, Schema], classes: Mapping[str, type]) -> None:
        self.named, self.classes = named, classes
        self.env: dict[str, Any] = {"_ts": _to_millis}
        self.lines: list[str] = []
        self._unions = 0
        self.tables: dict[str, list[str]] = {}

    @staticmethod
    def fn(prefix: str, full: str) -> str:
        return f"{prefix}_{full.replace('.', '_')}"

    def build(self) -> dict[str, Any]:
        for full, schema in self.named.items():
            self.env[self.fn("C", full)] = self.classes[full]
            self._record(full, schema)
        self.env["_DEC_BY_NAME"] = {}
        for table in self.tables:
            self.env[table] = {}
        exec(compile("\n".join(self.lines), "<durable_kafka.codec converters>", "exec"), self.env)  # noqa: S102
        # Fill the dispatch tables in place now that the functions exist.
        for table, refs in self.tables.items():
            self.env[table].update({self.classes[r]: (r, self.env[self.fn("E", r)]) for r in refs})
        self.env["_DEC_BY_NAME"].update({full: self.env[self.fn("D", full)] for full in self.named})
        return self.env

    def _record(self, full: str, schema: Schema) -> None:
        enc_items, dec_args = [], []
        enums = _enum_fields(self.classes[full])
        for f in schema["fields"]:
            name = f["name"]
            if not name.isidentifier() or keyword.iskeyword(name):  # it becomes ``o.<name>`` below
                raise CodecError(f"field {full}.{name} is not a Python identifier")
            enc_items.append(f"{name!r}: {self._enc(f['type'], f'o.{name}', 0)}")
            dec = self._dec(f["type"], f"d[{name!r}]", 0)
            enum = enums.get(name)
            if enum is not None:  # a str enum travels as its value; the member comes back here
                if f["type"] != "string":
                    raise CodecError(f"field {full}.{name} holds {enum.__name__}: its Avro type must be string")
                self.env[f"_N_{enum.__name__}"] = enum
                dec = f"_N_{enum.__name__}({dec})"
            dec_args.append(dec)
        self.lines.append(f"def {self.fn('E', full)}(o):\n    return {{{', '.join(enc_items)}}}")
        self.lines.append(
            f"def {self.fn('D', full)}(d):\n    return {self.fn('C', full)}({', '.join(dec_args)})")

    def _record_ref(self, t: Any) -> str | None:
        if isinstance(t, str) and t not in _PRIMITIVES:
            if t not in self.named:
                raise CodecError(f"reference to unknown record {t!r}")
            return t
        if isinstance(t, dict) and t.get("type") in _NAMED_KINDS:
            raise CodecError("shipped schemas must reference records by full name, not inline them")
        return None

    def _enc(self, t: Any, x: str, depth: int) -> str:
        """An expression converting the value ``x`` of Avro type ``t`` for fastavro."""
        ref = self._record_ref(t)
        if ref is not None:
            return f"{self.fn('E', ref)}({x})"
        if isinstance(t, str):
            return x
        if isinstance(t, list):
            return self._enc_union(t, x)
        if t.get("logicalType") == "timestamp-millis":
            return f"_ts({x})"
        kind, var = t["type"], f"_v{depth}"
        if kind == "array":
            inner = self._enc(t["items"], var, depth + 1)
            return x if inner == var else f"[{inner} for {var} in {x}]"
        if kind == "map":
            inner = self._enc(t["values"], var, depth + 1)
            return x if inner == var else f"{{_k{depth}: {inner} for _k{depth}, {var} in {x}.items()}}"
        return self._enc(kind, x, depth)

    def _enc_union(self, members: list[Any], x: str) -> str:
        rest = [m for m in members if m != "null"]
        refs = [self._record_ref(m) for m in rest]
        if not any(refs):
            return x  # a nullable primitive: fastavro picks the branch cheaply
        if not all(refs):
            raise CodecError(f"unions mixing records and other types are not supported: {members}")
        if len(refs) == 1:
            ref = refs[0]
            return f"(None if {x} is None else ({ref!r}, {self.fn('E', ref)}({x})))"
        self._unions += 1
        table, helper = f"_EU{self._unions}", f"_eu{self._unions}"
        self.tables[table] = refs
        self.lines.append(
            f"def {helper}(v):\n    name, enc = {table}[type(v)]\n    return (name, enc(v))")
        expr = f"{helper}({x})"
        return f"(None if {x} is None else {expr})" if "null" in members else expr

    def _dec(self, t: Any, x: str, depth: int) -> str:
        """An expression converting fastavro's value ``x`` of Avro type ``t`` to Python."""
        ref = self._record_ref(t)
        if ref is not None:
            return f"{self.fn('D', ref)}({x})"
        if isinstance(t, str):
            return x
        if isinstance(t, list):
            rest = [m for m in t if m != "null"]
            refs = [self._record_ref(m) for m in rest]
            if not any(refs):
                return x
            if len(refs) == 1:
                return f"(None if {x} is None else {self.fn('D', refs[0])}({x}))"
            expr = f"_DEC_BY_NAME[{x}[0]]({x}[1])"
            return f"(None if {x} is None else {expr})" if "null" in t else expr
        if t.get("logicalType") == "timestamp-millis":
            return x  # fastavro returns aware UTC datetimes for timestamp-millis
        kind, var = t["type"], f"_v{depth}"
        if kind == "array":
            inner = self._dec(t["items"], var, depth + 1)
            return x if inner == var else f"[{inner} for {var} in {x}]"
        if kind == "map":
            inner = self._dec(t["values"], var, depth + 1)
            return x if inner == var else f"{{_k{depth}: {inner} for _k{depth}, {var} in {x}.items()}}"
        return self._dec(kind, x, depth)


def _enum_fields(cls: type) -> dict[str, type[Enum]]:
    """The fields of a record class declared as a str Enum (sent as strings, decoded to members)."""
    hints = typing.get_type_hints(cls, vars(events))
    return {name: hint for name, hint in hints.items()
            if isinstance(hint, type) and issubclass(hint, Enum) and issubclass(hint, str)}


# --------------------------------------------------------------------------- the codec


@dataclass(frozen=True, slots=True)
class _Current:
    """A record type as this version of the engine writes it."""

    name: str  # full Avro name
    cls: type
    standalone: Schema  # the schema with every referenced record inlined once
    parsed: Schema  # fastavro-parsed ``standalone``
    fingerprint: int
    header: bytes  # marker + fingerprint, the first 10 bytes of every value
    encode: Callable[[Any], Any]
    write: Callable[[Any, bytearray], None] | None  # generated binary writer (avro_binary), if any


@dataclass(frozen=True, slots=True)
class _Writer:
    """A writer schema the codec can read: a current one, or an older/foreign registered one."""

    name: str
    cls: type
    standalone: Schema
    parsed: Schema
    reader: Schema | None  # the current schema to resolve against; None when it is the writer
    decode: Callable[[Any], Any]
    read: Callable[[bytes, int], tuple[Any, int]] | None = None  # generated reader: current schemas only


def load_shipped_schemas() -> list[Schema]:
    """Every ``.avsc`` of the ``durable_kafka.schemas`` package, parsed as JSON, sorted by file name."""
    root = resources.files(_SCHEMA_PACKAGE)
    files = sorted((p for p in root.iterdir() if p.name.endswith(".avsc")), key=lambda p: p.name)
    return [json.loads(p.read_text(encoding="utf-8")) for p in files]


def load_previous_releases() -> list[list[Schema]]:
    """The changed ``.avsc`` files of each earlier release (``schemas/previous/<release>/``)."""
    root = resources.files(_SCHEMA_PACKAGE).joinpath("previous")
    if not root.is_dir():
        return []
    releases = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name)
    return [[json.loads(p.read_text(encoding="utf-8"))
             for p in sorted(d.iterdir(), key=lambda p: p.name) if p.name.endswith(".avsc")]
            for d in releases]


class Codec:
    """Encodes event dataclasses to single-object Avro and back, with schema evolution.

    Thread-safe: encode/decode only read prepared tables; registration takes a lock.
    """

    def __init__(self, schemas: Iterable[Mapping[str, Any]],
                 record_types: Iterable[type] = events.RECORD_TYPES, *, native: bool = True) -> None:
        """``native=False`` keeps every record on fastavro (the baseline of ``bench/codec.py``
        and the cross-check of the tests); by default the generated writers and readers of
        ``streams/avro_binary.py`` do the current schemas' work."""
        named: dict[str, Schema] = {}
        for schema in schemas:
            if not isinstance(schema, Mapping) or schema.get("type") != "record" or "name" not in schema:
                raise CodecError(f"every shipped schema must be one named record, got {schema!r:.80}")
            full = _full_name(schema["name"], schema.get("namespace"))
            if full in named:
                raise CodecError(f"two schemas named {full!r}")
            named[full] = dict(schema)
        classes = {f"{NAMESPACE}.{cls.__name__}": cls for cls in record_types}
        if missing := sorted(set(classes) - set(named)):
            raise CodecError(f"record types without a schema: {missing}")
        if orphans := sorted(set(named) - set(classes)):
            raise CodecError(f"schemas without a record type: {orphans}")
        self._named = named
        self._lock = threading.Lock()
        env = _ConverterSource(named, classes).build()
        writers: dict[str, Callable[[Any, bytearray], None]] = {}
        readers: dict[str, Callable[[bytes, int], tuple[Any, int]]] = {}
        if native:
            enums = {(full, name): enum for full, cls in classes.items()
                     for name, enum in _enum_fields(cls).items()}
            writers, readers = BinarySource(named, classes, enums).build()
        self._current: dict[type, _Current] = {}
        self._by_name: dict[str, _Current] = {}
        self._writers: dict[int, _Writer] = {}
        for full, schema in named.items():
            standalone = _expand(schema, named, _defined_names(schema), set())
            try:
                parsed = fastavro.parse_schema(standalone)
                fp = schema_fingerprint(standalone)
            except Exception as exc:  # fastavro raises several types for a bad schema
                raise CodecError(f"schema {full!r} is not valid Avro: {exc}") from exc
            if fp in self._writers:
                raise CodecError(f"schemas {full!r} and {self._writers[fp].name!r} share fingerprint {fp:#018x}")
            cur = _Current(full, classes[full], standalone, parsed, fp,
                           MARKER + fp.to_bytes(8, "little"), env[_ConverterSource.fn("E", full)],
                           writers.get(full))
            self._current[cur.cls] = cur
            self._by_name[full] = cur
            self._writers[fp] = _Writer(full, cur.cls, standalone, parsed, None, env[_ConverterSource.fn("D", full)],
                                        readers.get(full))
        self._decoders = {full: env[_ConverterSource.fn("D", full)] for full in named}

    @classmethod
    @functools.cache
    def default(cls) -> Codec:
        """The codec of the schemas shipped with this package (built once per process).

        It also reads every record as earlier releases wrote it (``schemas/previous``), so a
        rolling upgrade does not turn the older workers' and clients' records into dead letters.
        """
        codec = cls(load_shipped_schemas())
        for release in load_previous_releases():
            codec.register_release(release)
        return codec

    # ------------------------------------------------------------------ lookups

    def _lookup(self, cls_or_name: type | str) -> _Current:
        if isinstance(cls_or_name, str):
            cur = self._by_name.get(_full_name(cls_or_name, NAMESPACE))
        else:
            cur = self._current.get(cls_or_name)
        if cur is None:
            raise CodecError(f"{getattr(cls_or_name, '__name__', cls_or_name)!r} is not a record of this codec")
        return cur

    def fingerprint(self, cls_or_name: type | str) -> int:
        """The CRC-64-AVRO fingerprint of a record's current schema (bytes 2..9 of its values, little-endian)."""
        return self._lookup(cls_or_name).fingerprint

    def schema_of(self, cls_or_fingerprint: type | str | int) -> Schema:
        """A standalone schema (every referenced record inlined once), as a copy.

        Given a record type or name: its current schema. Given a fingerprint: the writer schema
        known under it (current or registered), which says how a dead-lettered value was written.
        """
        if isinstance(cls_or_fingerprint, int):
            writer = self._writers.get(cls_or_fingerprint)
            if writer is None:
                raise UnknownSchemaError(f"unknown writer schema fingerprint {cls_or_fingerprint:#018x}")
            return copy.deepcopy(writer.standalone)
        return copy.deepcopy(self._lookup(cls_or_fingerprint).standalone)

    def known_fingerprints(self) -> dict[int, str]:
        """Every writer fingerprint this codec can read, with its record's full name."""
        return {fp: w.name for fp, w in self._writers.items()}

    # ------------------------------------------------------------------ encode / decode

    def encode(self, obj: Any) -> bytes:
        """``obj`` as single-object encoded Avro; naive datetimes are taken as UTC.

        Raises :class:`~durable_kafka.errors.RecordEncodeError` when ``obj`` is not a record
        of this codec or a field does not fit its schema (a bug in the caller).
        """
        cur = self._current.get(type(obj))
        if cur is None:
            raise RecordEncodeError(f"{type(obj).__name__} is not a record type of this codec")
        if cur.write is not None:
            out = bytearray(cur.header)
            try:
                cur.write(obj, out)
            except Exception as exc:  # TypeError, AttributeError, OverflowError, KeyError: see avro_binary
                raise RecordEncodeError(
                    f"cannot encode {type(obj).__name__}: {type(exc).__name__}: {exc}") from exc
            return bytes(out)
        buf = io.BytesIO()
        buf.write(cur.header)
        try:
            fastavro.schemaless_writer(buf, cur.parsed, cur.encode(obj))
        except Exception as exc:  # fastavro raises several types for data that does not fit
            raise RecordEncodeError(
                f"cannot encode {type(obj).__name__}: {type(exc).__name__}: {exc}") from exc
        return buf.getvalue()

    def decode(self, data: bytes | bytearray | memoryview,
               expected: type | tuple[type, ...] | None = None) -> Any:
        """The record in ``data``, read with the current schema of its record name.

        ``expected`` (a type or tuple of types) rejects a record of any other type. Raises
        :class:`~durable_kafka.errors.UnknownSchemaError` for a writer fingerprint this codec
        does not know and :class:`~durable_kafka.errors.CorruptRecordError` for anything else
        wrong with the bytes (including ``None``, a tombstone, or anything that is not bytes);
        never another exception type.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            what = "a null value (tombstone)" if data is None else f"a {type(data).__name__}"
            raise CorruptRecordError(f"expected the bytes of a record, got {what}")
        size = len(data)
        if size < HEADER_LENGTH:
            raise CorruptRecordError(
                f"record of {size} bytes is shorter than the {HEADER_LENGTH}-byte single-object header")
        if data[:2] != MARKER:
            raise CorruptRecordError(
                f"wrong marker {bytes(data[:2]).hex()} (expected c301): not single-object encoded Avro")
        fp = int.from_bytes(data[2:HEADER_LENGTH], "little")
        writer = self._writers.get(fp)
        if writer is None:
            raise UnknownSchemaError(
                f"unknown writer schema fingerprint {fp:#018x}: register the writer schema first")
        if expected is not None and not issubclass(writer.cls, expected):
            raise CorruptRecordError(
                f"record is a {writer.cls.__name__}, expected {_type_names(expected)}")
        if writer.read is not None:
            return self._read_native(writer, fp, data if isinstance(data, bytes) else bytes(data))
        fo = io.BytesIO(data)
        fo.seek(HEADER_LENGTH)
        try:
            raw = fastavro.schemaless_reader(fo, writer.parsed, writer.reader, return_record_name=True,
                                             return_record_name_override=True)
            obj = writer.decode(raw)
        except Exception as exc:  # fastavro raises EOFError, IndexError, UnicodeDecodeError, ...
            # fastavro reports running out of bytes as EOFError, StopIteration or (reading a
            # varint in its C reader) IndexError at the end of the data.
            out_of_bytes = isinstance(exc, (EOFError, StopIteration)) or (
                isinstance(exc, IndexError) and fo.tell() >= size)
            what = "truncated body" if out_of_bytes else "body does not decode"
            raise CorruptRecordError(
                f"{writer.name} (writer {fp:#018x}): {what}: {type(exc).__name__}: {exc}") from exc
        if (end := fo.tell()) != size:
            raise CorruptRecordError(
                f"{writer.name} (writer {fp:#018x}): {size - end} bytes left after the body")
        return obj

    @staticmethod
    def _read_native(writer: _Writer, fp: int, data: bytes) -> Any:
        """Decode with the generated reader; its errors classified as fastavro's are below."""
        assert writer.read is not None
        size = len(data)
        try:
            obj, end = writer.read(data, HEADER_LENGTH)
        except Exception as exc:  # IndexError/EOFError: out of bytes; ValueError/OverflowError: bad body
            what = "truncated body" if isinstance(exc, (IndexError, EOFError)) else "body does not decode"
            raise CorruptRecordError(
                f"{writer.name} (writer {fp:#018x}): {what}: {type(exc).__name__}: {exc}") from exc
        if end != size:
            raise CorruptRecordError(
                f"{writer.name} (writer {fp:#018x}): {size - end} bytes left after the body")
        return obj

    # ------------------------------------------------------------------ evolution

    def register_writer_schema(self, schema: Mapping[str, Any] | str) -> int:
        """Make an older (or foreign) writer schema readable; returns its fingerprint.

        ``schema`` is the writer's record schema (a dict or JSON text). Named types it uses
        but does not define are taken from the current schemas. It must be readable with the
        current schema of the same record name (checked with the ``avro`` package's
        compatibility checker), else :class:`~durable_kafka.errors.IncompatibleSchemaError`.
        Registering a schema already known is a no-op.
        """
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except ValueError as exc:
                raise IncompatibleSchemaError(f"writer schema is not JSON: {exc}") from exc
        if not isinstance(schema, Mapping) or schema.get("type") != "record" or "name" not in schema:
            raise IncompatibleSchemaError(f"a writer schema must be a named record, got {schema!r:.80}")
        full = _full_name(schema["name"], schema.get("namespace"))
        cur = self._by_name.get(full)
        if cur is None:
            raise IncompatibleSchemaError(f"writer schema {full!r} has no current schema of that name to read it")
        try:
            standalone = _expand(dict(schema), self._named, _defined_names(schema), set())
            fp = schema_fingerprint(standalone)
            if fp in self._writers:
                return fp
            parsed = fastavro.parse_schema(standalone)
        except Exception as exc:  # CodecError from _expand, or fastavro's several error types
            raise IncompatibleSchemaError(f"writer schema {full!r} is not valid Avro: {exc}") from exc
        _check_compatible(cur.standalone, standalone, full)
        with self._lock:
            self._writers[fp] = _Writer(full, cur.cls, standalone, parsed, cur.parsed, self._decoders[full])
        log.debug("registered writer schema %s %#018x", full, fp)
        return fp


    def register_release(self, changed: Iterable[Mapping[str, Any]]) -> list[int]:
        """Make every record readable as an earlier release wrote it; returns the new fingerprints.

        ``changed`` holds that release's schemas that differ from today's (named records). A
        change in one record also changes the standalone schema, and so the fingerprint, of
        every record that embeds it (``StartOrchestration`` inside ``OrchestratorMessage``), so
        each current record is expanded again with the old definitions and registered when its
        fingerprint differs. Each must be readable by today's schema (IncompatibleSchemaError).
        """
        overlay: dict[str, Schema] = {}
        for schema in changed:
            if not isinstance(schema, Mapping) or schema.get("type") != "record" or "name" not in schema:
                raise IncompatibleSchemaError(f"a release schema must be a named record, got {schema!r:.80}")
            overlay[_full_name(schema["name"], schema.get("namespace"))] = dict(schema)
        named = {**self._named, **overlay}
        added: list[int] = []
        for full, cur in self._by_name.items():
            schema = named[full]
            try:
                standalone = _expand(dict(schema), named, _defined_names(schema), set())
                fp = schema_fingerprint(standalone)
                if fp in self._writers:
                    continue
                parsed = fastavro.parse_schema(standalone)
            except Exception as exc:  # CodecError from _expand, or fastavro's several error types
                raise IncompatibleSchemaError(f"release schema of {full!r} is not valid Avro: {exc}") from exc
            _check_compatible(cur.standalone, standalone, full)
            with self._lock:
                self._writers[fp] = _Writer(full, cur.cls, standalone, parsed, cur.parsed, self._decoders[full])
            added.append(fp)
        return added


def _type_names(expected: type | tuple[type, ...]) -> str:
    types_ = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(t.__name__ for t in types_)


def _check_compatible(reader: Schema, writer: Schema, full: str) -> None:
    """Refuse a writer schema the reader cannot resolve, naming what breaks (avro's checker)."""
    import avro.schema  # only needed when registering: keep it off the import path of the hot loop
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

    try:
        result = ReaderWriterCompatibilityChecker().get_compatibility(
            avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer)))
    except Exception as exc:  # avro raises its own SchemaParseException family and others
        raise IncompatibleSchemaError(f"writer schema {full!r} cannot be parsed by avro: {exc}") from exc
    if result.compatibility is not SchemaCompatibilityType.compatible:
        raise IncompatibleSchemaError(
            f"writer schema {full!r} cannot be read with the current schema: "
            + "; ".join(f"{m} at {loc}" for m, loc in zip(result.messages, result.locations)))
